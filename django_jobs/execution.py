"""A claimed run and every write made about it.

Each write is fenced: it names the row *and* the claim (``claim_id``) and only applies while the
row is still running under that claim. A worker that was written off as lost, or whose job was
timed out or released, therefore changes nothing when it wakes up.

A run is alive as long as the process that claimed it (its ``owner``, a ``Worker`` row) keeps
beating; its timeout is enforced by that process. Runs without an owner (eager mode and
``run_due_jobs()`` in tests) keep the older lease: ``locked_until`` is their deadline.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.db.models import F

from . import clock, payload, signals, workflows
from .conf import jobs_settings
from .jobtypes import registry
from .limits import may_hold_slots
from .models import Job, JobStatus, JobTypeLock, scheduled_state
from .models.querysets import not_before_start
from .retry import retry_delay, should_retry

if TYPE_CHECKING:
    from .jobtypes import JobType  # noqa: F401  (annotations)
    from .outcomes import OutcomeWriter  # noqa: F401  (annotations)

logger = logging.getLogger("django_jobs")

#: Timeout of a row whose job is not registered here (it is failed at once anyway).
DEFAULT_TIMEOUT = timedelta(minutes=5)
#: Longest pause between two tries of a write while the database is unreachable.
MAX_RETRY_PAUSE = 5.0
#: Longest wait for a row lock in a write of the monitor (a heartbeat, progress, a timeout):
#: it must not stall behind a row a job keeps locked in its own transaction.
LOCK_WAIT_SECONDS = 1


def lease_margin() -> timedelta:
    """How long past its deadline an owner-less run's lease lasts."""
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
    snooze: float | None = None  # back to scheduled in this many seconds (Snooze)

    @classmethod
    def failed(cls, message: str, exc: BaseException | None = None, *, retry: bool = True):
        return cls(JobStatus.FAILED, error=message, retry=retry, exc=exc)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Outcome:
        text = "".join(traceback.format_exception(exc))
        return cls.failed(f"{type(exc).__name__}: {exc}\n\n{text}", exc)


class Execution:
    """One claimed row in this process: its claim, its deadline, what its monitor knows."""

    def __init__(
        self,
        job: Job,
        job_type: JobType | None,
        *,
        worker: str,
        owner: uuid.UUID | None = None,
        monitored: bool = False,
    ) -> None:
        self.job = job
        self.job_type = job_type
        self.claim_id = job.claim_id
        self.worker = worker
        self.owner = owner
        # A monitor thread beats, enforces the timeout, writes progress and reads cancellation
        # requests for this run; without one, the run's own thread does what it can.
        self.monitored = monitored
        self.timeout: timedelta = job_type.timeout if job_type else DEFAULT_TIMEOUT
        self.deadline: datetime | None = None  # set when the run really starts
        # The same deadline on this process's monotonic clock, which decides (a host whose
        # wall clock is stepped must not time its runs out early or late).
        self._deadline_mono: float | None = None
        self.started = False
        self.finished = threading.Event()  # set once an outcome is written (by anyone)
        self.returned = threading.Event()  # the run's thread is back from the job's code
        self.timed_out = False
        self.timed_out_at: float | None = None  # monotonic
        self.lost = False  # the claim was taken away: stop writing, stop working
        self.cancel_requested = False
        self.abandoned = False  # the process is leaving: stop retrying writes
        self.lingering_lock = False  # finished (timed out) but its thread still runs
        # The lock key is freed by the caller on a connection of its own (fn.run() inside a
        # transaction), never by the outcome's write.
        self.frees_lock_apart = False
        self.thread_id: int | None = None
        # The worker's writer of outcomes (``django_jobs.outcomes``): an ending that needs no
        # other write is handed to it, and this run's thread goes on at once.
        self.outcomes: OutcomeWriter | None = None
        self._pending_progress: dict[str, Any] | None = None
        self._lost_reported = False
        # Short sections over this object's state; never held across a database call, so the
        # monitor (progress, timeouts) is never stuck behind a write that waits for the
        # database.
        self._lock = threading.Lock()
        # Held by whoever writes the run's ending (its thread, the monitor at a timeout, a
        # release at shutdown), for as long as that write takes.
        self._ending = threading.Lock()

    def __repr__(self) -> str:
        return f"<Execution {self.job.name} {self.job.pk}>"

    # -- starting ------------------------------------------------------------------------------

    def begin(self) -> bool:
        """Start the run now, if it is still ours: its timeout counts from here.

        The start is written (fenced) before any of the job's code runs, so a claimed row that
        never started is told apart from one that did: after a crash, the first goes back to
        the queue without using an attempt. ``False``: the row is no longer ours (released,
        recovered, cancelled), and the run must not start.
        """
        with self._lock:
            if self.finished.is_set() or self.lost:
                return False
        now = clock.now()
        lease = now + self.timeout + lease_margin() if self.owner is None else None
        won = self._retrying(
            lambda: Job.objects.start_claimed(self.job.pk, self.claim_id, locked_until=lease),
            "the start",
        )
        if not won:
            self.lost = True
            return False
        self.thread_id = threading.get_ident()
        self.job.started_at = self.job.heartbeat_at = now
        with self._lock:
            self.deadline = now + self.timeout
            self._deadline_mono = time.monotonic() + self.timeout.total_seconds()
            self.started = True
        return True

    @property
    def ending(self) -> bool:
        """Whether the run's ending is being written right now."""
        return self._ending.locked()

    def report_lost(self, what: str) -> None:
        """Mark the run as taken away and say so in the log, once, whoever finds out."""
        self.lost = True
        with self._lock:
            if self._lost_reported:
                return
            self._lost_reported = True
        logger.warning("[%s] %s is no longer ours: %s", self.job.name, self.job.pk, what)

    # -- the fence -----------------------------------------------------------------------------

    def fenced(self):
        return Job.objects.claimed_by(self.job.pk, self.claim_id)

    def update(self, **fields: Any) -> bool:
        """A fenced update; ``False`` (and ``lost``) when the claim is no longer ours."""
        if self.finished.is_set():
            return False
        won = self.fenced().update(**fields) == 1
        if not won and not self.finished.is_set():
            self.lost = True
        return won

    @property
    def past_deadline(self) -> bool:
        if self.deadline is None:
            return False
        if clock.is_frozen():  # tests move time by hand
            return clock.now() >= self.deadline
        return self._deadline_mono is not None and time.monotonic() >= self._deadline_mono

    def extend(self, seconds: float) -> datetime:
        """Push the deadline so that at least ``seconds`` remain.

        A run's life is its worker's heartbeat, so nothing is written; an owner-less run's
        lease follows its deadline.
        """
        target = clock.now() + timedelta(seconds=seconds)
        target_mono = time.monotonic() + seconds
        with self._lock:
            if self.deadline is None or target > self.deadline:
                self.deadline = target
            if self._deadline_mono is None or target_mono > self._deadline_mono:
                self._deadline_mono = target_mono
            deadline = self.deadline
        if self.owner is None:
            self.update(locked_until=deadline + lease_margin())
        return deadline

    # -- progress ------------------------------------------------------------------------------

    def queue_progress(self, fields: dict[str, Any]) -> None:
        """Hand progress to the monitor, which writes it on its own connection."""
        with self._lock:
            self._pending_progress = {**(self._pending_progress or {}), **fields}

    def take_progress(self) -> dict[str, Any] | None:
        with self._lock:
            fields, self._pending_progress = self._pending_progress, None
        return fields

    # -- endings -------------------------------------------------------------------------------

    def finish(
        self,
        outcome: Outcome,
        extra: dict[str, Any] | None = None,
        *,
        keep_lock: bool = False,
        wait: bool = True,
    ) -> bool | None:
        """Write the outcome; ``True`` if it was ours and landed.

        Passing database errors are retried for as long as the run is ours and the process
        is not leaving, however long the outage. A write the database refuses (a value it
        cannot store) is replaced by a ``failed`` outcome that says which write failed and
        why. With ``keep_lock`` the lock key stays held (``lingering_lock``) until
        ``release_lingering_lock()``, called once the run's thread has really returned.

        ``wait=False`` (the monitor) makes one try and never waits, for a row lock no longer
        than ``LOCK_WAIT_SECONDS``: ``None`` means "not now" (another ending is being written,
        the row is locked, or the database is unreachable).

        With a writer of outcomes (``self.outcomes``), an ending that needs no other write is
        handed to it instead: ``True`` then means "handed over"; the writer writes it with
        others, and announces it (``job_finished``, ``on_error``) once it has landed.
        """
        if not self._ending.acquire(blocking=wait):
            return None
        try:
            if self.finished.is_set():
                return False
            if wait and self._hand_over(outcome, extra, keep_lock):
                self.finished.set()
                return True
            written = self.write_outcome(
                outcome, extra, keep_lock or self.frees_lock_apart, patient=wait
            )
            if written is None:
                return None
            won, outcome = written
            with self._lock:
                self.finished.set()
                self.lingering_lock = bool(
                    won and keep_lock and holds_keys(self.job) and not self.frees_lock_apart
                )
        finally:
            self._ending.release()
        if not won:
            self.lost = True
            return False
        self.announce(outcome)
        return True

    def _hand_over(self, outcome: Outcome, extra: dict[str, Any] | None, keep_lock: bool) -> bool:
        if self.outcomes is None or keep_lock or self.frees_lock_apart or self.owner is None:
            return False
        if not ends_alone(self.job, outcome):
            return False
        return self.outcomes.offer(self, outcome, extra, clock.now())

    def announce(self, outcome: Outcome) -> None:
        """The outcome has landed: tell the receivers of ``job_finished`` and the job's
        ``on_error`` hook."""
        self.job.status = outcome.status
        if outcome.snooze is not None:
            return  # not an ending: no job_finished, no hook
        send_robust(
            signals.job_finished, job=self.job, status=outcome.status, result=outcome.result,
            error=outcome.error,
        )
        hook = self.job_type and self.job_type.on_error
        if outcome.status == JobStatus.FAILED and hook:
            call_hook(hook, self.job, outcome.exc, "on_error")

    def write_outcome(
        self, outcome: Outcome, extra: dict[str, Any] | None, keep_lock: bool, *, patient: bool
    ) -> tuple[bool, Outcome] | None:
        """Write the ending now, on this thread's connection: (whether it landed, the outcome
        written, which is a failure saying why when the database refused the first), or
        ``None`` when not ``patient`` and it could not be written now."""

        def write(what: Outcome, fields: dict[str, Any] | None) -> bool:
            return bool(record_outcome(self.job, self.claim_id, what, extra=fields,
                                       keep_lock=keep_lock))

        try:
            if not patient:
                with lock_waits_bounded():
                    return write(outcome, extra), outcome
            return self._retrying(lambda: write(outcome, extra), "the outcome"), outcome
        except (OperationalError, InterfaceError):
            if not patient:
                close_broken_connection()
                return None  # the database is unreachable: the monitor tries again later
            return False, outcome  # the run was taken away, or the process is leaving
        except Exception as exc:
            # The database refused the write (a result it cannot store, a broken connection
            # state...): record why, so the row never stays running.
            logger.warning("[%s] %s: the outcome could not be written (%s); recording a "
                           "failure instead", self.job.name, self.job.pk, exc)
            fallback = Outcome.failed(
                f"the run ended {outcome.status}, but its outcome could not be written: "
                f"{type(exc).__name__}: {exc}", outcome.exc, retry=False,
            )
        close_broken_connection()
        try:
            return self._retrying(lambda: write(fallback, None), "the outcome"), fallback
        except Exception:
            logger.exception("[%s] %s: not even the failure could be written", self.job.name,
                             self.job.pk)
            return False, fallback

    def release_lingering_lock(self) -> None:
        """Free the lock key a timed-out run kept while its thread was still running."""
        with self._lock:
            if not self.lingering_lock:
                return
            self.lingering_lock = False
        self._retrying(lambda: free_keys(self.job, self.claim_id), "a lock release")

    def release(self) -> bool:
        """Give the row back to the queue untouched by this run (never started, or shutdown
        past grace)."""
        with self._ending:
            if self.finished.is_set():
                return False
            won = bool(self._retrying(lambda: release_row(self.job, self.claim_id), "a release"))
            self.finished.set()
            self.lost = True
        return won

    def _retrying(self, write, what: str):
        """Run an idempotent, fenced write through passing database errors.

        Retries while the run is ours and the process stays: a live worker keeps its runs
        through an outage (its heartbeats resume with the database), so giving up early
        would only make a finished run look lost.
        """
        return through_outages(write, stop=lambda: self.lost or self.abandoned,
                               what=what, about=f"[{self.job.name}] {self.job.pk}: ")


def through_outages(write, *, stop, what: str, about: str = ""):
    """Run an idempotent write, retried with a growing pause through passing database
    errors (a restart, a failover, a dropped connection) until it lands, or until ``stop()``
    says to give up: the error is raised then. One warning per write, not per try."""
    pause = 0.1
    warned = False
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if stop():
                raise
            if not warned:
                logger.warning("%sdatabase error while writing %s, retrying: %s", about, what,
                               exc)
                warned = True
            close_broken_connection()
            time.sleep(pause)
            pause = min(pause * 2, MAX_RETRY_PAUSE)


def close_broken_connection() -> None:
    connection = connections[jobs_settings.DATABASE]
    if not connection.in_atomic_block:
        connection.close()


def bound_lock_wait(connection: Any, seconds: int) -> None:
    """Make row-lock waits on ``connection`` give up after ``seconds`` (with an error).

    On PostgreSQL for the current transaction only (``SET LOCAL``): behind a transaction
    pooler such as PgBouncer, a session setting would stay on the server connection for
    whichever client gets it next, and this client's next transaction may run on another
    one. MySQL and MariaDB have no such scope: there it holds for the session, so use it on a
    connection of its own.
    """
    if connection.vendor == "postgresql":
        statement = f"SET LOCAL lock_timeout = '{int(seconds)}s'"
    elif connection.vendor == "mysql":
        statement = f"SET SESSION innodb_lock_wait_timeout = {int(seconds)}"
    else:
        return
    with connection.cursor() as cursor:
        cursor.execute(statement)


@contextmanager
def lock_waits_bounded(seconds: int = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Writes to the jobs database inside give up on a row lock after ``seconds``.

    On PostgreSQL they run in one transaction, which the bound lasts for: a session setting
    is not safe behind a pooler (see ``bound_lock_wait``). Elsewhere the bound is set for the
    session of this thread's connection (the monitor's own).
    """
    db = jobs_settings.DATABASE
    connection = connections[db]
    if connection.vendor != "postgresql":
        bound_lock_wait(connection, seconds)
        yield
        return
    with transaction.atomic(using=db):
        bound_lock_wait(connection, seconds)
        yield


def send_robust(signal, **kwargs: Any) -> None:
    """Send ``signal``; a receiver that raises is logged, never allowed to stop a run."""
    for _receiver, response in signal.send_robust(sender=Job, **kwargs):
        if isinstance(response, Exception):
            logger.error("a receiver of %s raised: %r", _signal_name(signal), response,
                         exc_info=response)


def _signal_name(signal) -> str:
    for name in ("job_started", "job_finished"):
        if getattr(signals, name) is signal:
            return name
    return "a django-jobs signal"


def call_hook(hook, job: Job, exc: BaseException | None, what: str) -> None:
    try:
        hook(job, exc)
    except Exception:
        logger.exception("[%s] %s hook raised", job.name, what)


def connection_states() -> dict[str, tuple[bool, int]]:
    """How this thread's connections stand (autocommit, atomic depth), before a run."""
    return {
        connection.alias: (connection.get_autocommit(), len(connection.atomic_blocks))
        for connection in connections.all(initialized_only=True)
        if connection.connection is not None
    }


def restore_connections(before: dict[str, tuple[bool, int]] | None = None) -> None:
    """Give this thread's connections back as the run found them (``before``; by default in
    autocommit, outside any transaction). What the job left uncommitted in a transaction of
    its own is rolled back: it never committed it."""
    before = before or {}
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        default = (bool(connection.settings_dict["AUTOCOMMIT"]), 0)
        expected = before.get(connection.alias, default)
        if (connection.get_autocommit(), len(connection.atomic_blocks)) == expected:
            continue
        if expected[1]:
            # fn.run() inside the caller's transaction: that transaction is the caller's.
            logger.warning("a job changed the transaction state of database %r inside the "
                           "caller's transaction; left as it is", connection.alias)
            continue
        logger.warning("a job left a transaction open on database %r: rolled back",
                       connection.alias)
        # Atomic blocks that were entered and never exited cannot be unwound from here: the
        # connection is closed and forgotten, and the next query opens a fresh one.
        connection.in_atomic_block = False
        connection.atomic_blocks = []
        connection.savepoint_ids = []
        connection.needs_rollback = False
        connection.closed_in_transaction = False
        try:
            connection.close()
        except DatabaseError:
            connection.connection = None


def holds_keys(job: Job) -> bool:
    """Whether a claimed row may hold a lock key or concurrency slots."""
    return bool(job.lock_key) or may_hold_slots(job.limit_key, job.queue)


def free_keys(job: Job, claim_id: uuid.UUID | None) -> None:
    """Free the lock key and the slots this claim of ``job`` holds (fenced on the claim)."""
    if may_hold_slots(job.limit_key, job.queue):
        JobTypeLock.objects.held_by_run(job.pk, claim_id).delete()
    elif job.lock_key:
        JobTypeLock.objects.filter(key=job.lock_key, claim_id=claim_id).delete()


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
    A snooze (``outcome.snooze``) puts the row back as scheduled instead.
    """
    if outcome.snooze is not None:
        return release_row(job, claim_id, snooze=outcome.snooze)
    now = clock.now()
    fields = outcome_fields(outcome, extra, now)
    fence = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, claim_id=claim_id)
    if guard:
        fence = fence.filter(**guard)
    if ends_alone(job, outcome, keep_lock=keep_lock):
        # Nothing else to write: one statement, no transaction (the common, fast path).
        if guard:
            return fence.update(**fields) == 1
        return Job.objects.end_claimed(job.pk, claim_id, now, fields)
    with transaction.atomic(using=jobs_settings.DATABASE):
        if fence.update(**fields) != 1:
            return False
        if not keep_lock:
            free_keys(job, claim_id)
        retried = None
        if outcome.status == JobStatus.FAILED and outcome.retry:
            retried = schedule_retry(job, now)
        if job.workflow_id is not None and retried is None:
            # The run's end and what it releases (or cancels) in its workflow: one commit.
            workflows.settle([job.pk], status=outcome.status)
    return True


def outcome_fields(
    outcome: Outcome, extra: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """The columns a run's ending writes (``extra``: the progress it had not written yet)."""
    limit = jobs_settings.MAX_TEXT_LENGTH
    fields: dict[str, Any] = {
        "status": outcome.status,
        "finished_at": not_before_start(now),
        "result": outcome.result,
        "error": payload.storable_text(outcome.error, limit),
        "locked_until": None,
    }
    if outcome.status == JobStatus.SUCCEEDED:
        fields["progress"] = 1.0
        fields["eta"] = None
    for key, value in (extra or {}).items():
        if key not in fields or outcome.status != JobStatus.SUCCEEDED:
            fields[key] = value
    if isinstance(fields.get("progress_message"), str):
        fields["progress_message"] = payload.storable_text(fields["progress_message"], limit)
    return fields


def ends_alone(job: Job, outcome: Outcome, *, keep_lock: bool = False) -> bool:
    """Whether the outcome is the only write a run's end makes: no retry to schedule, no
    workflow to settle, no lock key or slot to free (or one kept on purpose)."""
    may_retry = (
        outcome.status == JobStatus.FAILED
        and outcome.retry
        and should_retry(job.attempt, job.max_attempts)
    )
    return (
        outcome.snooze is None
        and not may_retry
        and job.workflow_id is None
        and (keep_lock or not holds_keys(job))
    )


def schedule_retry(job: Job, now: datetime) -> Job | None:
    """A new row for the next attempt, linked to this one, if attempts remain.

    The retry holds the unique key like any pending job: under "skip" a job with the same key
    enqueued while this one ran is kept and returned instead, under "replace" it is cancelled.
    """
    if not should_retry(job.attempt, job.max_attempts) or job.name not in registry:
        return None
    if not workflows.retries_allowed(job):
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
        limit_key=job.limit_key,
        rescheduled_from_id=job.pk,
        created_by_id=job.created_by_id,
        meta=job.meta,
        workflow_id=job.workflow_id,
        **scheduled_state(job.name, job.unique_key),
    )
    saved = Job.objects.insert_scheduled(retry, replace=job_type.unique == "replace")
    if saved is retry:
        workflows.repoint(job, retry)
    return saved


def release_row(
    job: Job, claim_id: uuid.UUID | None, *, unstarted: bool = False,
    snooze: float | None = None,
) -> bool:
    """Give a claimed row back to the queue as a scheduled row that never started.

    It holds its unique key again: under "skip" a job with the same key enqueued during the run
    is kept and this row is cancelled in its favour; under "replace" that job is cancelled.
    With ``snooze`` (seconds) the row is due again that long after now, by the database's
    clock, and counts one more snooze; its attempt is unchanged either way.
    """
    fields = scheduled_state(job.name, job.unique_key)
    slot = fields.pop("unique_slot")
    if snooze is not None:
        fields["run_at"] = clock.sql_now(snooze)
        fields["snoozes"] = F("snoozes") + 1
    with transaction.atomic(using=jobs_settings.DATABASE):
        # The fence first: the unique policy may cancel another row, which only the run that
        # still owns its claim may do.
        fence = Job.objects.claimed_by(job.pk, claim_id)
        if unstarted:
            fence = fence.filter(started_at__isnull=True)
        won = fence.update(**fields) == 1
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
        if won:
            free_keys(job, claim_id)
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
            close_broken_connection()
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
    return None


__all__ = [
    "Execution", "Outcome", "call_hook", "close_broken_connection", "ends_alone", "lease_margin",
    "outcome_fields", "record_outcome", "release_row", "through_outages",
    "connection_states", "restore_connections", "schedule_retry", "send_robust", "with_db_retry",
    "worker_id",
]
