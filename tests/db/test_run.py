"""``fn.run()``: runs now, in this process, through a row, the lock and the bookkeeping."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_jobs import (
    JobAlreadyRunning,
    JobCancelled,
    JobDisabled,
    JobTimeout,
    UnknownJob,
    registry,
)
from django_jobs.conf import jobs_settings
from django_jobs.models import Job, JobTypeLock
from tests.conftest import wait_for
from tests.jobsapp import jobs as test_jobs
from tests.jobsapp.models import Interval

pytestmark = pytest.mark.django_db

ME = f"{socket.gethostname()}:{os.getpid()}"


def only_row(name: str) -> Job:
    return Job.objects.get(name=name)


def assert_nothing_left_running():
    assert not Job.objects.running().exists()
    assert not JobTypeLock.objects.exists()


class Runner(threading.Thread):
    """``fn.run()`` in a thread of its own (own connection); keeps the result or exception."""

    def __init__(self, name: str, **data) -> None:
        super().__init__(daemon=True)
        self.job_name, self.data = name, data
        self.result = self.exc = None

    def run(self) -> None:
        try:
            self.result = registry.get(self.job_name).run(**self.data)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            self.exc = exc
        finally:
            connections.close_all()


# -- success ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_run_returns_the_result_and_stores_the_finished_row():
    before = timezone.now()
    result = registry.get("jobsapp.echo").run(user_id=7)
    after = timezone.now()
    assert result == {"data": {"user_id": 7}, "attempt": 1}
    row = only_row("jobsapp.echo")
    assert row.status == "succeeded"
    assert row.result == result
    assert row.data == {"user_id": 7}
    # The start is written by the database's clock, the rest by this host's, kept in step
    # with it within a fraction of a millisecond.
    slack = timedelta(milliseconds=5)
    assert before - slack <= row.started_at <= row.finished_at <= after + slack
    assert row.worker == ME
    assert row.progress == 1.0
    assert row.error == ""
    assert row.locked_until is None
    assert_nothing_left_running()


def test_run_inside_the_callers_transaction_works_and_stores_the_row():
    # pytest-django wraps this test in a transaction: run() must still complete.
    assert registry.get("jobsapp.echo").run(n=1) == {"data": {"n": 1}, "attempt": 1}
    assert only_row("jobsapp.echo").status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_run_inside_a_rolled_back_transaction_leaves_no_row():
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=jobs_settings.DATABASE):
            registry.get("jobsapp.echo").run(n=1)
            raise RuntimeError("abort")
    assert Job.objects.count() == 0


def test_registry_run_by_name_runs_the_job():
    assert registry.run("jobsapp.echo", n=2) == {"data": {"n": 2}, "attempt": 1}
    assert only_row("jobsapp.echo").result == {"data": {"n": 2}, "attempt": 1}
    with pytest.raises(UnknownJob):
        registry.run("jobsapp.nope")


def test_run_of_a_locked_job_releases_its_lock_when_done():
    assert registry.get("jobsapp.locked_sleep").run(seconds=0, token="t1") == "t1"
    row = only_row("jobsapp.locked_sleep")
    assert row.status == "succeeded"
    assert row.lock_key == "jobsapp.locked_sleep"
    assert Interval.objects.filter(job_id=row.pk).count() == 1
    assert_nothing_left_running()


# -- failure ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_failing_run_stores_the_error_with_traceback_and_reraises():
    test_jobs.HOOK_CALLS.clear()
    with pytest.raises(RuntimeError, match="kaboom"):
        registry.get("jobsapp.explode").run(message="kaboom")
    row = only_row("jobsapp.explode")
    assert row.status == "failed"
    assert row.error.startswith("RuntimeError: kaboom")
    assert "Traceback (most recent call last)" in row.error
    assert 'raise RuntimeError(message)' in row.error  # the job's own frame
    assert row.finished_at is not None and row.started_at <= row.finished_at
    assert row.result is None
    assert test_jobs.HOOK_CALLS == [("on_error", "jobsapp.explode", "RuntimeError")]
    assert Job.objects.count() == 1  # max_attempts=1: no retry row
    assert_nothing_left_running()


def test_long_error_is_stored_truncated_keeping_its_head_and_tail():
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "MAX_TEXT_LENGTH": 500}):
        with pytest.raises(RuntimeError):
            registry.get("jobsapp.explode").run(message="x" * 5000)
    error = only_row("jobsapp.explode").error
    assert len(error) == 500
    assert error.startswith("RuntimeError: xxx")
    assert "characters truncated" in error
    # The traceback's last line (the exception again) survives at the end.
    assert error.rstrip().endswith("x" * 100)


def test_failed_run_with_attempts_left_schedules_the_retry_with_backoff():
    with pytest.raises(ValueError, match="attempt 1 fails on purpose"):
        registry.get("jobsapp.flaky").run(fail_times=5)
    failed = Job.objects.get(status="failed")
    retry = Job.objects.get(status="scheduled")
    assert failed.attempt == 1
    assert (retry.attempt, retry.max_attempts) == (2, 3)
    assert retry.rescheduled_from_id == failed.pk
    assert retry.data == {"fail_times": 5}
    # flaky: retry_delay=200 ms, so attempt 1 waits 200 ms * 2 ** 0.
    assert retry.run_at - failed.finished_at == timedelta(milliseconds=200)
    assert_nothing_left_running()


def test_non_json_result_fails_the_run():
    with pytest.raises(ValueError, match="JSON-serialisable"):
        registry.get("jobsapp.bad_result").run()
    row = only_row("jobsapp.bad_result")
    assert row.status == "failed"
    assert "the result['when'] is of type set" in row.error
    assert row.result is None


def test_non_json_payload_is_refused_before_any_row_is_written():
    with pytest.raises(TypeError, match=r"\['x'\]"):
        registry.get("jobsapp.echo").run(x={1, 2})
    assert Job.objects.count() == 0


# -- SystemExit / KeyboardInterrupt -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_system_exit_inside_run_is_recorded_as_failed_then_reraised():
    with pytest.raises(SystemExit) as info:
        registry.get("jobsapp.exit_job").run(kind="exit")
    assert info.value.code == 3
    row = only_row("jobsapp.exit_job")
    assert row.status == "failed"
    assert row.error.startswith("SystemExit: 3")
    assert row.finished_at is not None
    assert_nothing_left_running()


@pytest.mark.django_db(transaction=True)
def test_keyboard_interrupt_inside_run_is_recorded_as_failed_then_reraised():
    with pytest.raises(KeyboardInterrupt):
        registry.get("jobsapp.exit_job").run(kind="interrupt")
    row = only_row("jobsapp.exit_job")
    assert row.status == "failed"
    assert row.error.startswith("KeyboardInterrupt")
    assert_nothing_left_running()


@pytest.mark.django_db(transaction=True)
def test_system_exit_of_a_locked_job_releases_the_lock_before_reraising():
    locked_exit = registry.get("jobsapp.locked_exit")
    with pytest.raises(SystemExit):
        locked_exit.run()
    assert not JobTypeLock.objects.filter(key="jobsapp.locked_exit").exists()
    # The lock is really free: a second run starts (and exits) instead of being refused.
    with pytest.raises(SystemExit) as info:
        locked_exit.run()
    assert info.value.code == 4
    assert list(Job.objects.values_list("status", flat=True)) == ["failed", "failed"]
    assert_nothing_left_running()


# -- locks --------------------------------------------------------------------------------------


# The lock row must be committed: fn.run() takes keys on a connection of its own.
@pytest.mark.django_db(transaction=True)
def test_run_while_the_lock_is_held_elsewhere_raises_job_already_running_and_writes_nothing():
    held_until = timezone.now() + timedelta(minutes=5)
    JobTypeLock.objects.create(key="jobsapp.locked_sleep", worker="other-host:1",
                               locked_until=held_until)
    with pytest.raises(JobAlreadyRunning, match="jobsapp.locked_sleep"):
        registry.get("jobsapp.locked_sleep").run(seconds=0)
    assert not Job.objects.exists()
    assert not Interval.objects.exists()  # the function never ran
    lock = JobTypeLock.objects.get()
    assert (lock.worker, lock.locked_until) == ("other-host:1", held_until)


# The lock row must be committed: fn.run() takes keys on a connection of its own.
@pytest.mark.django_db(transaction=True)
def test_an_expired_lock_is_taken_over():
    JobTypeLock.objects.create(key="jobsapp.locked_sleep", worker="dead-host:1",
                               locked_until=timezone.now() - timedelta(seconds=1))
    assert registry.get("jobsapp.locked_sleep").run(seconds=0, token="x") == "x"
    assert only_row("jobsapp.locked_sleep").status == "succeeded"
    assert_nothing_left_running()


# The lock row must be committed: fn.run() takes keys on a connection of its own.
@pytest.mark.django_db(transaction=True)
def test_per_key_lock_refuses_only_the_same_key():
    JobTypeLock.objects.create(key="jobsapp.per_customer:1", worker="other-host:1",
                               locked_until=timezone.now() + timedelta(minutes=5))
    per_customer = registry.get("jobsapp.per_customer")
    with pytest.raises(JobAlreadyRunning):
        per_customer.run(customer=1, seconds=0)
    assert per_customer.run(customer=2, seconds=0) == 2
    assert list(Job.objects.values_list("lock_key", "status")) == [
        ("jobsapp.per_customer:2", "succeeded")
    ]


@pytest.mark.django_db(transaction=True)
def test_run_while_another_run_holds_the_lock_raises_job_already_running():
    first = Runner("jobsapp.locked_sleep", seconds=1.0, token="first")
    first.start()
    try:
        wait_for(lambda: JobTypeLock.objects.filter(key="jobsapp.locked_sleep").exists(), 10)
        with pytest.raises(JobAlreadyRunning):
            registry.get("jobsapp.locked_sleep").run(seconds=0, token="second")
    finally:
        first.join(timeout=30)
    assert first.exc is None and first.result == "first"
    assert list(Job.objects.values_list("status", flat=True)) == ["succeeded"]
    # Once the first run is over, the lock is free again.
    assert registry.get("jobsapp.locked_sleep").run(seconds=0, token="third") == "third"
    assert_nothing_left_running()


# -- enabled ------------------------------------------------------------------------------------


def test_run_of_a_disabled_job_raises_job_disabled_and_writes_nothing():
    with pytest.raises(JobDisabled, match="jobsapp.disabled_job"):
        registry.get("jobsapp.disabled_job").run()
    assert not Job.objects.exists()


def test_env_flag_disables_run(monkeypatch):
    monkeypatch.setenv("JOBS_JOBSAPP_ECHO_ENABLED", "false")
    with pytest.raises(JobDisabled):
        registry.get("jobsapp.echo").run()
    assert not Job.objects.exists()


def test_env_flag_enables_a_job_declared_disabled(monkeypatch):
    monkeypatch.setenv("JOBS_JOBSAPP_DISABLED_JOB_ENABLED", "true")
    assert registry.get("jobsapp.disabled_job").run() is None
    assert only_row("jobsapp.disabled_job").status == "succeeded"


# -- precheck -----------------------------------------------------------------------------------


def test_precheck_reason_skips_the_run():
    registry.get("jobsapp.prechecked").run(done=True)
    row = only_row("jobsapp.prechecked")
    assert row.status == "skipped"
    assert "already done" in json.dumps(row.result) + row.error  # the reason is kept
    assert row.finished_at is not None
    assert_nothing_left_running()


def test_precheck_without_reason_lets_the_run_happen():
    assert registry.get("jobsapp.prechecked").run(done=False) == "ran"
    assert only_row("jobsapp.prechecked").status == "succeeded"


# -- cancellation and timeout -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_run_in_progress_ends_it_cancelled_and_run_raises_job_cancelled():
    runner = Runner("jobsapp.cancellable", seconds=20)
    runner.start()
    try:
        row = wait_for(lambda: Job.objects.running().filter(name="jobsapp.cancellable").first(), 10)
        assert registry.cancel(row.pk) == 1
    finally:
        runner.join(timeout=15)
    assert not runner.is_alive()
    assert isinstance(runner.exc, JobCancelled)
    row.refresh_from_db()
    assert row.status == "cancelled"
    assert row.cancel_requested_at is not None
    assert_nothing_left_running()


@pytest.mark.django_db(transaction=True)
def test_run_past_its_timeout_raises_job_timeout_and_frees_the_lock():
    with pytest.raises(JobTimeout):
        registry.get("jobsapp.checks_timeout").run()  # timeout=1s, loops on check_cancelled()
    row = only_row("jobsapp.checks_timeout")
    assert row.status == "failed"
    assert "timed out" in row.error
    assert row.finished_at - row.started_at >= timedelta(seconds=1)
    assert_nothing_left_running()


@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="SQLite has one writer: the caller's transaction holds every key there",
)
def test_run_inside_a_transaction_that_holds_the_key_uncommitted_gives_up_after_a_second():
    # The caller's own transaction is inserting the key (not committed): run() takes keys on
    # a connection of its own, which would wait for the caller, who waits for it.
    JobTypeLock.objects.create(key="jobsapp.locked_sleep", worker="this-transaction:1",
                               locked_until=timezone.now() + timedelta(minutes=5))
    started = time.monotonic()
    with pytest.raises(JobAlreadyRunning):
        registry.get("jobsapp.locked_sleep").run(seconds=0)
    assert time.monotonic() - started < 5.0
    assert not Job.objects.exists()
