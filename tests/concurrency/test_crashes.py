"""Workers that die (SIGKILL) or freeze (SIGSTOP) mid-job: recovery once the worker has missed
WORKER_LOST_AFTER of heartbeats, never before; a frozen worker that wakes up changes nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest
from django.conf import settings
from django.db import connection

from django_jobs import registry
from django_jobs.models import Job, JobTypeLock
from django_jobs.models import Worker as WorkerRow
from tests.jobsapp.models import Execution, Interval

from .conftest import logs, stop_all, vendor, wait_or_explain, worker_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def _row(job) -> Job:
    return Job.objects.get(pk=job.pk)


def _kill(w) -> None:
    w.proc.kill()
    w.wait(timeout=10)


def _freeze(w) -> None:
    """SIGSTOP ``w``, but never while it holds SQLite's write lock (that would stall every
    other process for the lock's timeout, which is not what this test is about)."""
    for _ in range(100):
        os.kill(w.pid, signal.SIGSTOP)
        if vendor() != "sqlite":
            return
        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.2)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:
            os.kill(w.pid, signal.SIGCONT)
            time.sleep(0.02)
        finally:
            probe.close()
    raise AssertionError("could not freeze the worker outside a write")


LOST_AFTER = settings.DJANGO_JOBS["WORKER_LOST_AFTER"]


def _last_beat(w):
    """The last heartbeat of a dead or frozen worker process, by the database's clock."""
    return WorkerRow.objects.get(pid=w.pid, kind="worker").heartbeat_at


def _succeeded_retry_of(job):
    return Job.objects.filter(rescheduled_from=job.pk, status="succeeded").first()


def test_sigkill_mid_job_fails_it_as_worker_lost_after_worker_lost_after_then_retries_elsewhere(
    worker, marker_dir
):
    a = worker()
    job = registry.get("jobsapp.sleeper").enqueue(seconds=1.5, token="killed-once")
    wait_or_explain((marker_dir / f"{job.pk}.1").exists, 15, a, what="sleeper never started")
    _kill(a)
    assert _row(job).status == "running"

    b = worker()
    retry = wait_or_explain(lambda: _succeeded_retry_of(job), 20, a, b, what="no retry ran")
    last_beat = _last_beat(a)

    first = _row(job)
    assert first.status == "failed", logs(a, b)
    assert first.error.startswith("worker lost"), first.error
    assert (first.finished_at - last_beat).total_seconds() >= LOST_AFTER - 0.1
    assert first.claim_id is not None and first.locked_until is None
    assert WorkerRow.objects.get(pid=a.pid).state == "lost"
    assert retry.attempt == 2 and retry.max_attempts == 2
    assert retry.worker == worker_name(b)
    assert (marker_dir / f"{retry.pk}.2").exists()
    assert list(Execution.objects.values_list("token", "job_id")) == [("killed-once", retry.pk)]
    assert Job.objects.for_name("jobsapp.sleeper").count() == 2
    assert not Job.objects.running().exists()
    assert stop_all(b) == [0], b.output()


def test_sigkill_holding_a_lock_frees_it_only_when_the_worker_is_lost_and_to_exactly_one_worker(
    worker,
):
    a = worker()
    locked_sleep = registry.get("jobsapp.locked_sleep")
    first = locked_sleep.enqueue(seconds=2.0, token="first")
    wait_or_explain(lambda: Interval.objects.filter(job_id=first.pk).exists(), 15, a,
                    what="locked_sleep never started")
    _kill(a)
    held = JobTypeLock.objects.get(key=first.lock_key)
    running = _row(first)
    assert held.claim_id == running.claim_id and held.worker == worker_name(a)
    assert held.owner_id == running.owner_id == WorkerRow.objects.get(pid=a.pid).pk

    # Two fresh workers and a second run of the type, all waiting on the dead worker's lock.
    second = locked_sleep.enqueue(seconds=0.3, token="second")
    b, c = worker(), worker()
    wait_or_explain(
        lambda: not Job.objects.for_name("jobsapp.locked_sleep").pending().exists(), 30, a, b, c,
        what="locked_sleep runs still pending",
    )
    lost_at = _last_beat(a).timestamp() + LOST_AFTER

    dead = _row(first)
    assert dead.status == "failed" and dead.error.startswith("worker lost"), dead.error
    assert dead.finished_at.timestamp() >= lost_at - 0.1
    retry = Job.objects.get(rescheduled_from=first.pk)
    assert retry.attempt == 2 and retry.status == "succeeded", (retry.error, logs(b, c))
    assert _row(second).status == "succeeded", logs(b, c)
    # Nothing ran under the dead worker's lock before it was lost, and afterwards one at a time.
    after = sorted(Interval.objects.exclude(job_id=first.pk), key=lambda r: r.started)
    assert [r.job_id for r in after] and len(after) == 2
    assert after[0].started >= lost_at - 0.1, (after[0].started, lost_at)
    assert after[1].started >= after[0].ended
    assert {r.worker for r in Job.objects.filter(pk__in=[retry.pk, second.pk])} <= {
        worker_name(b), worker_name(c)
    }
    assert sorted(Execution.objects.values_list("token", flat=True)) == ["first", "second"]
    assert not JobTypeLock.objects.exists()
    assert stop_all(b, c) == [0, 0], logs(b, c)


def test_frozen_worker_written_off_and_resumed_lands_none_of_its_late_writes(worker, marker_dir):
    a = worker()
    job = registry.get("jobsapp.sleeper").enqueue(seconds=1.5, token="paused")
    wait_or_explain((marker_dir / f"{job.pk}.1").exists, 15, a, what="sleeper never started")
    _freeze(a)

    b = worker()
    retry = wait_or_explain(lambda: _succeeded_retry_of(job), 20, a, b, what="no rescue/retry")
    before = _row(job)
    assert before.status == "failed" and before.error.startswith("worker lost"), logs(a, b)
    assert (before.finished_at - _last_beat(a)).total_seconds() >= LOST_AFTER - 0.1

    os.kill(a.pid, signal.SIGCONT)
    # A wakes long past its deadline: its heartbeat finds its row written off, its runs are
    # lost, its job thread finishes and tries to write. All of it must bounce.
    wait_or_explain(lambda: "written off" in a.output(), 10, a, b,
                    what="the resumed worker never noticed")
    time.sleep(1.0)  # a few more heartbeats and the job thread's own ending
    # It goes on under a new identity, and can still work.
    assert WorkerRow.objects.filter(pid=a.pid, state="running").count() == 1
    assert stop_all(a) == [0], a.output()

    after = _row(job)
    for field in ("status", "error", "finished_at", "result", "worker", "claim_id", "attempt"):
        assert getattr(after, field) == getattr(before, field), (field, logs(a, b))
    assert _row(retry).status == "succeeded"
    sleepers = Job.objects.for_name("jobsapp.sleeper")
    assert sleepers.count() == 2, list(sleepers.values("pk", "status", "attempt", "error"))
    assert sleepers.filter(status="succeeded").count() == 1
    assert list(Execution.objects.values_list("token", "job_id")) == [("paused", retry.pk)]
    assert not Job.objects.running().exists()
    assert stop_all(b) == [0], b.output()
