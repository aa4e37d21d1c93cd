"""Stopping a worker: SIGTERM drains, grace expiry and a second signal release, and
``--max-jobs`` / ``--burst`` exit on their own."""

from __future__ import annotations

import signal
import time

import pytest

from django_jobs import registry
from django_jobs.models import Job, JobTypeLock
from django_jobs.models import Worker as WorkerRow
from django_jobs.worker.loop import EXIT_RELEASED
from tests.jobsapp.models import Execution

from .conftest import logs, wait_or_explain, worker_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def _row(job) -> Job:
    return Job.objects.get(pk=job.pk)


def _wait_running(w, *jobs) -> None:
    wait_or_explain(
        lambda: all(_row(j).status == "running" for j in jobs), 15, w, what="jobs never started"
    )


def _assert_released(job) -> None:
    row = _row(job)
    assert row.status == "scheduled", (row.status, row.error)
    assert (row.claim_id, row.worker, row.started_at, row.heartbeat_at, row.locked_until) == (
        None, "", None, None, None
    )
    assert row.finished_at is None and row.error == "" and row.attempt == 1
    assert not Job.objects.filter(rescheduled_from=job.pk).exists()


def test_sigterm_lets_the_running_job_finish_heartbeating_claims_nothing_new_and_exits_0(worker):
    w = worker("--grace", "10")
    job = registry.get("jobsapp.drain").enqueue(seconds=2.5, token="drained")
    _wait_running(w, job)
    w.signal(signal.SIGTERM)
    wait_or_explain(lambda: "stopping: 1 job(s) running" in w.output(), 10, w,
                    what="no drain announced")
    late = registry.get("jobsapp.noop").enqueue()

    # RELIABILITY 9: heartbeats continue during the drain, so no peer rescues the job.
    process = WorkerRow.objects.get(pid=w.pid, kind="worker")
    assert process.state == "stopping"
    beats = [process.heartbeat_at]
    for _ in range(2):
        time.sleep(0.7)
        if _row(job).status != "running":
            break
        beats.append(WorkerRow.objects.get(pk=process.pk).heartbeat_at)
    assert len(beats) == 3 and beats[0] < beats[1] < beats[2], (beats, w.output())

    assert w.wait(timeout=15) == 0, w.output()
    row = _row(job)
    assert row.status == "succeeded", (row.error, w.output())
    assert row.result == "drained"
    assert Execution.objects.filter(token="drained", job_id=job.pk).exists()
    late_row = _row(late)
    assert late_row.status == "scheduled" and late_row.worker == "", "claimed after SIGTERM"
    assert "Traceback" not in w.output(), w.output()
    assert not WorkerRow.objects.filter(pk=process.pk).exists(), "a clean exit leaves no row"


def test_grace_expiry_releases_running_jobs_back_to_the_queue_with_their_locks_and_exits_75(
    worker,
):
    w = worker("--grace", "0.5", "--concurrency", "2")
    slow = registry.get("jobsapp.drain").enqueue(seconds=5, token="too-slow")
    locked = registry.get("jobsapp.locked_sleep").enqueue(seconds=2.5, token="too-slow-locked")
    _wait_running(w, slow, locked)
    assert JobTypeLock.objects.filter(key=locked.lock_key).exists()
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=10) == EXIT_RELEASED == 75, w.output()
    assert time.monotonic() - t0 < 2.5, "the worker waited for the job instead of its grace"
    _assert_released(slow)
    _assert_released(locked)
    assert not JobTypeLock.objects.exists()
    assert "released back to the queue" in w.output()
    assert not Execution.objects.exists()


def test_second_sigterm_releases_the_running_job_at_once_and_exits_75(worker):
    w = worker("--grace", "30")
    job = registry.get("jobsapp.drain").enqueue(seconds=5, token="interrupted")
    _wait_running(w, job)
    w.signal(signal.SIGTERM)
    wait_or_explain(lambda: "stopping: 1 job(s) running" in w.output(), 10, w,
                    what="no drain announced")
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=10) == EXIT_RELEASED, w.output()
    assert time.monotonic() - t0 < 2.0
    _assert_released(job)
    assert not Execution.objects.exists()


def test_max_jobs_exits_0_after_exactly_that_many_claims_and_burst_drains_the_rest(worker):
    noop = registry.get("jobsapp.noop")
    w = worker("--max-jobs", "5")
    jobs = noop.enqueue_many([{"n": i} for i in range(12)])
    assert w.wait(timeout=30) == 0, w.output()
    mine = Job.objects.filter(worker=worker_name(w))
    assert mine.count() == 5, w.output()
    assert set(mine.values_list("status", flat=True)) == {"succeeded"}
    assert Job.objects.scheduled().count() == 7
    assert "5 claimed" in w.output()

    burst = worker("--burst", "--concurrency", "2", ready=False)
    assert burst.wait(timeout=30) == 0, burst.output()
    statuses = list(
        Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
    )
    assert statuses == ["succeeded"] * 12, logs(w, burst)
    assert Job.objects.filter(worker=worker_name(burst)).count() == 7
