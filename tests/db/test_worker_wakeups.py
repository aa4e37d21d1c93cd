"""Wake-ups of an idle worker on SQLite: a thread reads ``PRAGMA data_version`` on a connection
of its own, and a commit by another connection wakes the worker long before its next poll."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.conf import settings
from django.db import connection, connections
from django.test import override_settings

from django_jobs import registry
from django_jobs.models import Job
from django_jobs.worker import loop, watch
from django_jobs.worker.watch import Watcher, can_watch
from tests.conftest import wait_for

from .worker_helpers import worker_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def sqlite_file_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL wakes workers with LISTEN/NOTIFY")


def _idle(worker) -> None:
    """Wait until the worker has registered and gone through its first rounds: asleep."""
    wait_for(lambda: worker.row_id is not None, timeout=10)
    time.sleep(0.5)


def _pickup_seconds(job: Job, timeout: float = 10) -> float:
    """Seconds from now until a worker has taken ``job`` (it is no longer scheduled)."""
    started = time.monotonic()
    wait_for(lambda: Job.objects.filter(pk=job.pk).exclude(status="scheduled").exists(),
             timeout=timeout, interval=0.005)
    return time.monotonic() - started


def test_idle_worker_with_a_30s_poll_picks_up_a_job_enqueued_by_another_connection_at_once():
    # This thread's connection is not the worker's: its commit is another connection's.
    with worker_thread(poll_interval=30) as worker:
        _idle(worker)
        latencies = []
        for _ in range(3):
            job = registry.get("jobsapp.noop").enqueue()
            latencies.append(_pickup_seconds(job))
            time.sleep(0.2)
    assert max(latencies) < 0.5, latencies


def test_watcher_wakes_within_its_interval_when_another_connection_commits():
    wake = threading.Event()
    with override_settings(DJANGO_JOBS={"CHANGE_CHECK_INTERVAL": 0.02}):
        watcher = Watcher(wake)
        watcher.start()
        try:
            wait_for(watcher.connected.is_set, timeout=10)
            wait_for(wake.is_set, timeout=1)  # its first look wakes the worker once
            wake.clear()
            time.sleep(0.1)
            assert not wake.is_set(), "nothing was committed: no wake-up"
            Job.objects.count()  # reading is not a change
            time.sleep(0.1)
            assert not wake.is_set()
            committed = time.monotonic()
            registry.get("jobsapp.noop").enqueue()
            assert wake.wait(timeout=2)
            # Within the interval, plus room for a loaded machine.
            assert time.monotonic() - committed < 0.25
        finally:
            watcher.stop()
            watcher.join(timeout=5)
    assert not watcher.is_alive()
    assert not watcher.connected.is_set()


def test_idle_worker_does_not_wake_itself_in_a_loop():
    """Its own heartbeats change the database, and wake it once each; its rounds write nothing,
    so nothing more follows. The suite beats every 0.5 s."""
    with worker_thread(poll_interval=30) as worker:
        _idle(worker)
        rounds = []
        claim = worker._claim_into_free_slots

        def counted():
            rounds.append(time.monotonic())
            return claim()

        worker._claim_into_free_slots = counted
        time.sleep(3)
        assert worker.waker is not None and worker.waker.connected.is_set()
    heartbeats = 3 / 0.5
    assert len(rounds) <= heartbeats + 3, rounds


def test_in_memory_database_cannot_be_watched_and_the_worker_polls(monkeypatch):
    jobs_db = connections["default"]
    assert can_watch()
    for name in (":memory:", "file:memorydb_default?mode=memory&cache=shared"):
        monkeypatch.setitem(jobs_db.settings_dict, "NAME", name)
        assert not can_watch()
    monkeypatch.undo()
    monkeypatch.setattr(loop, "can_watch", lambda: False)
    with worker_thread() as worker:
        _idle(worker)
        assert worker.waker is None
        assert worker._poll_interval() == 0.2  # the suite's POLL_INTERVAL


@override_settings(DJANGO_JOBS={"POLL_INTERVAL": 0.2, "CHANGE_CHECK_INTERVAL": None})
def test_change_check_interval_none_turns_watching_off():
    assert not can_watch()


def test_watcher_that_fails_logs_once_and_the_worker_polls_again(monkeypatch, caplog):
    def broken(raw):
        raise OSError("disk I/O error")

    # POLL_INTERVAL left at its default: polling while watching is the long safety net.
    default_poll = {k: v for k, v in settings.DJANGO_JOBS.items() if k != "POLL_INTERVAL"}
    with override_settings(DJANGO_JOBS=default_poll), worker_thread() as worker:
        _idle(worker)
        assert worker.waker.connected.is_set()
        assert worker._poll_interval() == loop.WOKEN_POLL_INTERVAL
        with caplog.at_level(logging.WARNING, logger="django_jobs"):
            monkeypatch.setattr(watch, "_data_version", broken)
            wait_for(lambda: not worker.waker.is_alive(), timeout=5)
        assert not worker.waker.connected.is_set()
        assert worker._poll_interval() == 1.0  # POLL_INTERVAL's default
        # Polling still finds jobs.
        job = registry.get("jobsapp.noop").enqueue()
        assert _pickup_seconds(job) < 5
    warnings = [r for r in caplog.records if "data_version" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "disk I/O error" in warnings[0].getMessage()
