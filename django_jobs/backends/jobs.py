"""``JobsBackend``: Django's Tasks framework on django-jobs' queue, worker and admin."""

from __future__ import annotations

import uuid
from typing import Any

from django.tasks import TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json

from ..enqueuing import enqueue_job
from ..models import Job
from ..options import QUEUE_MAX_LENGTH
from . import checks
from .results import META_KEY, attempts_of, build_result, task_info
from .tasktypes import register_task, registered_task


class JobsBackend(BaseTaskBackend):
    """Stores each enqueued task as a ``Job`` row; ``manage.py runjobs`` runs it.

    Priorities are ours unchanged (Django's -100..100 lies inside our range, higher first);
    queue names are our queue names (``runjobs --queue``).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # Kept raw for the system checks (QUEUES="emails" would become a set of letters).
        self.params = params

    # -- definition --------------------------------------------------------------------------

    def validate_task(self, task) -> None:
        """Django's validation, then registration: only a defined task is ever runnable."""
        super().validate_task(task)
        if len(task.queue_name) > QUEUE_MAX_LENGTH:
            raise InvalidTask(f"Queue names are at most {QUEUE_MAX_LENGTH} characters long.")
        register_task(task, self)

    def job_options_for(self, name: str) -> dict[str, Any]:
        """``@job`` options for the task ``name``: ``DEFAULT_JOB_OPTIONS`` + ``JOB_OPTIONS``."""
        options: dict[str, Any] = {}
        for source in (
            self.options.get("DEFAULT_JOB_OPTIONS") or {},
            (self.options.get("JOB_OPTIONS") or {}).get(name) or {},
        ):
            if isinstance(source, dict):
                options.update(source)
        return options

    # -- enqueueing --------------------------------------------------------------------------

    def enqueue(self, task, args, kwargs) -> TaskResult:
        self.validate_task(task)
        job_type = register_task(task, self)
        # Django's rules: JSON only (tuples become lists); anything else is refused here.
        data = {"args": normalize_json(list(args)), "kwargs": normalize_json(dict(kwargs))}
        run_at = task.run_after
        if run_at is not None and timezone.is_naive(run_at):  # USE_TZ = False
            run_at = timezone.make_aware(run_at)
        row = enqueue_job(
            job_type,
            {
                **data,
                "run_at": run_at,
                "priority": task.priority,
                "queue": task.queue_name,
                "meta": {META_KEY: {"backend": self.alias, "run_after": run_at is not None}},
            },
        )
        result = build_result([row], task, self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    # -- results -----------------------------------------------------------------------------

    def get_result(self, result_id) -> TaskResult:
        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        row = Job.objects.alive().filter(pk=pk).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        task = registered_task(row.name)
        if task is None:
            if META_KEY in (row.meta if isinstance(row.meta, dict) else {}):
                raise TaskResultDoesNotExist(
                    f"{result_id} is a result of task {row.name!r}, which is not registered in "
                    "this process (tasks are known by their definition, never imported from a "
                    "stored path)"
                )
            raise TaskResultDoesNotExist(result_id)  # a job of our own, not a task
        return build_result(attempts_of(row), task, task_info(row).get("backend") or self.alias)

    # -- checks ------------------------------------------------------------------------------

    def check(self, **kwargs):
        return checks.check_backend(self)
