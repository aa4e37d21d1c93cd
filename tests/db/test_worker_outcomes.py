"""How runs end, seen through a worker running in the test process: retries, timeouts,
cancellation, progress, bad rows and signals."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from django_jobs import registry, signals
from django_jobs.execution import Execution as Run
from django_jobs.models import Job, JobTypeLock
from django_jobs.models import Worker as WorkerRow
from django_jobs.worker.rescue import fail_unknown
from tests.conftest import wait_for
from tests.jobsapp import jobs as test_jobs
from tests.jobsapp.models import Execution

from .worker_helpers import run_burst, status_of, worker_thread

pytestmark = pytest.mark.django_db(transaction=True)


# -- retries -----------------------------------------------------------------------------------


def test_failed_run_is_retried_on_a_linked_row_with_backoff_until_it_succeeds():
    first = registry.get("jobsapp.flaky").enqueue(fail_times=2)
    with worker_thread():
        wait_for(
            lambda: Job.objects.filter(name="jobsapp.flaky", status="succeeded").exists(),
            timeout=10,
        )
    rows = {row.attempt: row for row in Job.objects.filter(name="jobsapp.flaky")}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1].pk == first.pk
    assert [rows[n].status for n in (1, 2, 3)] == ["failed", "failed", "succeeded"]
    assert "attempt 1 fails on purpose" in rows[1].error
    assert rows[2].rescheduled_from_id == rows[1].pk
    assert rows[3].rescheduled_from_id == rows[2].pk
    assert rows[3].result == 3
    # retry_delay=200ms, retry_backoff=2: attempt n waits 200ms * 2**(n-1) after failing.
    assert rows[2].run_at - rows[1].finished_at == timedelta(milliseconds=200)
    assert rows[3].run_at - rows[2].finished_at == timedelta(milliseconds=400)
    # ... and the retry really waited for its run_at.
    assert rows[2].started_at >= rows[2].run_at
    assert rows[3].started_at >= rows[3].run_at
    assert all(row.max_attempts == 3 for row in rows.values())


def test_retries_stop_at_max_attempts():
    registry.get("jobsapp.flaky").enqueue(fail_times=10)
    with worker_thread():
        wait_for(
            lambda: Job.objects.filter(name="jobsapp.flaky", status="failed").count() == 3,
            timeout=10,
        )
        time.sleep(0.5)  # room for a (wrong) fourth attempt to be created and claimed
    rows = list(Job.objects.filter(name="jobsapp.flaky").order_by("attempt"))
    assert [(row.attempt, row.status) for row in rows] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]


def test_on_error_hook_is_called_with_the_failure():
    test_jobs.HOOK_CALLS.clear()
    job = registry.get("jobsapp.explode").enqueue(message="kaput")
    run_burst()
    assert status_of(job) == "failed"
    assert test_jobs.HOOK_CALLS == [("on_error", "jobsapp.explode", "RuntimeError")]


def test_successful_run_does_not_call_on_error():
    test_jobs.HOOK_CALLS.clear()
    registry.get("jobsapp.noop").enqueue()
    run_burst()
    assert test_jobs.HOOK_CALLS == []


# -- timeouts ----------------------------------------------------------------------------------


def test_job_ignoring_its_timeout_fails_at_the_deadline_and_its_late_result_is_dropped():
    job = registry.get("jobsapp.ignores_timeout").enqueue(seconds=2.2)
    with worker_thread() as worker:
        wait_for(lambda: status_of(job) == "failed", timeout=5)
        # The row failed while the job's thread is still sleeping.
        assert worker.busy == 1
        row = Job.objects.get(pk=job.pk)
        assert row.error.startswith("timed out")
        assert row.finished_at - row.started_at < timedelta(seconds=2)
        wait_for(lambda: worker.busy == 0, timeout=5)  # the late return happened
    row = Job.objects.get(pk=job.pk)
    assert row.status == "failed"
    assert row.error.startswith("timed out")
    assert row.result is None
    assert not Job.objects.filter(rescheduled_from=job.pk).exists()


def test_job_checking_cancellation_raises_timeout_at_its_deadline_and_frees_its_lock():
    job = registry.get("jobsapp.checks_timeout").enqueue()
    started = time.monotonic()
    run_burst()  # returns only once the job's thread has left the (endless) loop
    assert time.monotonic() - started < 4
    row = Job.objects.get(pk=job.pk)
    assert row.status == "failed"
    assert row.error.startswith("timed out")
    assert row.lock_key == "jobsapp.checks_timeout"
    assert not JobTypeLock.objects.exists()


# -- cancellation ------------------------------------------------------------------------------


def test_scheduled_job_cancelled_before_it_starts_never_runs():
    job = registry.get("jobsapp.record").enqueue(token="never")
    assert registry.cancel(job.pk) == 1
    run_burst()
    row = Job.objects.get(pk=job.pk)
    assert row.status == "cancelled"
    assert row.started_at is None
    assert not Execution.objects.exists()


def test_running_job_cancelled_from_another_thread_ends_cancelled_promptly():
    job = registry.get("jobsapp.cancellable").enqueue(seconds=30)
    with worker_thread():
        wait_for(lambda: status_of(job) == "running", timeout=5)
        asked = time.monotonic()
        assert registry.cancel(job.pk) == 1
        wait_for(lambda: status_of(job) != "running", timeout=5)
        elapsed = time.monotonic() - asked
    row = Job.objects.get(pk=job.pk)
    assert row.status == "cancelled", row.error
    assert elapsed < 2
    assert row.cancel_requested_at is not None
    assert not Job.objects.filter(rescheduled_from=job.pk).exists()


# -- progress ----------------------------------------------------------------------------------


def test_progress_writes_are_throttled_and_the_final_state_is_written(monkeypatch):
    writes: list[dict] = []
    queue_progress = Run.queue_progress

    def count_progress_writes(self, fields):
        writes.append(fields)
        return queue_progress(self, fields)

    monkeypatch.setattr(Run, "queue_progress", count_progress_writes)
    job = registry.get("jobsapp.progress_loop").enqueue(steps=100, pause=0.01)
    started = time.monotonic()
    run_burst()
    took = time.monotonic() - started
    row = Job.objects.get(pk=job.pk)
    assert row.status == "succeeded", row.error
    assert row.progress == 1.0
    assert row.progress_message == "step 100"
    # 100 progress() calls over ~1 s with PROGRESS_THROTTLE = 0.2 s: a handful of writes.
    assert 2 <= len(writes) <= took / 0.2 + 3, (len(writes), took)
    assert len(writes) < 20


def test_phases_report_weighted_overall_progress():
    job = registry.get("jobsapp.phased_observed").enqueue()
    run_burst()
    row = Job.objects.get(pk=job.pk)
    assert row.status == "succeeded", row.error
    # Weights download=3, parse=1: half of download is 3/8, download done is 3/4, half of
    # parse is 7/8 and the end is 1.
    assert row.result == [
        [0.375, "download"],
        [0.75, "download"],
        [0.875, "parse: half"],
        [1.0, "parse"],
    ]


# -- bad rows and security ---------------------------------------------------------------------


def live_worker_row(names: list[str]) -> WorkerRow:
    """A worker process as its row shows it: beating now, with these job names registered."""
    return WorkerRow.objects.create(
        host="peer", pid=1, names=names, started_at=timezone.now(), heartbeat_at=timezone.now()
    )


def fail_unknown_now() -> int:
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "UNKNOWN_JOB_GRACE": 0.0}):
        return fail_unknown()


def test_row_of_an_unregistered_job_is_left_to_others_then_failed_without_retry_after_grace():
    bad = Job.objects.create(name="nope.missing", max_attempts=3, priority=10)
    good = registry.get("jobsapp.echo").enqueue(n=1)
    worker = run_burst()
    # This worker's code does not define it: during a deploy, a newer worker may.
    assert status_of(bad) == "scheduled"
    assert status_of(good) == "succeeded"
    assert worker.stats.claimed == 1
    # Nobody judges while no live worker says what it knows.
    assert fail_unknown_now() == 0 and status_of(bad) == "scheduled"
    live_worker_row(registry.names())
    assert fail_unknown() == 0, "failed before UNKNOWN_JOB_GRACE"
    assert fail_unknown_now() == 1
    bad.refresh_from_db()
    assert bad.status == "failed"
    assert bad.error.startswith("unregistered job 'nope.missing'"), bad.error
    assert not Job.objects.filter(rescheduled_from=bad.pk).exists()
    assert Job.objects.count() == 2


def test_row_of_a_job_some_live_worker_registers_is_never_failed_as_unknown():
    row = Job.objects.create(name="newer.only_in_new_code")
    live_worker_row([*registry.names(), "newer.only_in_new_code"])
    assert fail_unknown_now() == 0
    assert status_of(row) == "scheduled"


def test_non_json_result_fails_the_job_clearly():
    job = registry.get("jobsapp.bad_result").enqueue()
    run_burst()
    row = Job.objects.get(pk=job.pk)
    assert row.status == "failed"
    assert "not JSON-serialisable" in row.error
    assert "set" in row.error
    assert row.result is None


def test_huge_error_message_is_truncated_to_max_text_length():
    job = registry.get("jobsapp.explode").enqueue(message="x" * 50_000)
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "MAX_TEXT_LENGTH": 1000}):
        run_burst()
    row = Job.objects.get(pk=job.pk)
    assert row.status == "failed"
    assert len(row.error) <= 1000
    assert "characters truncated" in row.error
    assert row.error.startswith("RuntimeError: xxx")


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """An importable module whose import (or call) leaves a marker file behind."""
    marker = tmp_path / "imported"
    name = f"django_jobs_evil_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def run(*args, **kwargs):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def test_dotted_paths_in_rows_are_never_imported_or_called(evil_module, tmp_path):
    module, marker = evil_module
    touched = tmp_path / "os-system-ran"
    rows = [
        Job.objects.create(name=f"{module}.run"),
        Job.objects.create(name="tests.jobsapp.evil_module.run"),
        Job.objects.create(name="os.system", data={"command": f"touch {touched}"}),
    ]
    run_burst()
    live_worker_row(registry.names())
    assert fail_unknown_now() == 3
    for row in rows:
        row.refresh_from_db()
        assert row.status == "failed"
        assert row.error.startswith("unregistered job"), row.error
    assert module not in sys.modules
    assert "tests.jobsapp.evil_module" not in sys.modules
    assert not marker.exists()
    assert not touched.exists()


# -- signals -----------------------------------------------------------------------------------


def test_job_started_and_job_finished_signals_carry_the_outcome():
    events = []

    def started(sender, job, **kwargs):
        events.append(("started", job.pk, job.status))

    def finished(sender, job, status, result, error, **kwargs):
        events.append(("finished", job.pk, status, result, error.splitlines()[0] if error else ""))

    signals.job_started.connect(started, weak=False)
    signals.job_finished.connect(finished, weak=False)
    try:
        ok = registry.get("jobsapp.echo").enqueue(priority=5, n=1)
        bad = registry.get("jobsapp.explode").enqueue(message="signal me")
        run_burst()
    finally:
        signals.job_started.disconnect(started)
        signals.job_finished.disconnect(finished)
    # Each run's own events in order (a run's end may be announced after the next run started:
    # endings are written, then announced, by the worker's writer of outcomes).
    assert [event for event in events if event[1] == ok.pk] == [
        ("started", ok.pk, "running"),
        ("finished", ok.pk, "succeeded", {"data": {"n": 1}, "attempt": 1}, ""),
    ]
    assert [event for event in events if event[1] == bad.pk] == [
        ("started", bad.pk, "running"),
        ("finished", bad.pk, "failed", None, "RuntimeError: signal me"),
    ]
    assert len(events) == 4
