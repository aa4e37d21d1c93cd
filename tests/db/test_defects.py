"""Defects found by fault drills, each proven fixed with the worker running in this process.

Worker-process versions of the crash and outage drills are in tests/concurrency/test_defects.py.
"""

from __future__ import annotations

import logging
import time

import pytest
from django.db import connection

from django_jobs import registry, signals
from django_jobs.execution import Execution as Run
from django_jobs.models import Job
from django_jobs.monitor import Monitor
from django_jobs.worker.claim import claim
from django_jobs.worker.loop import Worker
from django_jobs.worker.rescue import rescue
from tests.conftest import wait_for
from tests.jobsapp.models import Execution

from .worker_helpers import run_burst, status_of, worker_thread

pytestmark = pytest.mark.django_db(transaction=True)


def _never_running(job) -> Job:
    row = Job.objects.get(pk=job.pk)
    assert row.status != "running", "the final write never landed"
    return row


# -- 1. prefetched runs --


def test_a_prefetched_run_is_not_timed_out_before_it_starts_and_runs_once():
    slow = registry.get("jobsapp.slow_first").enqueue(seconds=2.5)
    quick = [registry.get("jobsapp.quick_with_short_timeout").enqueue(token=f"q{n}")
             for n in range(3)]
    worker = Worker(concurrency=1, burst=True, install_signals=False, scheduler=False)
    worker._average_duration = 0.001  # short jobs so far: claim a prefetch with the slow one
    assert worker._capacity() > 4
    worker.run()
    assert worker.stats.claimed == 4
    assert status_of(slow) == "succeeded"
    for job in quick:
        row = Job.objects.get(pk=job.pk)
        assert (row.status, row.attempt) == ("succeeded", 1), row.error
    assert not Job.objects.filter(rescheduled_from__in=[j.pk for j in quick]).exists()
    assert sorted(Execution.objects.values_list("token", flat=True)) == ["q0", "q1", "q2"]


def test_a_run_already_finished_by_someone_else_is_never_started():
    job = registry.get("jobsapp.quick_with_short_timeout").enqueue(token="never")
    [row] = claim("test:1", 1)
    run = Run(row, registry.get(row.name), worker="test:1")
    Job.objects.filter(pk=job.pk).update(status="cancelled")  # e.g. recovered meanwhile
    assert not run.begin()
    assert not Execution.objects.exists()


# -- 3. the final write always lands --


@pytest.mark.parametrize("value", ["\x00", "a\x00b", {"k": "\x00"}],
                         ids=["nul", "nul-inside", "nul-in-dict"])
def test_a_result_the_database_cannot_store_ends_the_row_saying_why(value, replace_func):
    test_job = registry.get("jobsapp.returns")
    job = test_job.enqueue()
    # The payload is stored first, so the value comes from the function, not the row.
    replace_func(test_job, lambda ctx, **data: value)
    run_burst()
    row = _never_running(job)
    if row.status == "failed":
        assert "its outcome could not be written" in row.error, row.error
        assert row.error.startswith("the run ended succeeded"), row.error
    else:
        assert row.status == "succeeded"
    if connection.vendor == "postgresql" and "\x00" in str(value):
        assert row.status == "failed"  # PostgreSQL stores no NUL in jsonb or text


def test_a_lone_surrogate_in_the_result_ends_the_row_saying_why(replace_func):
    test_job = registry.get("jobsapp.returns")
    job = test_job.enqueue()
    replace_func(test_job, lambda ctx, **data: "bad \ud800 text")
    run_burst()
    row = _never_running(job)
    if row.status == "succeeded":  # stored as the JSON escape \ud800 (SQLite, MariaDB)
        assert row.result == "bad \ud800 text"
    else:
        assert "its outcome could not be written" in row.error, row.error
    if connection.vendor == "postgresql":
        assert row.status == "failed"  # jsonb refuses a lone surrogate


def test_nul_bytes_in_an_error_or_a_progress_message_are_stored_escaped():
    failing = registry.get("jobsapp.returns").enqueue(error="bad<NUL>byte")
    reporting = registry.get("jobsapp.returns").enqueue(value=1, progress_message="half<NUL>way")
    run_burst()
    failed = _never_running(failing)
    assert failed.status == "failed" and "bad\\x00byte" in failed.error, failed.error
    done = _never_running(reporting)
    assert done.status == "succeeded" and done.progress_message == "half\\x00way"


def test_a_job_started_receiver_that_raises_is_logged_and_the_run_goes_on(caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver broke")

    signals.job_started.connect(broken, weak=False)
    try:
        job = registry.get("jobsapp.echo").enqueue(n=1)
        with caplog.at_level(logging.ERROR, logger="django_jobs"):
            run_burst()
    finally:
        signals.job_started.disconnect(broken)
    assert _never_running(job).status == "succeeded"
    assert "receiver broke" in caplog.text


# -- 4. the monitor survives --


def test_a_job_finished_receiver_that_raises_does_not_kill_the_monitor():
    def broken(sender, **kwargs):
        raise RuntimeError("receiver broke")

    signals.job_finished.connect(broken, weak=False)
    try:
        timed_out = registry.get("jobsapp.ignores_timeout").enqueue(seconds=2.0)
        with worker_thread(concurrency=2) as worker:
            wait_for(lambda: status_of(timed_out) == "failed", timeout=10)
            beats = worker.monitor.beats
            # The monitor goes on: it still beats and still reads cancellation requests.
            later = registry.get("jobsapp.cancellable").enqueue(seconds=20)
            wait_for(lambda: status_of(later) == "running", timeout=10)
            registry.cancel(later.pk)
            wait_for(lambda: status_of(later) == "cancelled", timeout=10)
            wait_for(lambda: worker.monitor.beats > beats, timeout=5)
            assert worker.monitor.is_alive()
    finally:
        signals.job_finished.disconnect(broken)
    assert Job.objects.get(pk=timed_out.pk).error.startswith("timed out")


def test_the_monitor_survives_any_exception_of_its_own(monkeypatch, caplog):
    calls = []
    original = Monitor.write_progress

    def broken_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the monitor")
        return original(self)

    monkeypatch.setattr(Monitor, "write_progress", broken_once)
    job = registry.get("jobsapp.progress_loop").enqueue(steps=20, pause=0.05)
    with caplog.at_level(logging.ERROR, logger="django_jobs"):
        with worker_thread() as worker:
            wait_for(lambda: status_of(job) == "succeeded", timeout=10)
            beats = worker.monitor.beats
            wait_for(lambda: worker.monitor.beats > beats, timeout=5)
            assert worker.monitor.is_alive()
    assert "a bug in the monitor" in caplog.text


# -- 7. a job that leaves a transaction open --


def test_a_job_that_switches_autocommit_off_gets_its_outcome_and_its_write_rolled_back():
    job = registry.get("jobsapp.leaves_autocommit_off").enqueue(token="uncommitted")
    run_burst()
    row = _never_running(job)
    assert row.status == "succeeded" and row.result == "uncommitted"
    assert not Execution.objects.exists(), "the job never committed its write"
    rescue()
    assert Job.objects.get(pk=job.pk).status == "succeeded"


# -- 14. what a worker that lost its claim logs --


def test_a_worker_whose_run_was_taken_away_says_so_once_and_logs_no_failure(caplog):
    job = registry.get("jobsapp.sleeper").enqueue(seconds=1.5)
    with caplog.at_level(logging.INFO, logger="django_jobs"):
        with worker_thread():
            wait_for(lambda: Job.objects.get(pk=job.pk).started_at is not None, timeout=10)
            # A peer recovered it meanwhile (as after a write-off): new claim, finished.
            Job.objects.filter(pk=job.pk).update(status="failed", error="worker lost: test")
            wait_for(lambda: "no longer ours" in caplog.text, timeout=10)
            time.sleep(3.0)  # past its 2 s timeout and its own end
    assert caplog.text.count("no longer ours") == 1, caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert Job.objects.get(pk=job.pk).error == "worker lost: test"


# -- 15. intervals of one lock key --


def test_recorded_intervals_of_one_lock_key_never_overlap():
    per_customer = registry.get("jobsapp.per_customer")
    for _ in range(8):
        per_customer.enqueue(customer=1, seconds=0.05)
    run_burst(concurrency=4)
    rows = list(Job.objects.order_by("started_at").values_list("started_at", "finished_at"))
    assert len(rows) == 8 and all(start and end for start, end in rows)
    for (_, previous_end), (start, _) in zip(rows, rows[1:], strict=False):
        assert start >= previous_end, (start, previous_end)
