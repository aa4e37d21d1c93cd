"""A claimed run and every write made about it.

Each write is fenced: it names the row *and* the claim (``claim_id``) and only applies while the
row is still running under that claim. A worker that was written off as dead, or whose job was
timed out or released, therefore changes nothing when it wakes up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import InterfaceError, OperationalError, connections, transaction

from . import clock, payload, signals
from .conf import jobs_settings
from .models import Job, JobStatus, JobTypeLock, scheduled_state
from .retry import retry_delay, should_retry

if TYPE_CHECKING:
    from .jobtypes import JobType

logger = logging.getLogger("django_jobs")

#: How long past its deadline a running row's lease lasts: the live worker times its own job
#: out first; rescuers only act on rows whose worker is really gone.
def lease_margin() -> timedelta:
    return timedelta(seconds=max(2 * jobs_settings.HEARTBEAT_INTERVAL, 1.0))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Outcome:
    """How a run ended, before it is written."""

    status: str
    result: Any = None
    error: str = ""
    retry: bool = True  # a failure may be retried if attempts remain
    exc: BaseException | None = None

    @classmethod
    def failed(cls, message: str, exc: BaseException | None = None, *, retry: bool = True):
        return cls(JobStatus.FAILED, error=message, retry=retry, exc=exc)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Outcome:
        text = "".join(traceback.format_exception(exc))
        return cls.failed(f"{type(exc).__name__}: {exc}\n\n{text}", exc)


class Execution:
    """One claimed row in this process: its deadline, its claim, its throttles."""

    def __init__(self, job: Job, job_type: JobType | None, *, worker: str) -> None:
        self.job = job
        self.job_type = job_type
        self.claim_id = job.claim_id
        self.worker = worker
        timeout = job_type.timeout if job_type else timedelta(minutes=5)
        self.deadline: datetime = (job.started_at or clock.now()) + timeout
        self.finished = threading.Event()  # set once an outcome is written (by anyone)
        self.timed_out = False
        self.lost = False  # the claim was taken away: stop writing, stop working
        self.lingering_lock = False  # finished (timed out) but its thread still runs
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Execution {self.job.name} {self.job.pk}>"

    def begin(self) -> None:
        """The run starts on its thread now: its timeout counts from here.

        A prefetched row may have waited in memory since its claim; if that ate into its
        lease, the lease is pushed out so that nobody rescues a run that just began.
        """
        now = clock.now()
        claimed_at = self.job.started_at or now
        timeout = self.deadline - claimed_at
        self.deadline = now + timeout
        if now - claimed_at > lease_margin() / 2:
            self.extend(timeout.total_seconds())

    # -- the fence ---------------------------------------------------------------------------

    def fenced(self):
        return Job.objects.claimed_by(self.job.pk, self.claim_id)

    def update(self, **fields: Any) -> bool:
        """A fenced update; ``False`` (and ``lost``) when the claim is no longer ours."""
        if self.finished.is_set():
            return False
        won = self.fenced().update(**fields) == 1
        if not won:
            self.lost = True
        return won

    @property
    def past_deadline(self) -> bool:
        return clock.now() >= self.deadline

    def extend(self, seconds: float) -> datetime:
        """Push the deadline so that at least ``seconds`` remain; persist the lease."""
        target = clock.now() + timedelta(seconds=seconds)
        with self._lock:
            if target > self.deadline:
                self.deadline = target
        lease = self.deadline + lease_margin()
        if self.update(locked_until=lease) and self.job.lock_key:
            JobTypeLock.objects.filter(key=self.job.lock_key, claim_id=self.claim_id).update(
                locked_until=lease
            )
        return self.deadline

    # -- endings -----------------------------------------------------------------------------

    def finish(
        self, outcome: Outcome, extra: dict[str, Any] | None = None, *, keep_lock: bool = False
    ) -> bool:
        """Write the outcome (retrying passing database errors); ``True`` if it was ours.

        With ``keep_lock`` the lock key stays held (``lingering_lock``) until
        ``release_lingering_lock()``, called once the run's thread has really returned.
        """
        with self._lock:
            if self.finished.is_set():
                return False
            won = with_db_retry(
                lambda: record_outcome(
                    self.job, self.claim_id, outcome, extra=extra, keep_lock=keep_lock
                )
            )
            self.finished.set()
            self.lingering_lock = bool(won and keep_lock and self.job.lock_key)
        if not won:
            self.lost = True
            return False
        self.job.status = outcome.status
        signals.job_finished.send(
            sender=Job, job=self.job, status=outcome.status, result=outcome.result,
            error=outcome.error,
        )
        hook = self.job_type and self.job_type.on_error
        if outcome.status == JobStatus.FAILED and hook:
            call_hook(hook, self.job, outcome.exc, "on_error")
        return True

    def release_lingering_lock(self) -> None:
        """Free the lock key a timed-out run kept while its thread was still running."""
        with self._lock:
            if not self.lingering_lock:
                return
            self.lingering_lock = False
        with_db_retry(
            lambda: JobTypeLock.objects.filter(
                key=self.job.lock_key, claim_id=self.claim_id
            ).delete()
        )

    def release(self) -> bool:
        """Give the row back to the queue untouched by this run (shutdown past grace)."""
        with self._lock:
            if self.finished.is_set():
                return False
            won = with_db_retry(lambda: release_row(self.job, self.claim_id))
            self.finished.set()
            self.lost = True
        return won


def call_hook(hook, job: Job, exc: BaseException | None, what: str) -> None:
    try:
        hook(job, exc)
    except Exception:
        logger.exception("[%s] %s hook raised", job.name, what)


def record_outcome(
    job: Job,
    claim_id: uuid.UUID | None,
    outcome: Outcome,
    *,
    extra: dict[str, Any] | None = None,
    guard: dict[str, Any] | None = None,
    keep_lock: bool = False,
) -> bool:
    """Fenced final write, lock release and retry scheduling, in one transaction.

    ``keep_lock`` leaves the lock key held by this claim: the run's thread is still executing
    (it ignored its timeout), and the key must not pass to another run until it returns.
    """
    db = jobs_settings.DATABASE
    now = clock.now()
    limit = jobs_settings.MAX_TEXT_LENGTH
    fields: dict[str, Any] = {
        "status": outcome.status,
        "finished_at": now,
        "result": outcome.result,
        "error": payload.truncate(outcome.error, limit),
        "locked_until": None,
    }
    if outcome.status == JobStatus.SUCCEEDED:
        fields["progress"] = 1.0
        fields["eta"] = None
    fields.update(extra or {})
    fence = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, claim_id=claim_id)
    if guard:
        fence = fence.filter(**guard)
    may_retry = (
        outcome.status == JobStatus.FAILED
        and outcome.retry
        and should_retry(job.attempt, job.max_attempts)
    )
    if not may_retry and (keep_lock or not job.lock_key):
        # Nothing else to write: one statement, no transaction (the common, fast path).
        return fence.update(**fields) == 1
    with transaction.atomic(using=db):
        if fence.update(**fields) != 1:
            return False
        if job.lock_key and not keep_lock:
            JobTypeLock.objects.filter(key=job.lock_key, claim_id=claim_id).delete()
        if outcome.status == JobStatus.FAILED and outcome.retry:
            schedule_retry(job, now)
    return True


def schedule_retry(job: Job, now: datetime) -> Job | None:
    """A new row for the next attempt, linked to this one, if attempts remain.

    The retry holds the unique key like any pending job: under "skip" a job with the same key
    enqueued while this one ran is kept and returned instead, under "replace" it is cancelled.
    """
    from .jobtypes import registry

    if not should_retry(job.attempt, job.max_attempts) or job.name not in registry:
        return None
    job_type = registry.get(job.name)
    delay = retry_delay(job.attempt, job_type.retry_delay, job_type.retry_backoff)
    retry = Job(
        name=job.name,
        data=job.data,
        queue=job.queue,
        priority=job.priority,
        run_at=now + delay,
        created_at=now,
        attempt=job.attempt + 1,
        max_attempts=job.max_attempts,
        unique_key=job.unique_key,
        lock_key=job.lock_key,
        rescheduled_from_id=job.pk,
        created_by_id=job.created_by_id,
        meta=job.meta,
        **scheduled_state(job.name, job.unique_key),
    )
    return Job.objects.insert_scheduled(retry, replace=job_type.unique == "replace")


def release_row(job: Job, claim_id: uuid.UUID | None) -> bool:
    """Give a claimed row back to the queue as a scheduled row that never started.

    It holds its unique key again: under "skip" a job with the same key enqueued during the run
    is kept and this row is cancelled in its favour; under "replace" that job is cancelled.
    """
    from .jobtypes import registry

    fields = scheduled_state(job.name, job.unique_key)
    slot = fields.pop("unique_slot")
    with transaction.atomic(using=jobs_settings.DATABASE):
        # The fence first: the unique policy may cancel another row, which only the run that
        # still owns its claim may do.
        won = Job.objects.claimed_by(job.pk, claim_id).update(**fields) == 1
        if won and slot is not None:
            released = Job.objects.scheduled().filter(pk=job.pk)
            replace = job.name in registry and registry.get(job.name).unique == "replace"
            holder, _ = Job.objects.hold_unique_slot(
                slot, lambda: released.update(unique_slot=slot), replace=replace
            )
            if holder is not None:
                released.update(
                    status=JobStatus.CANCELLED, finished_at=clock.now(),
                    error=f"released back to the queue while job {holder.pk} with the same "
                    "unique key was pending; that job runs instead",
                )
        if won and job.lock_key:
            JobTypeLock.objects.filter(key=job.lock_key, claim_id=claim_id).delete()
    return won


def with_db_retry(write, attempts: int = 6):
    """Run an idempotent, fenced write, reconnecting through passing database errors."""
    delay = 0.1
    for attempt in range(attempts):
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if attempt == attempts - 1:
                raise
            logger.warning("database error during a job write, retrying: %s", exc)
            connection = connections[jobs_settings.DATABASE]
            if not connection.in_atomic_block:
                connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
    return None
