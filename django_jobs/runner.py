"""Running one claimed job: build the context, call the function, turn what happened into an
``Outcome`` and write it. ``fn.run()`` and the worker's threads both come through here.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from . import clock, payload, signals
from .conf import jobs_settings
from .context import JobContext
from .exceptions import JobAlreadyRunning, JobCancelled, JobDisabled, JobTimeout
from .execution import Execution, Outcome, lease_margin, worker_id
from .models import Job, JobStatus
from .retry import next_step

if TYPE_CHECKING:
    from .jobtypes import JobType

logger = logging.getLogger("django_jobs")


def execute(execution: Execution) -> Outcome:
    """Run the job of a claimed row to its end and record the outcome. Never raises for the
    job's own errors; ``SystemExit`` and ``KeyboardInterrupt`` are recorded, then re-raised."""
    job, job_type = execution.job, execution.job_type
    if job_type is None:
        # A Django task's row (django_jobs.backends) names a task, not a job.
        kind = "task" if isinstance(job.meta, dict) and "django_task" in job.meta else "job"
        outcome = Outcome.failed(
            f"unregistered {kind} {job.name!r}: no @{kind} of that name is registered in this "
            "worker (a worker runs what its code defines; it never imports a stored path)",
            retry=False,
        )
        execution.finish(outcome)
        return outcome
    ctx = JobContext(execution)
    signals.job_started.send(sender=Job, job=job)
    outcome: Outcome | None = None
    try:
        outcome = _call(job_type, ctx, execution)
    except (SystemExit, KeyboardInterrupt) as exc:
        outcome = Outcome.from_exception(exc)
        raise
    finally:
        if outcome is None:  # only when the interpreter is being torn down mid-call
            outcome = Outcome.failed("the run was interrupted")
        try:
            ctx.flush()
        except Exception:
            logger.warning("[%s] could not write the last progress", job.name, exc_info=True)
        if outcome.status == JobStatus.FAILED:
            logger.error("[%s] failed, %s: %s", job.name, next_step(job, job_type, outcome.retry),
                         (outcome.error.splitlines() or [""])[0][:500])
        execution.finish(outcome)
        execution.release_lingering_lock()
    return outcome


def _call(job_type: JobType, ctx: JobContext, execution: Execution) -> Outcome:
    try:
        if job_type.precheck is not None:
            reason = job_type.precheck(ctx)
            if reason:
                return Outcome(JobStatus.SKIPPED, result={"skipped": str(reason)})
        result = job_type.func(ctx, **ctx.data)
    except JobTimeout as exc:
        return Outcome.failed(f"timed out after {job_type.timeout}", exc)
    except JobCancelled as exc:
        return Outcome(JobStatus.CANCELLED, error=str(exc), exc=exc)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        return Outcome.from_exception(exc)
    if execution.past_deadline or execution.timed_out:
        # Finished, but too late: the failure written at the deadline stands.
        return Outcome.failed(f"timed out after {job_type.timeout}")
    problem = payload.find_non_json(result, "the result")
    if problem:
        return Outcome.failed(f"{problem}; a job must return JSON-serialisable data", retry=False)
    return Outcome(JobStatus.SUCCEEDED, result=result)


def start_row(job_type: JobType, data: dict[str, Any]) -> Execution:
    """Insert a row already claimed by this process, holding its lock, for ``fn.run()``."""
    from . import locks
    from .enqueuing import build_row

    if not job_type.is_enabled:
        raise JobDisabled(f"job {job_type.name!r} is disabled")
    row = build_row(job_type, data)
    now = clock.now()
    me = worker_id()
    row.status = JobStatus.RUNNING
    row.claim_id = uuid.uuid4()
    row.worker = me
    row.started_at = row.heartbeat_at = now
    row.unique_key = None
    row.locked_until = now + job_type.timeout + lease_margin()
    with transaction.atomic(using=jobs_settings.DATABASE):
        row.save(using=jobs_settings.DATABASE, force_insert=True)
        if row.lock_key and not locks.acquire(
            row.lock_key, job_id=row.pk, claim_id=row.claim_id, worker=me,
            until=row.locked_until, now=now,
        ):
            raise JobAlreadyRunning(
                f"job {job_type.name!r} holds lock {row.lock_key!r} elsewhere; not started"
            )
    return Execution(row, job_type, worker=me)


def run_now(job_type: JobType, data: dict[str, Any]) -> Any:
    """``fn.run(**data)``: run in this process through the full bookkeeping.

    Returns the result; re-raises the job's exception (``JobCancelled``, ``JobTimeout``...)
    after the row records it.
    """
    from .worker.monitor import Monitor

    execution = start_row(job_type, data)
    # Inside the caller's transaction the row is invisible to another connection, so a
    # monitor thread could neither heartbeat it nor time it out; the deadline is then checked
    # when the function returns.
    monitor = None
    if not connections[jobs_settings.DATABASE].in_atomic_block:
        monitor = Monitor()
        monitor.add(execution)
        monitor.start()
    try:
        outcome = execute(execution)
    finally:
        if monitor is not None:
            monitor.stop()
    if outcome.exc is not None:
        raise outcome.exc
    if outcome.status == JobStatus.FAILED:
        if execution.timed_out or execution.past_deadline:
            raise JobTimeout(outcome.error)
        raise ValueError(outcome.error)
    return outcome.result
