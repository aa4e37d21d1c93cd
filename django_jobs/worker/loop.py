"""The worker: claim due jobs, run them on threads, keep them alive, stop cleanly.

Reading order: ``run()`` is the whole life of a worker; everything it calls is below it.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import DatabaseError, connections

from .. import clock
from ..conf import jobs_settings
from ..execution import Execution, worker_id
from ..jobtypes import registry
from ..models import Job, PausedQueue
from ..pruning import prune
from ..runner import execute
from .claim import claim
from .connections import recycle
from .monitor import Monitor
from .notify import Listener, can_listen
from .rescue import rescue_stale
from .scheduler import Scheduler

logger = logging.getLogger("django_jobs")

#: Exit status when running jobs had to be released back to the queue at shutdown.
EXIT_RELEASED = 75
#: Seconds between two reads of the paused queues.
PAUSE_CHECK_INTERVAL = 2.0
#: While jobs take less than SHORT_JOB seconds on average, a worker claims up to PREFETCH more
#: than it has threads, so claims are batched and the next job is already in memory. Long
#: jobs turn it off: a worker must not sit on work that idle peers could take.
PREFETCH = 16
#: Idle poll on PostgreSQL while LISTEN is connected (unless a poll interval is configured):
#: NOTIFY wakes the worker for new jobs, delayed jobs are slept towards, so polling is rare.
LISTEN_POLL_INTERVAL = 10.0
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
        self.monitor = Monitor()
        self.listener: Listener | None = None
        self._inbox: queue.Queue[Execution | None] = queue.Queue()
        self._running: dict[object, Execution] = {}
        self._running_guard = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_rescue = 0.0
        self._last_prune = time.monotonic()
        self._paused: list[str] = []
        self._paused_read_at = 0.0
        self.scheduler = Scheduler() if self.options.scheduler else None
        self._average_duration: float | None = None  # moving average of job run times

    # -- the life of a worker ----------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or drained with ``burst``); return the exit status."""
        opts = self.options
        if opts.install_signals and threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        self._start_threads()
        logger.info(
            "worker %s started: queues=%s concurrency=%d", self.id,
            ",".join(opts.queues) or "*", opts.concurrency,
        )
        poll = self._poll_interval()
        failures = 0
        while not self.stopping.is_set():
            self.wake.clear()
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
                # Nothing more to claim now: sleep until a job ends, a NOTIFY or the next poll.
                # While jobs are held (just handed out, or all slots full), skip the next-run
                # lookup: a job ending wakes the loop anyway, and the query would hold the GIL
                # just as those jobs run.
                if claimed or (asked == 0 and self.busy):
                    sleep = min(poll, jobs_settings.POLL_INTERVAL)
                else:
                    sleep = self._sleep_time(poll)
            except DatabaseError as exc:
                failures += 1
                self._database_trouble(exc, failures)
                continue
            self.wake.wait(sleep)
        return self._shutdown()

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
        rows = claim(
            self.id, free, queues=self.options.queues, exclude_names=registry.disabled_names(),
            exclude_queues=self._paused_queues(),
        )
        for row in rows:
            job_type = registry.get(row.name) if row.name in registry else None
            execution = Execution(row, job_type, worker=self.id)
            with self._running_guard:
                self._running[row.pk] = execution
            self.monitor.add(execution)
            self._inbox.put(execution)
        self.stats.claimed += len(rows)
        return len(rows), free

    def _paused_queues(self) -> list[str]:
        """Paused queues, read at most every ``PAUSE_CHECK_INTERVAL`` seconds."""
        now = time.monotonic()
        if now - self._paused_read_at >= PAUSE_CHECK_INTERVAL:
            self._paused = list(PausedQueue.objects.values_list("queue", flat=True))
            self._paused_read_at = now
        return self._paused

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
        """Seconds between idle polls. With LISTEN, polling is only a safety net: longer."""
        if self.options.poll_interval is not None:
            return self.options.poll_interval
        user = jobs_settings.user_settings
        if self.listener is not None and not (isinstance(user, dict) and "POLL_INTERVAL" in user):
            return LISTEN_POLL_INTERVAL
        return jobs_settings.POLL_INTERVAL

    def _sleep_time(self, poll: float) -> float:
        """How long an idle worker may sleep: until the next poll, the next delayed job's
        run_at or the scheduler's next occurrence, whichever comes first."""
        sleep = poll
        if self.scheduler is not None:
            sleep = min(sleep, self.scheduler.seconds_until_due())
        if sleep > jobs_settings.POLL_INTERVAL:
            # A long sleep must not make a delayed job late, nor a job waiting for a lock.
            next_due = Job.objects.scheduled().in_queues(self.options.queues).next_run_at()
            if next_due is not None:
                until = (next_due - clock.now()).total_seconds()
                sleep = min(sleep, max(until, jobs_settings.POLL_INTERVAL))
        return max(sleep, 0.01)

    def _done(self) -> bool:
        """Burst mode ends when nothing is due and nothing runs; --max-jobs when all ran."""
        if self.options.max_jobs is not None and self.stats.claimed >= self.options.max_jobs:
            return self.busy == 0
        return self.options.burst and self.busy == 0

    def _rescue_if_due(self) -> None:
        if time.monotonic() - self._last_rescue < jobs_settings.RESCUE_INTERVAL:
            return
        self._last_rescue = time.monotonic()
        self.stats.rescued += len(rescue_stale())

    def _database_trouble(self, exc: Exception, failures: int) -> None:
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
        if can_listen():
            self.listener = Listener(self.wake)
            self.listener.start()
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
                execution.begin()
                outcome = execute(execution)
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

    def _shutdown(self) -> int:
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
        while self.busy and not self.force.is_set() and time.monotonic() < deadline:
            self.wake.clear()
            self.wake.wait(min(0.2, max(deadline - time.monotonic(), 0.01)))
        with self._running_guard:
            leftover = list(self._running.values())
        for execution in leftover:
            # Heartbeats continue until here, so nobody rescues a job that is still draining.
            # The process exits right after this (see runjobs), taking the threads with it.
            execution.release_lingering_lock()
            if execution.release():
                self.stats.released += 1
                logger.warning("[%s] %s released back to the queue", execution.job.name,
                               execution.job.pk)
        self.monitor.stop()
        if self.listener is not None:
            self.listener.stop()
        for _ in self._threads:
            self._inbox.put(None)
        if not leftover:
            for thread in self._threads:
                thread.join(timeout=5)
        connections.close_all()
        logger.info("worker %s stopped: %d claimed, %d released", self.id,
                    self.stats.claimed, self.stats.released)
        return EXIT_RELEASED if self.stats.released else 0
