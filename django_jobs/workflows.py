"""Workflows in the database: writing them, and every transition they make.

A member that must wait for others is a ``waiting`` row (the claim never picks it) with one
``JobDependency`` row per job it waits for, and a count of those not ended yet
(``Job.waiting_for``). When a job ends for good, its outcome is *settled* on each job waiting
for it, in one transaction: under the waiting row's lock, the edge is flipped to ``settled``
(only by whoever flips it first) and the row's counts change; the last one releases it
(``scheduled``, due now) or, when it can no longer run, cancels it, which is settled in turn.
So the last of a thousand members ending on a thousand threads at the same instant releases
the callback exactly once, and nothing depends on a process staying alive in between:

- a run's outcome and its settlement are one transaction (``execution.record_outcome``);
- a retry takes the edges of the run it retries in the transaction that schedules it, so a
  dependent waits for the retry, never for the failed attempt;
- any live worker settles, every ``RESCUE_INTERVAL``, what ended some other way (cancelled
  from the admin, failed by an operator) — ``settle_ended()``.

Dependent rows are locked in primary-key order, so settlements never wait on each other in a
cycle; a deadlock the database still finds (a cancellation against a settlement) rolls back
one transaction, which its writer retries.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Subquery

from . import clock, eager
from .conf import jobs_settings
from .exceptions import JobNotFound
from .models import (
    FailurePolicy,
    Job,
    JobDependency,
    JobStatus,
    RunWhen,
    Workflow,
)
from .models.inserting import insert_new_jobs
from .types import WorkflowInfo, WorkflowMember

if TYPE_CHECKING:
    from .jobtypes import JobType

logger = logging.getLogger("django_jobs")

#: Outcomes after which a job waiting for this one with ``RunWhen.SUCCESS`` can still run.
GOOD = (JobStatus.SUCCEEDED, JobStatus.SKIPPED)
ENDED = (JobStatus.SUCCEEDED, JobStatus.SKIPPED, JobStatus.FAILED, JobStatus.CANCELLED)
#: Rows a settlement may still change.
NOT_STARTED = (JobStatus.WAITING, JobStatus.SCHEDULED)
SWEEP_BATCH = 500

_current: contextvars.ContextVar[Workflow | None] = contextvars.ContextVar(
    "django_jobs_workflow", default=None
)

__all__ = [
    "cancel_workflow", "enqueue_after", "finish_workflows", "repoint", "settle",
    "settle_ended", "workflow", "workflow_info",
]


def _db() -> str:
    return jobs_settings.DATABASE


def check_policy(on_failure: Any) -> str:
    if on_failure not in FailurePolicy.values:
        raise ValueError(
            f"on_failure must be one of {', '.join(map(repr, FailurePolicy.values))}, "
            f"not {on_failure!r}"
        )
    return on_failure


def check_name(name: Any) -> str:
    if not isinstance(name, str) or len(name) > 200:
        raise ValueError("a workflow's name must be a string of at most 200 characters")
    return name


# -- writing -------------------------------------------------------------------------------------


@contextmanager
def workflow(name: str = "", *, on_failure: str = "cancel") -> Iterator[Workflow]:
    """Enqueue a graph by hand: every ``enqueue()`` in the block joins one new workflow, and
    ``after=[...]`` links them. The block is one transaction: all the rows, or none."""
    new = Workflow(name=check_name(name), on_failure=check_policy(on_failure),
                   created_at=clock.now())
    with transaction.atomic(using=_db()):
        new.save(using=_db(), force_insert=True)
        token = _current.set(new)
        try:
            yield new
        finally:
            _current.reset(token)
    run_if_eager(new)


def current_workflow() -> Workflow | None:
    return _current.get()


def refuse_unique(job_type: JobType) -> None:
    if job_type.unique is not None:
        raise ValueError(
            f"job {job_type.name!r} is declared unique={job_type.unique!r}: a unique job "
            "cannot be a workflow member (another pending run would stand in for it)"
        )


def make_waiting(row: Job, count: int, run_when: str) -> None:
    row.status = JobStatus.WAITING
    row.waiting_for = count
    row.run_when = run_when


def enqueue_after(job_type: JobType, row: Job, text: str, after: Any) -> Job:
    """Write ``row`` (built by ``enqueue()``) to run once every job in ``after`` succeeded.

    It joins the workflow of those jobs (they must share one), the workflow of an enclosing
    ``workflow()`` block, or a new workflow that adopts them. A dependency that already
    ended counts at once; one that already failed or was cancelled cancels the new row.
    """
    refuse_unique(job_type)
    block = current_workflow()
    if after is None and block is not None:
        # The first jobs of a workflow() block: members waiting for nothing.
        if row.unique_key is not None:
            raise ValueError("unique_key= cannot be given inside workflow(): workflow members "
                             "are not unique")
        row.workflow_id = block.pk
        insert_new_jobs([row], _db(), data_json=[text])
        return row
    if row.unique_key is not None:
        raise ValueError("unique_key= and after= cannot be combined: workflow members are "
                         "not unique")
    ids = _dependency_ids(after)
    db = _db()
    with transaction.atomic(using=db):
        found = dict(Job.objects.filter(pk__in=ids).values_list("pk", "workflow_id"))
        missing = [str(pk) for pk in ids if pk not in found]
        if missing:
            raise JobNotFound(f"after=: no job with id {', '.join(missing)}")
        theirs = {wf for wf in found.values() if wf is not None}
        if block is not None:
            theirs.discard(block.pk)
        if len(theirs) > (0 if block is not None else 1):
            raise ValueError(
                "after=: these jobs belong to different workflows "
                f"({', '.join(sorted(map(str, theirs)))}); a job can wait only for jobs "
                "of one workflow"
            )
        if block is not None:
            workflow_id = block.pk
        elif theirs:
            workflow_id = theirs.pop()
        else:
            new = Workflow(created_at=clock.now())
            new.save(using=db, force_insert=True)
            workflow_id = new.pk
        # Dependencies enqueued without a workflow join this one.
        Job.objects.filter(pk__in=ids, workflow__isnull=True).update(workflow=workflow_id)
        row.workflow_id = workflow_id
        make_waiting(row, len(ids), RunWhen.SUCCESS)
        insert_new_jobs([row], db, data_json=[text])
        JobDependency.objects.bulk_create([
            JobDependency(job_id=row.pk, depends_on_id=pk, workflow_id=workflow_id,
                          position=position)
            for position, pk in enumerate(ids)
        ])
        # What already ended is counted now (what ends meanwhile, by the next sweep at worst).
        ended = list(Job.objects.filter(pk__in=ids, status__in=ENDED)
                     .values_list("pk", flat=True))
        if ended:
            settle(ended, policy=False)
    row.refresh_from_db(fields=["status", "waiting_for", "failed_dependencies", "run_at"])
    if block is None and row.status == JobStatus.SCHEDULED:
        return eager.run_if_eager([row])[0]
    return row


def _dependency_ids(after: Any) -> list[uuid.UUID]:
    if isinstance(after, (Job, str, uuid.UUID)) or not isinstance(after, Iterable):
        raise TypeError("after= must be a list of jobs (or job ids), e.g. after=[job_a, job_b]")
    ids: list[uuid.UUID] = []
    for item in after:
        value = item.pk if isinstance(item, Job) else item
        try:
            pk = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError:
            raise TypeError(f"after=: {item!r} is neither a job nor a job id") from None
        if pk not in ids:
            ids.append(pk)
    if not ids:
        raise ValueError("after= needs at least one job")
    return ids


def run_if_eager(new: Workflow) -> None:
    """In eager mode, run the workflow's members as they become due, until none is."""
    if not eager.eager_state().enabled:
        return
    for _ in range(Job.objects.in_workflow(new.pk).count() + 1):
        due = list(Job.objects.in_workflow(new.pk).scheduled().order_by("created_at"))
        if not due:
            return
        eager.run_if_eager(due)


# -- transitions ---------------------------------------------------------------------------------


def settle(ended: Iterable[Any], *, policy: bool = True, status: str | None = None) -> None:
    """Count the final outcome of the jobs ``ended`` on every job waiting for them.

    Exactly once per edge, whoever calls it and however often; jobs that have not ended are
    left alone. Rows that can no longer run are cancelled and settled in turn; with
    ``policy`` a failure in a workflow whose policy is ``cancel`` cancels the rest of it.
    ``status``: the outcome of every job in ``ended``, when the caller just wrote it. Runs in
    the caller's transaction, or in its own.
    """
    todo = list(dict.fromkeys(ended))
    if not todo:
        return
    # No savepoint inside the caller's transaction: a failure here aborts the whole write,
    # which its writer retries (a run's outcome) or reports (an operator's call).
    with transaction.atomic(using=_db(), savepoint=False):
        known = dict.fromkeys(todo, status) if status is not None else None
        if policy and status in (None, JobStatus.FAILED):
            cancelled = _apply_failure_policy(todo)
            if cancelled:
                todo += cancelled
                known = None
        seen: set[Any] = set()
        while todo:
            seen.update(todo)
            todo = [pk for pk in _settle_once(todo, known) if pk not in seen]
            known = dict.fromkeys(todo, JobStatus.CANCELLED) if todo else None


def _settle_once(ended: list[Any], known: dict[Any, str] | None) -> list[Any]:
    """One round of ``settle()``: returns the rows it ended (cancelled or skipped)."""
    outcomes = known or dict(
        Job.objects.filter(pk__in=ended, status__in=ENDED).values_list("pk", "status")
    )
    if not outcomes:
        return []
    sources = list(outcomes)
    waiting = JobDependency.objects.unsettled().filter(depends_on__in=sources).values("job_id")
    # Locked in a fixed order: two settlements never wait on each other in a cycle.
    rows = {
        row.pk: row
        for row in Job.objects.filter(pk__in=Subquery(waiting)).order_by("pk")
        .select_for_update()
        .only("pk", "status", "waiting_for", "failed_dependencies", "run_when")
    }
    if not rows:
        return []
    # Read again under those locks (a locking read sees the latest edges on every database):
    # an edge settled meanwhile by someone else is not counted twice.
    edges = list(
        JobDependency.objects.unsettled().filter(depends_on__in=sources, job__in=list(rows))
        .order_by("pk").select_for_update().values_list("pk", "job_id", "depends_on_id")
    )
    if not edges:
        return []
    JobDependency.objects.unsettled().filter(pk__in=[edge[0] for edge in edges]).update(
        settled=True)
    counted: dict[Any, list[Any]] = {}
    for _pk, job_id, depends_on in edges:
        counted.setdefault(job_id, []).append(depends_on)
    now = clock.now()
    newly_ended = []
    # Rows given the same values share one UPDATE (a group's callbacks count down together).
    writes: dict[tuple, list[Any]] = {}
    for job_id, from_jobs in counted.items():
        row = rows[job_id]
        bad = [pk for pk in from_jobs if outcomes[pk] not in GOOD]
        row.waiting_for = max(row.waiting_for - len(from_jobs), 0)
        row.failed_dependencies += len(bad)
        fields: dict[str, Any] = {"waiting_for": row.waiting_for,
                                  "failed_dependencies": row.failed_dependencies}
        if row.status == JobStatus.WAITING:
            fields.update(_decide(row, bad, outcomes, now))
            if fields.get("status") in (JobStatus.CANCELLED, JobStatus.SKIPPED):
                newly_ended.append(job_id)
        writes.setdefault(tuple(sorted(fields.items())), []).append(job_id)
    for fields_items, job_ids in writes.items():
        Job.objects.filter(pk__in=job_ids).update(**dict(fields_items))
    return newly_ended


def _decide(row: Job, bad: list[Any], outcomes: dict[Any, str], now: datetime) -> dict[str, Any]:
    """What a waiting row becomes once these outcomes are counted on it (``{}``: it waits)."""
    if row.run_when in (RunWhen.SUCCESS, "") and bad:
        return {
            "status": JobStatus.CANCELLED, "finished_at": now,
            "error": f"cancelled: job {bad[0]} it waited for ended {outcomes.get(bad[0])}",
        }
    if row.waiting_for > 0:
        return {}
    if row.run_when == RunWhen.FAILURE and not row.failed_dependencies:
        return {"status": JobStatus.SKIPPED, "finished_at": now,
                "error": "skipped: every job it waited for succeeded"}
    return {"status": JobStatus.SCHEDULED, "run_at": now}


def _apply_failure_policy(ended: list[Any]) -> list[Any]:
    """For failures in workflows that cancel the rest: cancel it. Returns what it cancelled."""
    failed = dict(
        Job.objects.filter(pk__in=ended, status=JobStatus.FAILED, workflow__isnull=False,
                           workflow__on_failure=FailurePolicy.CANCEL)
        .values_list("workflow_id", "pk")
    )
    cancelled: list[Any] = []
    for workflow_id, failed_pk in failed.items():
        cancelled += _cancel_members(
            workflow_id, f"cancelled: job {failed_pk} of its workflow failed (on_failure="
            "'cancel')", keep_callbacks=True,
        )
    return cancelled


def _cancel_members(workflow_id: Any, why: str, *, keep_callbacks: bool) -> list[Any]:
    """Cancel the members not started yet and ask the running ones to stop; returns the
    rows cancelled here. ``keep_callbacks`` spares what runs on failure or on finish."""
    now = clock.now()
    Workflow.objects.filter(pk=workflow_id, cancelled_at__isnull=True).update(cancelled_at=now)
    members = Job.objects.in_workflow(workflow_id)
    targets = members.filter(status__in=NOT_STARTED)
    ids = list(targets.order_by("pk").values_list("pk", flat=True))
    if keep_callbacks and ids:
        spared = _callbacks_and_what_follows(workflow_id)
        ids = [pk for pk in ids if pk not in spared]
    if ids:
        Job.objects.filter(pk__in=ids, status__in=NOT_STARTED).update(
            status=JobStatus.CANCELLED, finished_at=now, unique_slot=None, error=why,
        )
    members.running().filter(cancel_requested_at__isnull=True).update(cancel_requested_at=now)
    return list(Job.objects.filter(pk__in=ids, status=JobStatus.CANCELLED)
                .values_list("pk", flat=True))


def _callbacks_and_what_follows(workflow_id: Any) -> set[Any]:
    """The on_failure and on_finish callbacks of a workflow and every row after them (a
    callback may be a chain): what the "cancel" policy leaves to run."""
    follows: dict[Any, list[Any]] = {}
    for job_id, depends_on in (JobDependency.objects.filter(workflow=workflow_id)
                               .values_list("job_id", "depends_on_id")):
        follows.setdefault(depends_on, []).append(job_id)
    spared = set(Job.objects.in_workflow(workflow_id).filter(
        run_when__in=(RunWhen.FAILURE, RunWhen.FINISH)).values_list("pk", flat=True))
    todo = list(spared)
    while todo:
        for job_id in follows.get(todo.pop(), ()):
            if job_id not in spared:
                spared.add(job_id)
                todo.append(job_id)
    return spared


def cancel_workflow(workflow_id: Any) -> int:
    """Cancel every member not finished yet, callbacks included (running ones by request).

    Returns how many rows were cancelled at once.
    """
    with transaction.atomic(using=_db()):
        if not Workflow.objects.filter(pk=workflow_id).exists():
            raise JobNotFound(f"no workflow with id {workflow_id}")
        cancelled = _cancel_members(workflow_id, "cancelled with its workflow",
                                    keep_callbacks=False)
        settle(cancelled, policy=False)
    return len(cancelled)


def repoint(old: Job, retry: Job) -> None:
    """A retry stands in for the run it retries, in its workflow's graph: the jobs waiting
    for the old run now wait for the retry, and the retry waits for what the old run did."""
    if old.workflow_id is None:
        return
    JobDependency.objects.unsettled().filter(depends_on=old.pk).update(depends_on=retry.pk)
    JobDependency.objects.filter(job=old.pk).update(job=retry.pk)


def retries_allowed(job: Job) -> bool:
    """A member of a cancelled workflow is not retried."""
    if job.workflow_id is None:
        return True
    return not Workflow.objects.filter(pk=job.workflow_id, cancelled_at__isnull=False).exists()


# -- sweeps (any live worker, every RESCUE_INTERVAL) -----------------------------------------


def settle_ended() -> int:
    """Settle what ended outside a run's own transaction (cancelled, failed by hand...)."""
    ended = list(
        JobDependency.objects.ended_unsettled().order_by()
        .values_list("depends_on_id", flat=True).distinct()[:SWEEP_BATCH]
    )
    if ended:
        settle(ended)
    return len(ended)


def finish_workflows() -> int:
    """Write the end of workflows whose members have all ended: status and ``finished_at``."""
    pending = Job.objects.filter(workflow=OuterRef("pk"), status__in=(
        JobStatus.WAITING, JobStatus.SCHEDULED, JobStatus.RUNNING))
    done = list(
        Workflow.objects.open().filter(~Exists(pending)).order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for workflow_id in done:
        members = Job.objects.in_workflow(workflow_id)
        last = members.aggregate(last=Max("finished_at"))["last"] or clock.now()
        Workflow.objects.open().filter(pk=workflow_id).update(
            finished_at=last, status=outcome_of(members)
        )
    return len(done)


def outcome_of(members) -> str:
    """A finished workflow's status: failed if a member's last attempt failed, cancelled if
    one was cancelled, else succeeded."""
    retried = Job.objects.filter(rescheduled_from=OuterRef("pk"))
    statuses = set(members.filter(~Exists(retried)).values_list("status", flat=True).distinct())
    if JobStatus.FAILED in statuses:
        return JobStatus.FAILED
    if JobStatus.CANCELLED in statuses:
        return JobStatus.CANCELLED
    return JobStatus.SUCCEEDED


# -- reading -------------------------------------------------------------------------------------

_MEMBER_FIELDS = ("pk", "name", "status", "progress", "progress_message", "attempt", "run_when",
                  "started_at", "finished_at", "error", "rescheduled_from_id", "created_at")


def workflow_info(workflow_id: Any) -> WorkflowInfo:
    """A snapshot of a workflow: status, aggregate progress and ETA, members and links.

    ``workflow_id`` may be a unique prefix of the id, as for jobs.
    """
    wf = Workflow.objects.get_by_id(workflow_id)
    rows = list(Job.objects.in_workflow(wf.pk).order_by("created_at", "pk").only(*_MEMBER_FIELDS))
    retried = {row.rescheduled_from_id for row in rows if row.rescheduled_from_id}
    # A retried attempt is the same member as its retry: the last attempt stands for it.
    members = [row for row in rows if row.pk not in retried]
    after: dict[Any, list[Any]] = {}
    for job_id, depends_on in (JobDependency.objects.filter(workflow=wf.pk)
                               .order_by("position", "pk").values_list("job_id", "depends_on_id")):
        after.setdefault(job_id, []).append(depends_on)
    counts: dict[str, int] = {}
    done = 0.0
    for row in members:
        counts[row.status] = counts.get(row.status, 0) + 1
        done += 1.0 if row.status in ENDED else row.progress
    progress = done / len(members) if members else 1.0
    pending = any(row.status not in ENDED for row in members)
    status = JobStatus.RUNNING if pending else (wf.status or outcome_of(
        Job.objects.in_workflow(wf.pk)))
    now = clock.now()
    eta = None
    starts = [row.started_at for row in rows if row.started_at is not None]
    if pending and starts and progress >= 0.05:
        elapsed = (now - min(starts)).total_seconds()
        eta = now + timedelta(seconds=elapsed / progress * (1 - progress))
    return WorkflowInfo(
        id=wf.pk, name=wf.name, status=str(status), on_failure=wf.on_failure,
        created_at=wf.created_at, cancelled_at=wf.cancelled_at,
        finished_at=wf.finished_at if not pending else None, progress=progress, eta=eta,
        counts=counts,
        members=[
            WorkflowMember(
                id=row.pk, name=row.name, status=str(row.status), progress=row.progress,
                message=row.progress_message, attempt=row.attempt, run_when=row.run_when,
                after=after.get(row.pk, []), started_at=row.started_at,
                finished_at=row.finished_at, error=(row.error or "").split("\n", 1)[0],
            )
            for row in members
        ],
    )
