"""The worker: claim due jobs, run them on threads, keep them alive, stop cleanly.

Reading order: ``run()`` is the whole life of a worker; everything it calls is below it.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import DatabaseError, connections

from .. import clock
from ..conf import jobs_settings
from ..execution import Execution, worker_id
from ..jobtypes import registry
from ..models import Job, WorkerState
from ..models import Worker as WorkerRow
from ..monitor import Monitor
from ..outcomes import CLOSE_PATIENCE, OutcomeWriter, writes_together
from ..pruning import prune
from ..runner import execute
from ..version import __version__
from .claim import WrittenOff, claim
from .connections import recycle
from .look import Look
from .notify import Listener, can_listen
from .rescue import rescue
from .scheduler import Scheduler
from .waker import Waker
from .watch import Watcher, can_watch

logger = logging.getLogger("django_jobs")

#: Exit status when running jobs had to be released back to the queue at shutdown.
EXIT_RELEASED = 75
#: Exit status when a run passed its timeout and its thread did not return within
#: ``HUNG_AFTER``: the process gives up on the thread and leaves, for its supervisor to start
#: a fresh one (the thread dies with the process, and its lock key is freed).
EXIT_HUNG = 70
#: Seconds between two looks at the job names this process may claim (registered, enabled on
#: this host). Paused queues need no read of their own: the claim's query leaves them out.
PAUSE_CHECK_INTERVAL = 2.0
#: While jobs take less than SHORT_JOB seconds on average, a worker claims up to PREFETCH more
#: than it has threads, so claims are batched and the next job is already in memory. Long
#: jobs turn it off: a worker must not sit on work that idle peers could take.
PREFETCH = 16
#: Idle poll while the worker is woken on change (unless a poll interval is configured): on
#: PostgreSQL while LISTEN hears notifications, on a SQLite file while its data_version is
#: watched. New jobs wake the worker, delayed jobs are slept towards, so polling is rare.
WOKEN_POLL_INTERVAL = 10.0
SHORT_JOB = 0.05


@dataclass
class WorkerOptions:
    queues: Sequence[str] = ()
    concurrency: int = 1
    burst: bool = False
    max_jobs: int | None = None
    poll_interval: float | None = None
    grace: float | None = None
    scheduler: bool = True
    install_signals: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        if self.poll_interval is not None and self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if self.grace is not None and self.grace < 0:
            raise ValueError("grace must be zero or positive")


@dataclass
class WorkerStats:
    claimed: int = 0
    finished: int = 0
    released: int = 0
    rescued: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Worker:
    def __init__(self, options: WorkerOptions | None = None, **kwargs) -> None:
        self.options = options or WorkerOptions(**kwargs)
        self.id = worker_id()
        self.stats = WorkerStats()
        self.wake = threading.Event()
        self.stopping = threading.Event()  # first signal: claim nothing more
        self.force = threading.Event()  # second signal: leave now
        self.row_id: uuid.UUID | None = None  # this process's Worker row
        self._identity_guard = threading.Lock()
        # Whether the sweep has work, looked at by the monitor with its heartbeat; a look
        # that finds some wakes the main loop.
        self.look = Look(on_work=self.wake.set)
        self.monitor = Monitor(busy=lambda: self.busy, on_written_off=self._reregister,
                               on_hung=self._on_hung, look=self.look)
        self.hung: list[Execution] = []
        self.outcomes = OutcomeWriter()
        #: The thread that wakes this worker when jobs may have come in (None: it polls).
        self.waker: Waker | None = None
        self._inbox: queue.Queue[Execution | None] = queue.Queue()
        self._running: dict[object, Execution] = {}
        self._running_guard = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_rescue = 0.0  # monotonic time of the last sweep
        self._write_off_others = False
        self._last_prune = time.monotonic()
        self._names: list[str] | None = None
        self._busy_at_last_claim = 0
        self._database_up_since = time.monotonic()
        self._database_was_down = False
        self._names_read_at = 0.0
        # The next scheduled run_at as last read, and the waker's count of wake-ups
        # then: while no notification came, no row became scheduled (see _next_run_at).
        self._next_run: tuple[int, object] | None = None
        self.scheduler = Scheduler() if self.options.scheduler else None
        self._average_duration: float | None = None  # moving average of job run times

    # -- the life of a worker ----------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or drained with ``burst``); return the exit status."""
        opts = self.options
        if opts.install_signals and threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        self.row_id = self._register()
        self.monitor.owner = self.row_id
        self._start_threads()
        logger.info(
            "worker %s started: queues=%s concurrency=%d", self.id,
            ",".join(opts.queues) or "*", opts.concurrency,
        )
        failures = 0
        self._database_up_since = time.monotonic()
        while not self.stopping.is_set():
            self.wake.clear()
            # Asked each round: the listener or watcher connects (or finds itself deaf behind a
            # pooler, or fails) after the loop has started.
            poll = self._poll_interval()
            try:
                self._rescue_if_due()
                self._schedule_if_due()
                self._prune_if_due()
                claimed, asked = self._claim_into_free_slots()
                failures = 0
                if claimed and claimed == asked:
                    continue  # every free slot was filled: more jobs may be due
                if self._done():
                    break
                # Nothing more to claim now: sleep until a job ends, a NOTIFY or a change seen
                # by the watcher, or the next poll.
                # While jobs are held (just handed out, or all slots full), skip the next-run
                # lookup: a job ending wakes the loop anyway, and the query would hold the GIL
                # just as those jobs run.
                if claimed or (asked == 0 and self.busy):
                    sleep = min(poll, jobs_settings.POLL_INTERVAL)
                else:
                    sleep = self._sleep_time(poll)
            except WrittenOff as exc:
                self._reregister(exc.owner)
                continue
            except DatabaseError as exc:
                failures += 1
                self._database_trouble(exc, failures)
                continue
            self.wake.wait(sleep)
        return self._shutdown()

    def _register(self) -> uuid.UUID:
        """This process's ``Worker`` row: its liveness, and what its code knows (deploys)."""
        host, _, pid = self.id.rpartition(":")
        while True:
            try:
                row = WorkerRow.objects.create(
                    kind=WorkerRow.Kind.WORKER, host=host, pid=int(pid),
                    queues=list(self.options.queues), concurrency=self.options.concurrency,
                    version=__version__, names=registry.names(),
                    disabled=registry.disabled_names(), started_at=clock.sql_now(),
                    heartbeat_at=clock.sql_now(),
                )
                return row.pk
            except DatabaseError as exc:
                if self.stopping.is_set():
                    raise
                self._database_trouble(exc, 3)

    def _reregister(self, lost: uuid.UUID | None) -> uuid.UUID | None:
        """Written off by a peer (this process froze, or lost the database for too long):
        every run it held under row ``lost`` was recovered elsewhere. Go on under a new
        identity (the monitor and the claim may both find out; the first one acts)."""
        with self._identity_guard:
            if lost != self.row_id:
                return self.row_id
            with self._running_guard:
                for execution in self._running.values():
                    execution.lost = True
            if self.stopping.is_set():
                return None
            self.row_id = self._register()
            self.monitor.owner = self.row_id
        logger.warning("worker %s goes on as worker row %s", self.id, self.row_id)
        return self.row_id

    def _capacity(self) -> int:
        """Jobs this worker holds at once: its threads, plus a prefetch while jobs are short."""
        concurrency = self.options.concurrency
        average = self._average_duration
        if average is not None and average < SHORT_JOB:
            return concurrency + max(PREFETCH, concurrency)
        return concurrency

    def _claim_into_free_slots(self) -> tuple[int, int]:
        """Claim jobs for the free slots: (how many were claimed, how many were asked for)."""
        capacity = self._capacity()
        free = capacity - self.busy
        if self._inbox.qsize() and free < capacity - self.options.concurrency:
            # Jobs are still waiting for a thread: claim again once they run out, in one batch.
            return 0, 0
        if self.options.max_jobs is not None:
            free = min(free, self.options.max_jobs - self.stats.claimed)
        if free <= 0:
            return 0, 0
        self._busy_at_last_claim = self.busy
        rows = claim(
            self.id, free, owner=self.row_id, queues=self.options.queues,
            names=self._claimable_names(), exclude_paused=True,
        )
        for row in rows:
            job_type = registry.get(row.name) if row.name in registry else None
            execution = Execution(row, job_type, worker=self.id, owner=self.row_id)
            execution.outcomes = self.outcomes
            with self._running_guard:
                self._running[row.pk] = execution
            self.monitor.add(execution)
            self._inbox.put(execution)
        self.stats.claimed += len(rows)
        return len(rows), free

    def _claimable_names(self) -> list[str]:
        """The job names this process runs: registered here and enabled on this host.

        During a deploy, rows of jobs this code does not define are left to the workers whose
        code does (see ``UNKNOWN_JOB_GRACE``).
        """
        now = time.monotonic()
        if self._names is None or now - self._names_read_at >= PAUSE_CHECK_INTERVAL:
            disabled = set(registry.disabled_names())
            self._names = [name for name in registry.names() if name not in disabled]
            self._names_read_at = now
        return self._names

    def _schedule_if_due(self) -> None:
        if self.scheduler is None:
            return
        try:
            self.scheduler.tick_if_due()
        except DatabaseError:
            raise
        except Exception:
            # A user's next_run callable (or a broken schedule) must not stop the worker.
            logger.exception("worker %s: the scheduler failed; running jobs carries on", self.id)

    def _prune_if_due(self) -> None:
        if time.monotonic() - self._last_prune < jobs_settings.PRUNE_INTERVAL:
            return
        self._last_prune = time.monotonic()
        prune(max_batches=5)

    def _poll_interval(self) -> float:
        """Seconds between idle polls. While LISTEN hears notifications, or the watcher sees
        the SQLite file's changes, polling is only a safety net: longer. Not yet woken on
        change, deaf behind a pooler, or the watcher failed: the poll finds jobs."""
        if self.options.poll_interval is not None:
            return self.options.poll_interval
        user = jobs_settings.user_settings
        woken = self.waker is not None and self.waker.connected.is_set()
        if woken and not (isinstance(user, dict) and "POLL_INTERVAL" in user):
            return WOKEN_POLL_INTERVAL
        return jobs_settings.POLL_INTERVAL

    def _sleep_time(self, poll: float) -> float:
        """How long an idle worker may sleep: until the next poll, the next delayed job's
        run_at or the scheduler's next occurrence, whichever comes first."""
        sleep = poll
        if self.scheduler is not None:
            sleep = min(sleep, self.scheduler.seconds_until_due())
        if self.look.sweep_wanted(self._write_off_others):
            # A look found work for the sweep that is not due yet: wake up when it is.
            until = jobs_settings.RESCUE_INTERVAL - (time.monotonic() - self._last_rescue)
            sleep = min(sleep, max(until, 0.0))
        if sleep > jobs_settings.POLL_INTERVAL:
            # A long sleep must not make a delayed job late, nor a job waiting for a lock.
            next_due = self._next_run_at()
            if next_due is not None:
                until = (next_due - clock.now()).total_seconds()
                sleep = min(sleep, max(until, jobs_settings.POLL_INTERVAL))
        return max(sleep, 0.01)

    def _next_run_at(self):
        """The earliest ``run_at`` of the scheduled rows of this worker's queues.

        Read again only when it may have moved earlier: a row becomes scheduled only through
        an INSERT or a change of status, and both NOTIFY on PostgreSQL (see notify.py) and
        change the file's data_version on SQLite (see watch.py). While the waker has sent no
        wake-up since the last read, and that read's answer is still in the future, it stands
        (rows claimed or cancelled meanwhile only make the real one later: a wake-up at the
        old one is early, never late). Without a connected waker: read each time.
        """
        waker = self.waker
        heard = waker.heard if waker is not None and waker.connected.is_set() else None
        cached = self._next_run
        if heard is not None and cached is not None and cached[0] == heard and (
            cached[1] is None or cached[1] > clock.now()
        ):
            return cached[1]
        next_due = Job.objects.scheduled().in_queues(self.options.queues).next_run_at()
        self._next_run = (heard, next_due) if heard is not None else None
        return next_due

    def _done(self) -> bool:
        """Burst mode ends when nothing is due and nothing runs; --max-jobs when all ran."""
        if self.options.max_jobs is not None and self.stats.claimed >= self.options.max_jobs:
            return self.busy == 0
        # A claim made while runs were going may have found keys they held: burst mode ends
        # only after a claim that looked with nothing running found nothing.
        return self.options.burst and self.busy == 0 and self._busy_at_last_claim == 0

    def _rescue_if_due(self) -> None:
        if time.monotonic() - self._last_rescue < jobs_settings.RESCUE_INTERVAL:
            return
        # Peers are judged only once this process has itself reached the database for
        # WORKER_LOST_AFTER: after an outage every live worker is overdue for a moment, and
        # beats again within a heartbeat interval.
        if self._database_was_down:
            # The first look since the database came back (for this loop): count from now.
            self._database_was_down = False
            self._database_up_since = time.monotonic()
        up_since = max(self._database_up_since, self.monitor.database_up_since)
        up_for = 0.0 if self.monitor.database_down else time.monotonic() - up_since
        write_off_others = self._write_off_others = up_for >= jobs_settings.WORKER_LOST_AFTER
        # The monitor looks for the sweep's work with every heartbeat, in the same statement
        # (PostgreSQL): when its last look, fresh enough, found none, the sweep's statements
        # would all find nothing, and are skipped; the next look that finds work wakes this
        # loop. The once-a-minute parts of rescue() keep their own clock.
        sweep = self.look.sweep_needed(write_off_others)
        if sweep:
            self._last_rescue = time.monotonic()
        self.stats.rescued += len(
            rescue(me=self.row_id, write_off_others=write_off_others, sweep=sweep)
        )

    def _database_trouble(self, exc: Exception, failures: int) -> None:
        self._database_was_down = True
        delay = min(0.1 * 2**failures, 5.0)
        logger.warning("worker %s: database error (%s); retrying in %.1fs", self.id, exc, delay)
        connection = connections[jobs_settings.DATABASE]
        if not connection.in_atomic_block:
            connection.close()
        self.stopping.wait(delay)

    # -- threads -----------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        with self._running_guard:
            return len(self._running)

    def _start_threads(self) -> None:
        self.monitor.start()
        if writes_together():
            self.outcomes.start()  # not started: each run writes its own ending
        if can_listen():
            self.waker = Listener(self.wake)
        elif can_watch():
            self.waker = Watcher(self.wake)
        if self.waker is not None:
            self.waker.start()
        for index in range(self.options.concurrency):
            thread = threading.Thread(
                target=self._work, name=f"django-jobs-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        """A job thread: run what the main loop hands over, on its own connection."""
        while True:
            execution = self._inbox.get()
            if execution is None:
                break
            if self.stopping.is_set():
                # Claimed but never started: back to the queue at once, no grace needed.
                self._release_unstarted(execution)
                continue
            started = time.monotonic()
            try:
                outcome = execute(execution)
                if outcome is not None:
                    key = str(outcome.status)
                    self.stats.outcomes[key] = self.stats.outcomes.get(key, 0) + 1
            except BaseException:
                logger.exception("[%s] the job thread caught an escaping error",
                                 execution.job.name)
            finally:
                elapsed = time.monotonic() - started
                average = self._average_duration
                self._average_duration = (
                    elapsed if average is None else 0.8 * average + 0.2 * elapsed
                )
                self.monitor.discard(execution)
                with self._running_guard:
                    self._running.pop(execution.job.pk, None)
                self.stats.finished += 1
                try:
                    recycle()
                except Exception:
                    logger.warning("could not recycle a connection", exc_info=True)
                self.wake.set()
        connections.close_all()

    # -- stopping ----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only flags here: a handler that raised could land inside the claim transaction.
        if self.stopping.is_set():
            self.force.set()
        self.stopping.set()
        self.wake.set()

    def stop(self, force: bool = False) -> None:
        """Ask the worker to stop, as SIGTERM does (``force`` as a second signal does)."""
        if force:
            self.force.set()
        self.stopping.set()
        self.wake.set()

    def _release_unstarted(self, execution: Execution) -> None:
        try:
            if execution.release():
                self.stats.released += 1
        except DatabaseError:
            logger.warning("[%s] could not release %s", execution.job.name, execution.job.pk,
                           exc_info=True)
        finally:
            self.monitor.discard(execution)
            with self._running_guard:
                self._running.pop(execution.job.pk, None)
            self.wake.set()

    def _on_hung(self, execution: Execution) -> None:
        """The monitor found a run past its timeout whose thread does not come back."""
        logger.critical(
            "[%s] %s passed its timeout (%s) and its thread has not returned within "
            "HUNG_AFTER (%gs): this worker stops claiming, finishes or releases its other "
            "runs, and exits with status %d so that its supervisor starts a fresh process",
            execution.job.name, execution.job.pk, execution.timeout, jobs_settings.HUNG_AFTER,
            EXIT_HUNG,
        )
        self.hung.append(execution)
        self.stopping.set()
        self.wake.set()

    def _log_hung_stacks(self) -> None:
        frames = sys._current_frames()
        for execution in self.hung:
            frame = frames.get(execution.thread_id) if execution.thread_id else None
            stack = "".join(traceback.format_stack(frame)) if frame else "(no stack: gone)\n"
            logger.critical("[%s] %s hung thread's stack:\n%s", execution.job.name,
                            execution.job.pk, stack)

    def _active(self) -> int:
        """Runs still expected to end by themselves (hung ones are not)."""
        hung = {id(e) for e in self.hung}
        with self._running_guard:
            return sum(1 for e in self._running.values() if id(e) not in hung)

    def _shutdown(self) -> int:
        self._set_state(WorkerState.STOPPING)
        # Prefetched jobs that no thread has started go back to the queue first.
        while True:
            try:
                pending = self._inbox.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                self._release_unstarted(pending)
        grace = self.options.grace if self.options.grace is not None else jobs_settings.GRACE
        if self.busy:
            logger.info("worker %s stopping: %d job(s) running, grace %.0fs", self.id,
                        self.busy, grace)
        deadline = time.monotonic() + grace
        while self._active() and not self.force.is_set() and time.monotonic() < deadline:
            self.wake.clear()
            self.wake.wait(min(0.2, max(deadline - time.monotonic(), 0.01)))
        with self._running_guard:
            leftover = list(self._running.values())
        if self.hung:
            self._log_hung_stacks()
        for execution in leftover:
            # Heartbeats continue until here, so nobody rescues a job that is still draining.
            # The process exits right after this (see runjobs), taking the threads with it.
            execution.abandoned = True
            try:
                execution.release_lingering_lock()
                if execution.release():
                    self.stats.released += 1
                    logger.warning("[%s] %s released back to the queue", execution.job.name,
                                   execution.job.pk)
            except DatabaseError:
                logger.warning("[%s] %s could not be released; peers will recover it",
                               execution.job.name, execution.job.pk, exc_info=True)
        # The endings handed to the writer land while this process still beats.
        self.outcomes.close(patience=1.0 if self.force.is_set() else CLOSE_PATIENCE)
        self.monitor.stop()
        if self.waker is not None:
            self.waker.stop()
        for _ in self._threads:
            self._inbox.put(None)
        if not leftover:
            for thread in self._threads:
                thread.join(timeout=5)
        self._unregister()
        connections.close_all()
        logger.info("worker %s stopped: %d claimed, %d released", self.id,
                    self.stats.claimed, self.stats.released)
        if self.hung:
            return EXIT_HUNG
        return EXIT_RELEASED if self.stats.released else 0

    def _set_state(self, state: str) -> None:
        try:
            WorkerRow.objects.filter(pk=self.row_id).live().update(state=state)
        except DatabaseError:
            logger.warning("worker %s could not record its state %s", self.id, state)

    def _unregister(self) -> None:
        """Leave no row behind: everything this process held has ended or gone back."""
        try:
            WorkerRow.objects.filter(pk=self.row_id).live().delete()
        except DatabaseError:
            logger.warning("worker %s could not remove its row; peers will", self.id)
