"""Rescue: the runs of worker processes that died (or froze), and what else only a peer can
clean up. Any live worker does it, every ``RESCUE_INTERVAL`` seconds.

A process is lost when its ``Worker`` row has not beaten for ``WORKER_LOST_AFTER`` by the
database's clock. Writing it off is one guarded UPDATE of that row (``state = lost``, only
while it is still overdue), in the same transaction as the recovery of its runs; a heartbeat
can never revive a lost row, and a claim first refreshes its own row, so a process is either
alive with its runs or lost with all of them recovered, never both. Of its runs, those that
never started go back to the queue untouched; the others fail as "worker lost" (and are
retried if attempts remain). Its lock keys are freed with them.
"""

from __future__ import annotations

import logging
import time
import uuid

from django.db import transaction

from .. import clock, workflows
from ..conf import jobs_settings
from ..execution import Outcome, call_hook, record_outcome, release_row
from ..jobtypes import registry
from ..models import Job, JobTypeLock, Worker, WorkerState

logger = logging.getLogger("django_jobs")

BATCH = 100
#: Rows of lost workers are kept this long (the admin shows them), then removed.
FORGET_LOST_AFTER = 3600.0
#: Seconds between two looks for rows whose job no live worker knows.
UNKNOWN_CHECK_INTERVAL = 60.0

_last_unknown_check = 0.0


def rescue(now=None, *, me: uuid.UUID | None = None, write_off_others: bool = True,
           sweep: bool = True) -> list[Job]:
    """One sweep: write off lost workers, recover their runs and the rest. Returns the runs
    this call recovered.

    ``me`` (the sweeping process's own row) is never written off by itself: if its peers did,
    its heartbeat finds out. ``write_off_others=False`` skips write-offs: a process that has
    not itself reached the database for ``WORKER_LOST_AFTER`` (it started, or the database was
    down) cannot tell a dead peer from one that was cut off like itself. ``sweep=False``
    (a fresh look found none of the sweep's work, see ``look.py``) does only the parts that
    run once a minute, when they are due.
    """
    global _last_unknown_check
    lost_after = jobs_settings.WORKER_LOST_AFTER
    rescued: list[Job] = []
    if sweep:
        if write_off_others:
            for worker_pk in overdue_peers(me, lost_after).values_list("pk", flat=True)[:BATCH]:
                rescued += write_off(worker_pk, lost_after)
        rescued += _recover(Job.objects.orphaned().order_by("created_at")[:BATCH],
                            "its worker process is gone")
        rescued += rescue_stale(now)
        free_orphaned_locks()
    if time.monotonic() - _last_unknown_check >= UNKNOWN_CHECK_INTERVAL:
        _last_unknown_check = time.monotonic()
        fail_unknown()
        forget_lost_workers()
        # Finished workflows get their end (status, finished_at) for pruning and the admin's
        # list, which reads the members until then: once a minute is enough, and keeps an
        # idle worker's sweep as cheap as it was.
        workflows.finish_workflows()
        # A safety net: every way of ending a workflow member settles it in the same
        # transaction; an outcome written by hand in the database is found here.
        workflows.settle_ended()
    return rescued


def overdue_peers(me: uuid.UUID | None, lost_after: float):
    """Live worker rows overdue by ``lost_after`` seconds, other than ``me``."""
    overdue = Worker.objects.overdue(lost_after)
    return overdue.exclude(pk=me) if me is not None else overdue


def write_off(worker_pk: uuid.UUID, lost_after: float) -> list[Job]:
    """Declare one overdue process lost and recover its runs, all or nothing."""
    with transaction.atomic(using=jobs_settings.DATABASE):
        if not Worker.objects.overdue(lost_after).filter(pk=worker_pk).update(
            state=WorkerState.LOST
        ):
            return []  # it beat meanwhile, or another peer wrote it off first
        label = (Worker.objects.filter(pk=worker_pk)
                 .values_list("host", "pid", "heartbeat_at").first())
        who = f"{label[0]}:{label[1]}" if label else str(worker_pk)
        silent = (clock.now() - label[2]).total_seconds() if label and label[2] else lost_after
        logger.warning("worker %s is lost: no heartbeat for %.0fs (WORKER_LOST_AFTER %gs); "
                       "recovering its runs", who, silent, lost_after)
        runs = list(Job.objects.owned_by([worker_pk]).order_by("created_at"))
        recovered = _recover(
            runs, f"{who} stopped sending heartbeats for {lost_after:g}s", hooks=False
        )
        JobTypeLock.objects.filter(owner=worker_pk).delete()
    _call_stale_hooks(recovered)
    return recovered


def _recover(runs, why: str, *, hooks: bool = True) -> list[Job]:
    recovered = []
    for job in runs:
        if job.started_at is None:
            # Claimed, never started: back to the queue, no attempt used. (Guarded on the
            # start too: a run that started meanwhile is failed below, never put back.)
            if release_row(job, job.claim_id, unstarted=True):
                logger.warning("[%s] %s put back in the queue: it never started and %s",
                               job.name, job.pk, why)
                recovered.append(job)
                continue
        outcome = Outcome.failed(f"worker lost: {why}")
        if record_outcome(job, job.claim_id, outcome):
            logger.warning("[%s] %s rescued: %s", job.name, job.pk, outcome.error)
            recovered.append(job)
    if hooks:
        _call_stale_hooks(recovered)
    return recovered


def _call_stale_hooks(jobs: list[Job]) -> None:
    for job in jobs:
        if job.started_at is None:
            continue
        job_type = registry.get(job.name) if job.name in registry else None
        if job_type is not None and job_type.on_stale is not None:
            call_hook(job_type.on_stale, job, None, "on_stale")


def rescue_stale(now=None) -> list[Job]:
    """Fail runs without a worker process whose lease ran out (eager mode, run_due_jobs(),
    and rows written before worker processes had rows); retried if attempts remain."""
    moment = now if now is not None else clock.sql_now()
    rescued = []
    for job in Job.objects.stale(now).order_by("locked_until")[:BATCH]:
        outcome = Outcome.failed(
            f"worker lost: {job.worker or 'its worker'} stopped and the lease ran out at "
            f"{job.locked_until.isoformat()}"
        )
        if not record_outcome(job, job.claim_id, outcome, guard={"locked_until__lt": moment}):
            continue  # it finished, or another worker rescued it first
        logger.warning("[%s] %s rescued: %s", job.name, job.pk, outcome.error)
        rescued.append(job)
    _call_stale_hooks(rescued)
    return rescued


def free_orphaned_locks() -> int:
    """Keys held for processes that are no longer live (their recovery freed the rest)."""
    return JobTypeLock.objects.stale().filter(owner__isnull=False).delete()[0]


def fail_unknown() -> int:
    """Fail due rows whose job name no live worker has registered, after the grace period.

    During a deploy, rows of a new job exist before the workers that know it; they wait. A
    row is failed only when it has been due for ``UNKNOWN_JOB_GRACE`` and every live worker
    has run for that long without registering its name (a worker that started within the
    grace may be the start of a deploy that brings it).
    """
    lost_after = jobs_settings.WORKER_LOST_AFTER
    grace = jobs_settings.UNKNOWN_JOB_GRACE
    known = Worker.objects.registered_names(lost_after)
    if not known:
        return 0  # no live worker: nobody can tell what is unknown
    if Worker.objects.beating(lost_after).filter(
        kind="worker", started_at__gt=clock.sql_now(-grace)
    ).exists():
        return 0
    rows = list(
        Job.objects.scheduled().filter(run_at__lt=clock.sql_now(-grace))
        .exclude(name__in=sorted(known)).values_list("pk", "name")[:BATCH]
    )
    failed = 0
    for pk, name in rows:
        failed += Job.objects.filter(pk=pk).scheduled().update(
            status="failed", finished_at=clock.now(), unique_slot=None,
            error=f"unregistered job {name!r}: no live worker has registered it for "
            f"{grace:g}s (UNKNOWN_JOB_GRACE)",
        )
        logger.error("[%s] %s failed: no live worker registers this job", name, pk)
    workflows.settle([pk for pk, _name in rows])
    return failed


def forget_lost_workers() -> int:
    return Worker.objects.filter(
        state=WorkerState.LOST, heartbeat_at__lt=clock.sql_now(-FORGET_LOST_AFTER)
    ).delete()[0]
