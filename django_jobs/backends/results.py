"""Reading ``Job`` rows as Django ``TaskResult`` objects.

One result is one row plus the automatic retries that followed it (``rescheduled_from`` with
the next attempt number): the result's status is the latest attempt's, its ``errors`` and
``worker_ids`` list every attempt, as Django's ``TaskResult`` expects.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError

from ..models import Job, JobStatus

#: Key of ``Job.meta`` under which a task's row keeps what Django's API needs back.
META_KEY = "django_task"

if TYPE_CHECKING:
    from django.tasks import Task

#: Our statuses in Django's vocabulary. Django has no "cancelled" or "skipped": a cancelled run
#: did not succeed (FAILED, with a ``JobCancelled`` error); a skipped one ended without error.
STATUS_MAP = {
    JobStatus.SCHEDULED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.SKIPPED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}

#: How many automatic retries of one result are followed at most.
MAX_ATTEMPTS_FOLLOWED = 100

_TRACEBACK_START = "Traceback (most recent call last):"


def attempts_of(first: Job) -> list[Job]:
    """``first`` and the automatic retries that followed it, oldest first."""
    rows = [first]
    while rows[-1].is_finished and len(rows) < MAX_ATTEMPTS_FOLLOWED:
        # Retries carry the next attempt number; an admin "retry" starts a new result.
        following = (
            Job.objects.alive()
            .filter(rescheduled_from_id=rows[-1].pk, attempt=rows[-1].attempt + 1)
            .order_by("created_at")
            .first()
        )
        if following is None:
            break
        rows.append(following)
    return rows


def task_info(row: Job) -> dict:
    info = row.meta.get(META_KEY) if isinstance(row.meta, dict) else None
    return info if isinstance(info, dict) else {}


def task_for_row(task: Task, row: Job, backend_alias: str) -> Task:
    """``task`` as this row ran it: its priority, queue, run_after and backend.

    Built without ``Task.__post_init__``: a stored row stays readable even when the backend's
    settings changed since it was enqueued (a queue removed from QUEUES, say).
    """
    priority = min(max(row.priority, TASK_MIN_PRIORITY), TASK_MAX_PRIORITY)
    changes = {
        "priority": priority,
        "queue_name": row.queue,
        "run_after": row.run_at if task_info(row).get("run_after") else None,
        "backend": backend_alias,
    }
    clone = object.__new__(type(task))
    for field in fields(task):
        value = changes[field.name] if field.name in changes else getattr(task, field.name)
        object.__setattr__(clone, field.name, value)
    return clone


def task_error(row: Job) -> TaskError:
    info = task_info(row)
    recorded = info.get("exception")
    if isinstance(recorded, list) and len(recorded) == 2 and recorded[0] == str(row.pk):
        path = recorded[1]
    else:
        path = _fallback_exception_path(row)
    text = row.error or ""
    start = text.find(_TRACEBACK_START)
    return TaskError(exception_class_path=path, traceback=text[start:] if start >= 0 else text)


def _fallback_exception_path(row: Job) -> str:
    """Failures that raised nothing in the task: timeouts, lost workers, cancellation."""
    error = row.error or ""
    if row.status == JobStatus.CANCELLED:
        return "django_jobs.exceptions.JobCancelled"
    if error.startswith("timed out"):
        return "django_jobs.exceptions.JobTimeout"
    if error.startswith("unregistered"):
        return "django_jobs.exceptions.UnknownJob"
    return "django_jobs.exceptions.JobError"


def build_result(rows: list[Job], task: Task, backend_alias: str) -> TaskResult:
    first, last = rows[0], rows[-1]
    data = first.data if isinstance(first.data, dict) else {}
    started = [row.started_at for row in rows if row.started_at is not None]
    status = STATUS_MAP[last.status]
    result = TaskResult(
        task=task_for_row(task, first, backend_alias),
        id=str(first.pk),
        status=status,
        enqueued_at=first.created_at,
        started_at=started[0] if started else None,
        finished_at=last.finished_at if last.is_finished else None,
        last_attempted_at=started[-1] if started else None,
        args=list(data.get("args") or []),
        kwargs=dict(data.get("kwargs") or {}),
        backend=backend_alias,
        errors=[
            task_error(row)
            for row in rows
            if row.status in (JobStatus.FAILED, JobStatus.CANCELLED)
        ],
        worker_ids=[row.worker for row in rows if row.worker],
    )
    if status == TaskResultStatus.SUCCESSFUL and last.status == JobStatus.SUCCEEDED:
        object.__setattr__(result, "_return_value", last.result)
    return result


def running_result(job: Job, task: Task) -> TaskResult:
    """The result of the run in progress, for ``TaskContext`` and ``task_started``.

    A retry belongs to the result of its first attempt: same id, ``context.attempt`` counts on.
    """
    rows = [job]
    while rows[0].attempt > 1 and rows[0].rescheduled_from_id and len(rows) < MAX_ATTEMPTS_FOLLOWED:
        earlier = Job.objects.filter(pk=rows[0].rescheduled_from_id).first()
        if earlier is None:
            break
        rows.insert(0, earlier)
    return build_result(rows, task, task_info(job).get("backend") or task.backend)
