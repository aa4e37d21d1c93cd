"""What an idle worker costs the database, on PostgreSQL: its statements per heartbeat, and that
its sweep still runs every ``RESCUE_INTERVAL`` while it sends none of its own, also when that
interval is shorter than the heartbeat's, and in full once a heartbeat fails."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import OperationalError, connection  # noqa: F401  (skipif reads connection)
from django.db.backends.signals import connection_created

from django_jobs import clock, registry
from django_jobs.models import Job, Worker
from django_jobs.monitor import Monitor
from django_jobs.worker.look import Look

from .worker_helpers import worker_thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'",
                       reason="LISTEN/NOTIFY and the one-statement heartbeat are PostgreSQL's"),
]

#: The test settings' intervals, without POLL_INTERVAL: while LISTEN works, the idle worker
#: polls every 10 s, as it does by default.
IDLE = {"HEARTBEAT_INTERVAL": 0.5, "RESCUE_INTERVAL": 0.5, "WORKER_LOST_AFTER": 3.0,
        "CANCEL_CHECK_INTERVAL": 0.2, "PROGRESS_THROTTLE": 0.2, "HUNG_AFTER": 3.0, "GRACE": 5.0}


class StatementLog:
    """Every statement sent through Django's connections of the worker's threads."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self._guard = threading.Lock()

    def _record(self, execute, sql, params, many, context):
        with self._guard:
            self.sent.append((time.monotonic(), sql))
        return execute(sql, params, many, context)

    def _on_connection(self, sender, **kwargs) -> None:
        wrappers = kwargs["connection"].execute_wrappers
        if self._record not in wrappers:
            wrappers.append(self._record)

    def __enter__(self) -> StatementLog:
        connection_created.connect(self._on_connection)
        return self

    def __exit__(self, *exc) -> None:
        connection_created.disconnect(self._on_connection)

    def between(self, start: float, end: float) -> list[str]:
        with self._guard:
            return [sql for at, sql in self.sent if start <= at < end]


def _listening(worker) -> bool:
    return worker.waker is not None and worker.waker.connected.is_set()


def test_an_idle_worker_sends_one_statement_per_heartbeat_and_still_sweeps_in_time(settings):
    settings.DJANGO_JOBS = IDLE
    with StatementLog() as log, worker_thread() as worker:
        deadline = time.monotonic() + 10
        while not _listening(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listening(worker), "the worker never listened"
        time.sleep(1.5)  # the start-up: registration, first sweep, claim, next-run lookup
        start = time.monotonic()
        beats = worker.monitor.beats
        time.sleep(4.0)
        end = time.monotonic()
        beats = worker.monitor.beats - beats
        sent = log.between(start, end)
        # Each heartbeat is one statement that also looks for the sweep's work; the sweep's
        # own statements, the paused queues and the next run_at are not read again while
        # there is nothing to do and nothing was enqueued. What is left: the safety poll's
        # claim (every 10 s), the once-a-minute parts of the sweep, the clock's sync.
        assert beats >= 6, beats
        assert len(sent) <= beats + 3, "\n".join(sent)
        assert sum("heartbeat_at = STATEMENT_TIMESTAMP()" in sql for sql in sent) == beats
        assert not [sql for sql in sent if "django_jobs_pausedqueue" in sql.split(" WHERE")[0]]

        # The sweep still runs every RESCUE_INTERVAL: a peer that stopped beating, with a
        # run, is written off within a heartbeat interval or two of becoming overdue (the
        # idle loop sleeps 10 s; the look that finds it wakes the loop).
        job = registry.get("jobsapp.noop").enqueue(delay=3600)
        silent_at = clock.now() - timedelta(seconds=2.9)
        peer = Worker.objects.create(host="gone", pid=1, started_at=silent_at,
                                     heartbeat_at=silent_at)
        Job.objects.filter(pk=job.pk).update(status="running", owner=peer.pk,
                                             claim_id=uuid.uuid4(), worker="gone:1",
                                             started_at=silent_at)
        overdue_at = time.monotonic() + 0.1
        deadline = time.monotonic() + 10
        while Worker.objects.get(pk=peer.pk).state != "lost" and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - overdue_at
        assert Worker.objects.get(pk=peer.pk).state == "lost", "the peer was never written off"
        assert took <= 2.0, took
        assert Job.objects.get(pk=job.pk).status == "failed"


def _overdue_peer_with_a_run(silent_for: float) -> tuple[Worker, Job]:
    """A peer row that last beat ``silent_for`` seconds ago, holding a running job."""
    job = registry.get("jobsapp.noop").enqueue(delay=3600)
    silent_at = clock.now() - timedelta(seconds=silent_for)
    peer = Worker.objects.create(host="gone", pid=1, started_at=silent_at, heartbeat_at=silent_at)
    Job.objects.filter(pk=job.pk).update(status="running", owner=peer.pk, claim_id=uuid.uuid4(),
                                         worker="gone:1", started_at=silent_at)
    return peer, job


def _written_off_within(peer: Worker, seconds: float) -> float:
    started = time.monotonic()
    deadline = started + seconds + 10
    while Worker.objects.get(pk=peer.pk).state != "lost" and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - started
    assert Worker.objects.get(pk=peer.pk).state == "lost", "the peer was never written off"
    return took


def test_a_rescue_interval_shorter_than_the_heartbeats_is_kept_by_looks_of_their_own(settings):
    # Heartbeats every 2 s, sweeps every 0.5 s: the monitor looks on its own between two
    # heartbeats, and a look that finds work wakes the idle loop (asleep for 10 s).
    settings.DJANGO_JOBS = {**IDLE, "HEARTBEAT_INTERVAL": 2.0, "WORKER_LOST_AFTER": 6.0}
    with worker_thread() as worker:
        deadline = time.monotonic() + 10
        while not _listening(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listening(worker), "the worker never listened"
        time.sleep(6.5)  # WORKER_LOST_AFTER: from now on the worker may write off its peers
        peer, job = _overdue_peer_with_a_run(silent_for=5.9)
        took = _written_off_within(peer, 0.1 + 0.5 + 0.5 + 0.5)
        # Overdue in 0.1 s; the next look within RESCUE_INTERVAL and the monitor's tick.
        assert took <= 0.1 + 0.5 + 0.5 + 0.5, took
        assert Job.objects.get(pk=job.pk).status == "failed"


def test_a_failed_heartbeat_leaves_no_look_to_skip_the_sweep_on(settings, monkeypatch):
    # A look that found nothing, then a heartbeat that fails: what the look saw no longer
    # stands (the database may have changed while the monitor could not look), so the next
    # sweep runs in full instead of trusting it for two more intervals.
    settings.DJANGO_JOBS = {**IDLE, "HEARTBEAT_INTERVAL": 5.0, "RESCUE_INTERVAL": 5.0}
    me = Worker.objects.create(host="here", pid=2, started_at=clock.now(),
                               heartbeat_at=clock.now())
    look = Look()
    monitor = Monitor(me.pk, look=look)
    monitor.beat()
    assert monitor.beats == 1
    assert not look.sweep_needed(write_off_others=True), "an idle database needs no sweep"

    def fails(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Monitor, "_beat_and_look", fails)
    with pytest.raises(OperationalError):
        monitor.beat()
    assert look.sweep_needed(write_off_others=True)
    assert not look.sweep_wanted(write_off_others=True)  # nothing found: no early wake-up
