"""Running one claimed job: build the context, call the function, turn what happened into an
``Outcome`` and write it. ``fn.run()`` and the worker's threads both come through here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import OperationalError, connections, transaction

from . import clock, jobtypes, locks, payload, signals
from .conf import jobs_settings
from .context import JobContext
from .enqueuing import build_row
from .exceptions import JobAlreadyRunning, JobCancelled, JobDisabled, JobTimeout, Snooze
from .execution import (
    Execution,
    Outcome,
    bound_lock_wait,
    connection_states,
    restore_connections,
    send_robust,
    worker_id,
)
from .models import JobStatus, JobTypeLock, Worker
from .monitor import Monitor
from .retry import next_step
from .version import __version__

if TYPE_CHECKING:
    from .jobtypes import JobType

logger = logging.getLogger("django_jobs")

T = TypeVar("T")


def execute(execution: Execution) -> Outcome | None:
    """Start the run of a claimed row, run it to its end and record the outcome.

    Returns ``None`` when the row was no longer ours to start (released, recovered). Never
    raises for the job's own errors; ``SystemExit`` and ``KeyboardInterrupt`` are recorded,
    then re-raised.
    """
    if not execution.begin():
        execution.returned.set()
        return None
    job, job_type = execution.job, execution.job_type
    if job_type is None:
        execution.returned.set()
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
    states = connection_states()
    outcome: Outcome | None = None
    try:
        outcome = _start_and_call(job_type, ctx, execution)
    except (SystemExit, KeyboardInterrupt) as exc:
        outcome = Outcome.from_exception(exc)
        raise
    finally:
        execution.returned.set()
        if outcome is None:  # only when the interpreter is being torn down mid-call
            outcome = Outcome.failed("the run was interrupted")
        _end(execution, ctx, outcome, states)
    return outcome


def _start_and_call(job_type: JobType, ctx: JobContext, execution: Execution) -> Outcome:
    try:
        send_robust(signals.job_started, job=execution.job)
    except Exception as exc:  # send_robust itself only fails on a broken receiver list
        return Outcome.from_exception(exc)
    return _call(job_type, ctx, execution)


def _end(
    execution: Execution, ctx: JobContext, outcome: Outcome, states: dict[str, Any]
) -> None:
    """The final write, whatever happened before it: it always lands or says why not."""
    job = execution.job
    try:
        # The job's code may have left a transaction open (set_autocommit(False), an atomic
        # block entered by hand): the outcome must not be written inside it.
        restore_connections(states)
    except Exception:
        logger.warning("[%s] could not restore the job's connections", job.name, exc_info=True)
    try:
        pending = ctx.take_pending()
    except Exception:
        pending = None
    timed_out = execution.timed_out
    if execution.finish(outcome, extra=pending):
        _log_outcome(execution, outcome)
    elif execution.lost and not timed_out:
        execution.report_lost(f"it ended {outcome.status}, and its outcome was not written")
    execution.release_lingering_lock()


def _log_outcome(execution: Execution, outcome: Outcome) -> None:
    if outcome.status != JobStatus.FAILED:
        return
    job = execution.job
    first_line = (outcome.error.splitlines() or [""])[0][:500]
    logger.error("[%s] failed, %s: %s", job.name,
                 next_step(job, execution.job_type, outcome.retry), first_line)


def _snoozed(job_type: JobType, ctx: JobContext, exc: Snooze) -> Outcome:
    """Back to the queue without using an attempt, up to ``max_snoozes`` times; then a
    failure that says so (a job that snoozes forever would never end)."""
    done = ctx.job.snoozes
    if done >= job_type.max_snoozes:
        return Outcome.failed(
            f"snoozed {done} times already, the most max_snoozes={job_type.max_snoozes} "
            f"allows; this snooze ({exc.seconds:g}s) fails the run", exc, retry=False,
        )
    logger.info("[%s] %s snoozed for %gs", job_type.name, ctx.job.pk, exc.seconds)
    return Outcome(JobStatus.SCHEDULED, exc=exc, snooze=exc.seconds)


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
    except Snooze as exc:
        return _snoozed(job_type, ctx, exc)
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


# -- fn.run() ------------------------------------------------------------------------------------


def on_own_connection(work: Callable[[], T]) -> T:
    """Run ``work`` on a connection of its own, committed at once, and return its result.

    ``fn.run()`` may be called inside the caller's transaction; what other processes must
    see at once (this process's ``Worker`` row, the lock key it takes) cannot wait for that
    transaction's commit, and no worker may wait on it. A short thread has its own
    connections (Django's are per thread). Outside a transaction, and on SQLite (a single
    writer: a second connection would wait for the caller's transaction, and so does every
    worker anyway), ``work`` runs here.
    """
    connection = connections[jobs_settings.DATABASE]
    if not connection.in_atomic_block or connection.vendor == "sqlite":
        return work()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, name="django-jobs-run", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _register_run_process() -> uuid.UUID:
    host, _, pid = worker_id().rpartition(":")
    row = Worker.objects.create(
        kind=Worker.Kind.RUN, host=host, pid=int(pid), version=__version__, busy=1,
        started_at=clock.sql_now(), heartbeat_at=clock.sql_now(),
    )
    return row.pk


def start_row(job_type: JobType, data: dict[str, Any], owner: uuid.UUID) -> Execution:
    """Insert a row already claimed by this process, holding its lock, for ``fn.run()``."""
    if not job_type.is_enabled:
        raise JobDisabled(f"job {job_type.name!r} is disabled")
    row = build_row(job_type, data)
    me = worker_id()
    row.status = JobStatus.RUNNING
    row.claim_id = uuid.uuid4()
    row.owner_id = owner
    row.worker = me
    row.started_at = row.heartbeat_at = None
    row.unique_key = None
    if row.lock_key:
        lock_key, claim_id = row.lock_key, row.claim_id

        def take(bounded: bool) -> bool:
            db = jobs_settings.DATABASE
            with transaction.atomic(using=db):
                if bounded:
                    # Only an uncommitted transaction taking the same key can make this wait
                    # (the caller's own, perhaps, which waits for us): wait briefly, then call
                    # it held.
                    bound_lock_wait(connections[db], 1)
                try:
                    with transaction.atomic(using=db):
                        return locks.acquire(lock_key, job_id=row.pk, claim_id=claim_id,
                                             worker=me, owner=owner)
                except OperationalError:
                    return False

        apart = connections[jobs_settings.DATABASE].in_atomic_block
        taken = on_own_connection(lambda: take(bounded=True)) if apart else take(bounded=False)
        if not taken:
            raise JobAlreadyRunning(
                f"job {job_type.name!r} holds lock {row.lock_key!r} elsewhere; not started"
            )
    try:
        row.save(using=jobs_settings.DATABASE, force_insert=True)
    except BaseException:
        if row.lock_key:
            on_own_connection(lambda: _free_lock(row.lock_key, row.claim_id))
        raise
    return Execution(row, job_type, worker=me, owner=owner)


def _free_lock(key: str, claim_id: uuid.UUID | None) -> None:
    JobTypeLock.objects.filter(key=key, claim_id=claim_id).delete()


def run_now(job_type: JobType, data: dict[str, Any]) -> Any:
    """``fn.run(**data)``: run in this process through the full bookkeeping.

    Returns the result; re-raises the job's exception (``JobCancelled``, ``JobTimeout``...)
    after the row records it.

    The process gets a ``Worker`` row for the run (kind ``run``), beaten by a monitor thread,
    so other workers see the run alive and recover it if this process dies. The row and the
    lock key are written on a connection of their own: inside the caller's transaction no
    worker waits on it. There the job's own row is invisible to other connections until the
    caller commits, so its timeout is judged when the function returns.
    """
    in_transaction = connections[jobs_settings.DATABASE].in_atomic_block
    owner = on_own_connection(_register_run_process)
    monitor = Monitor(owner)
    monitor.start()
    try:
        execution = start_row(job_type, data, owner)
        if not in_transaction:
            monitor.add(execution)
        # Deleting the key in the caller's transaction would hold it until that commits (and
        # block the release below): it is freed on its own connection instead.
        execution.frees_lock_apart = in_transaction
        outcome = execute(execution)
        if execution.job.lock_key:
            on_own_connection(lambda: _free_lock(execution.job.lock_key, execution.claim_id))
    finally:
        monitor.stop()
        on_own_connection(lambda: Worker.objects.filter(pk=owner).delete())
    if outcome is None:
        raise JobCancelled(f"job {job_type.name!r} was taken away before it started")
    if outcome.exc is not None:
        raise outcome.exc
    if outcome.status == JobStatus.FAILED:
        if execution.timed_out or execution.past_deadline:
            raise JobTimeout(outcome.error)
        raise ValueError(outcome.error)
    return outcome.result


jobtypes.install_runner(run_now)
