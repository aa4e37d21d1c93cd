"""The control API on ``django_jobs.registry``: list, status, ensure, start, cancel, stop,
succeed/fail, retry, locks, inspect, prune and pause, against a real database.

Waiting (``stop()``) is proven here with a worker on a thread of this process, and with real
``runjobs`` processes in tests/concurrency/test_control_processes.py."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_jobs import (
    InvalidJobState,
    JobAlreadyRunning,
    JobNotFound,
    JobStillRunning,
    UnknownJob,
    registry,
    signals,
)
from django_jobs.execution import Execution
from django_jobs.jobtypes import build_job_type
from django_jobs.models import Job, JobSchedule, JobStatus, JobTypeLock
from django_jobs.testing import frozen_clock
from django_jobs.types import Ensured, Inspection, JobInfo, JobStatusInfo, LockInfo
from django_jobs.worker.claim import claim

from .worker_helpers import run_burst, status_of, worker_thread

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)


def _noop(ctx, **data):
    return "ran"


@pytest.fixture
def define():
    """Register job types for one test; unregistered at the end."""
    names: list[str] = []

    def define(name: str, func=_noop, **options):
        job_type = build_job_type(func, {"name": name, **options})
        registry.register(job_type)
        names.append(name)
        return job_type

    yield define
    for name in names:
        registry.unregister(name)


def claimed(job: Job, worker: str = "elsewhere:1") -> Job:
    """Mark ``job`` running under a claim, as a worker would."""
    rows = claim(worker, 1, ids=[job.pk])
    assert [row.pk for row in rows] == [job.pk]
    assert Execution(rows[0], registry.get(rows[0].name), worker=worker).begin()
    return rows[0]


# -- list -----------------------------------------------------------------------------------


def test_list_gives_every_registered_job_with_its_schedule_in_words(define):
    define("control.cron", cron="30 2 * * *")
    define("control.every", every=timedelta(minutes=5))
    infos = {info.name: info for info in registry.list()}
    assert set(infos) == set(registry.names())
    assert all(isinstance(info, JobInfo) for info in infos.values())
    cron = infos["control.cron"]
    assert (cron.recurring, cron.cron, cron.schedule) == (True, "30 2 * * *", "daily at 02:30")
    assert infos["control.every"].schedule == "every 5 minutes"
    assert infos["control.every"].every == timedelta(minutes=5)
    echo = infos["jobsapp.echo"]
    assert (echo.recurring, echo.cron, echo.schedule, echo.next_run) == (False, None, "", None)
    assert infos["jobsapp.disabled_job"].enabled is False
    assert infos["jobsapp.echo"].enabled is True


def test_list_next_run_is_the_next_occurrence_or_the_earliest_scheduled_row(define):
    define("control.cron", cron="0 * * * *")
    with frozen_clock(T0):
        info = {i.name: i for i in registry.list()}["control.cron"]
        assert info.next_run == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
        later = registry.enqueue("jobsapp.echo", delay=timedelta(minutes=10))
        registry.enqueue("jobsapp.echo", delay=timedelta(minutes=20))
        echo = {i.name: i for i in registry.list()}["jobsapp.echo"]
    assert echo.next_run == later.run_at
    assert echo.scheduled == 2


def test_list_shows_last_finished_run_with_its_outcome_and_the_running_run():
    ok = registry.enqueue("jobsapp.echo")
    run_burst()
    failed = registry.enqueue("jobsapp.explode")
    run_burst()
    running = claimed(registry.enqueue("jobsapp.echo", n=2))
    infos = {i.name: i for i in registry.list()}
    assert infos["jobsapp.echo"].last_run.id == ok.pk
    assert infos["jobsapp.echo"].last_outcome == "succeeded"
    assert infos["jobsapp.echo"].running.id == running.pk
    assert infos["jobsapp.explode"].last_run.id == failed.pk
    assert infos["jobsapp.explode"].last_outcome == "failed"
    assert infos["jobsapp.explode"].last_run.error == "RuntimeError: boom"
    assert infos["jobsapp.noop"].last_run is None and infos["jobsapp.noop"].running is None


def test_list_marks_paused_recurring_jobs_and_gives_them_no_next_run(define):
    define("control.cron", cron="0 * * * *")
    registry.pause("control.cron")
    info = {i.name: i for i in registry.list()}["control.cron"]
    assert (info.paused, info.next_run) == (True, None)
    registry.resume("control.cron")
    info = {i.name: i for i in registry.list()}["control.cron"]
    assert info.paused is False and info.next_run is not None


def test_list_costs_the_same_few_queries_however_many_jobs_ran():
    registry.enqueue("jobsapp.explode")
    run_burst()
    with CaptureQueriesContext(connection) as few:
        registry.list()
    for _ in range(5):
        for name in ("jobsapp.echo", "jobsapp.noop", "jobsapp.explode", "jobsapp.flaky"):
            registry.enqueue(name)
    run_burst()
    with CaptureQueriesContext(connection) as many:
        registry.list()
    assert len(many) == len(few) <= 7


def test_job_info_as_dict_is_json_serialisable(define):
    define("control.every", every=timedelta(minutes=5))
    registry.enqueue("jobsapp.echo")
    run_burst()
    data = json.loads(json.dumps([info.as_dict() for info in registry.list()]))
    every = next(d for d in data if d["name"] == "control.every")
    assert every["every"] == 300.0 and every["schedule"] == "every 5 minutes"
    echo = next(d for d in data if d["name"] == "jobsapp.echo")
    assert echo["last_run"]["status"] == "succeeded"


# -- status ---------------------------------------------------------------------------------


def test_status_of_a_running_job_gives_progress_message_eta_and_elapsed_in_words():
    with frozen_clock(T0) as clock:
        job = claimed(registry.enqueue("jobsapp.echo"))
        Job.objects.filter(pk=job.pk).update(
            progress=0.25, progress_message="invoice 7", eta=T0 + timedelta(minutes=3)
        )
        clock.advance(seconds=125)
        info = registry.status(job.pk)
    assert isinstance(info, JobStatusInfo)
    assert (info.status, info.progress, info.message) == ("running", 0.25, "invoice 7")
    assert info.elapsed == timedelta(seconds=125) and info.elapsed_words == "2 min 5 s"
    assert info.remaining == timedelta(seconds=55) and info.remaining_words == "55 s"
    assert info.worker == "elsewhere:1" and not info.finished


def test_status_of_a_finished_job_gives_its_duration_result_and_error():
    ok = registry.enqueue("jobsapp.echo", n=1)
    bad = registry.enqueue("jobsapp.explode")
    run_burst()
    info = registry.status(str(ok.pk))  # a string id works too
    assert info.status == "succeeded" and info.finished
    assert info.result == {"data": {"n": 1}, "attempt": 1}
    assert info.elapsed is not None and info.elapsed_words
    assert registry.status(bad.pk).error.startswith("RuntimeError: boom")


def test_status_of_an_unknown_or_malformed_id_raises_job_not_found():
    with pytest.raises(JobNotFound, match="no job with id"):
        registry.status(uuid.uuid4())
    with pytest.raises(JobNotFound, match="not a job id"):
        registry.status("not-an-id")
    with pytest.raises(ValueError, match="too short: give at least 4 hex characters"):
        registry.status("42")


# -- ensure and start -----------------------------------------------------------------------


def test_ensure_enqueues_only_when_nothing_of_that_name_is_pending():
    first = registry.ensure("jobsapp.echo", n=1)
    assert isinstance(first, Ensured) and first.created
    again = registry.ensure("jobsapp.echo", n=2)
    assert (again.created, again.job.pk) == (False, first.job.pk)
    running = claimed(first.job)
    assert registry.ensure("jobsapp.echo").job.pk == running.pk
    Job.objects.filter(pk=running.pk).update(status=JobStatus.SUCCEEDED)
    fresh = registry.ensure("jobsapp.echo", n=3)
    assert fresh.created and fresh.job.pk != first.job.pk and fresh.job.data == {"n": 3}
    assert Job.objects.for_name("jobsapp.echo").pending().count() == 1


def test_concurrent_ensure_calls_insert_one_row():
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race cannot happen there")
    barrier = threading.Barrier(4)
    results: list[Ensured] = []

    def call():
        barrier.wait()
        try:
            results.append(registry.ensure("jobsapp.noop"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Job.objects.for_name("jobsapp.noop").count() == 1
    assert sum(r.created for r in results) == 1
    assert len({r.job.pk for r in results}) == 1


def test_start_enqueues_to_run_now_and_refuses_while_one_runs():
    with frozen_clock(T0):
        job = registry.start("jobsapp.echo", n=1)
        assert (job.status, job.run_at) == ("scheduled", T0)
    claimed(job)
    with pytest.raises(JobAlreadyRunning, match=str(job.pk)):
        registry.start("jobsapp.echo")
    assert Job.objects.for_name("jobsapp.echo").count() == 1


def test_start_of_a_job_locked_per_payload_refuses_only_the_same_key():
    running = claimed(registry.enqueue("jobsapp.per_customer", customer=1))
    with pytest.raises(JobAlreadyRunning):
        registry.start("jobsapp.per_customer", customer=1)
    other = registry.start("jobsapp.per_customer", customer=2)
    assert other.pk != running.pk and other.status == "scheduled"


def test_unknown_names_raise_unknown_job_with_suggestions():
    for call in (registry.ensure, registry.start, registry.running, registry.latest,
                 registry.cancel, registry.stop, registry.pause, registry.resume):
        with pytest.raises(UnknownJob, match="did you mean 'jobsapp.echo'"):
            call("jobsapp.ecoh")


# -- cancel and stop ------------------------------------------------------------------------


def test_cancel_by_id_returns_at_once_and_a_running_job_ends_cancelled():
    with worker_thread() as worker:
        job = registry.enqueue("jobsapp.cancellable")
        wait_status(job, "running")
        assert registry.cancel(job.pk) == 1
        assert status_of(job) == "running"  # cancel() only asked
        wait_status(job, "cancelled")
    assert worker.stats.finished == 1


def test_cancel_by_name_cancels_every_pending_job_of_it():
    jobs = [registry.enqueue("jobsapp.echo", n=n) for n in range(3)]
    other = registry.enqueue("jobsapp.noop")
    assert registry.cancel("jobsapp.echo") == 3
    assert [status_of(j) for j in jobs] == ["cancelled"] * 3
    assert status_of(other) == "scheduled"


def test_stop_waits_until_the_running_job_has_ended_and_returns_its_state():
    with worker_thread():
        job = registry.enqueue("jobsapp.cancellable")
        wait_status(job, "running")
        infos = registry.stop(job.pk, timeout=10)
    assert [(i.id, i.status) for i in infos] == [(job.pk, "cancelled")]


def test_stop_by_name_cancels_scheduled_ones_and_waits_for_running_ones():
    with worker_thread():
        running = registry.enqueue("jobsapp.cancellable")
        wait_status(running, "running")
        later = registry.enqueue("jobsapp.cancellable", delay=timedelta(hours=1))
        infos = registry.stop("jobsapp.cancellable", timeout=10)
    assert {i.id: i.status for i in infos} == {running.pk: "cancelled", later.pk: "cancelled"}


def test_stop_raises_job_still_running_when_the_job_ignores_cancellation():
    with worker_thread():
        job = registry.enqueue("jobsapp.drain", seconds=3)
        wait_status(job, "running")
        with pytest.raises(JobStillRunning, match=str(job.pk)):
            registry.stop(job.pk, timeout=0.5)
        assert Job.objects.get(pk=job.pk).cancel_requested_at is not None
        wait_status(job, "succeeded")


def test_cancel_and_stop_of_an_unknown_id_raise_job_not_found():
    with pytest.raises(JobNotFound):
        registry.cancel(uuid.uuid4())
    with pytest.raises(JobNotFound):
        registry.stop(uuid.uuid4())


# -- succeed and fail -----------------------------------------------------------------------


def test_succeed_records_the_result_of_a_scheduled_job_done_elsewhere():
    finished = []
    job = registry.enqueue("jobsapp.echo", delay=timedelta(days=1))

    def listener(sender, job, status, **kwargs):
        finished.append((job.pk, status))

    signals.job_finished.connect(listener)
    try:
        with frozen_clock(T0):
            info = registry.succeed(job.pk, result={"callback": "ok"})
    finally:
        signals.job_finished.disconnect(listener)
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.result, row.progress) == ("succeeded", {"callback": "ok"}, 1.0)
    assert row.started_at == row.finished_at == T0
    assert info.status == "succeeded" and info.result == {"callback": "ok"}
    assert finished == [(job.pk, "succeeded")]
    run_burst()
    assert Job.objects.get(pk=job.pk).result == {"callback": "ok"}  # no worker runs it again


def test_fail_records_the_message_and_retries_only_when_asked():
    job = registry.enqueue("jobsapp.flaky")
    info = registry.fail(job.pk, message="the partner API said no")
    assert (info.status, info.error) == ("failed", "the partner API said no")
    assert not Job.objects.filter(rescheduled_from=job.pk).exists()
    second = registry.enqueue("jobsapp.flaky")
    registry.fail(second.pk, message="try again", retry=True)
    retry = Job.objects.get(rescheduled_from=second.pk)
    assert (retry.status, retry.attempt) == ("scheduled", 2)


def test_succeed_and_fail_are_refused_while_a_live_worker_holds_the_job():
    job = claimed(registry.enqueue("jobsapp.locked_sleep"))
    with pytest.raises(InvalidJobState, match="a worker holds it"):
        registry.succeed(job.pk)
    with pytest.raises(InvalidJobState, match="a worker holds it"):
        registry.fail(job.pk)
    assert status_of(job) == "running"
    assert JobTypeLock.objects.filter(key="jobsapp.locked_sleep").exists()


def test_succeed_is_allowed_once_the_holding_worker_is_gone_and_frees_its_lock():
    job = claimed(registry.enqueue("jobsapp.locked_sleep"))
    Job.objects.filter(pk=job.pk).update(locked_until=T0)  # the lease ran out long ago
    info = registry.succeed(job.pk, result=1)
    assert (info.status, info.result) == ("succeeded", 1)
    assert not JobTypeLock.objects.filter(key="jobsapp.locked_sleep").exists()


def test_succeed_and_fail_are_refused_on_finished_jobs_and_non_json_results():
    job = registry.enqueue("jobsapp.echo")
    run_burst()
    with pytest.raises(InvalidJobState, match="it has finished"):
        registry.fail(job.pk)
    assert status_of(job) == "succeeded"
    pending = registry.enqueue("jobsapp.echo")
    with pytest.raises(TypeError, match="JSON"):
        registry.succeed(pending.pk, result={1, 2})
    assert status_of(pending) == "scheduled"
    with pytest.raises(JobNotFound):
        registry.succeed(uuid.uuid4())


# -- retry, running, latest, prune ----------------------------------------------------------


def test_retry_schedules_a_new_run_of_a_finished_job_and_refuses_a_pending_one():
    job = registry.enqueue("jobsapp.explode")
    with pytest.raises(InvalidJobState):
        registry.retry(job.pk)
    run_burst()
    again = registry.retry(job.pk)
    assert (again.status, again.rescheduled_from_id, again.data) == (
        "scheduled", job.pk, job.data
    )


def test_running_and_latest_return_rows_of_that_name():
    assert registry.running("jobsapp.echo") is None and registry.latest("jobsapp.echo") is None
    first = claimed(registry.enqueue("jobsapp.echo"))
    second = registry.enqueue("jobsapp.echo")
    assert registry.running("jobsapp.echo").pk == first.pk
    assert registry.latest("jobsapp.echo").pk == second.pk


def test_prune_deletes_only_finished_jobs_older_than_their_keep():
    with frozen_clock(T0) as clock:
        old = registry.enqueue("jobsapp.echo")
        run_burst()
        clock.advance(days=8)
        recent = registry.enqueue("jobsapp.echo")
        run_burst()
        pending = registry.enqueue("jobsapp.echo", delay=timedelta(days=30))
        assert registry.prune() == 1
    assert not Job.objects.filter(pk=old.pk).exists()
    assert Job.objects.filter(pk__in=[recent.pk, pending.pk]).count() == 2


# -- locks and inspect ----------------------------------------------------------------------


def test_locks_lists_held_locks_with_their_holder_and_expiry():
    job = claimed(registry.enqueue("jobsapp.locked_sleep"), worker="host:42")
    locks = registry.locks()
    assert len(locks) == 1 and isinstance(locks[0], LockInfo)
    lock = locks[0]
    assert (lock.key, lock.job_id, lock.job_name, lock.job_status, lock.worker, lock.expired) == (
        "jobsapp.locked_sleep", job.pk, "jobsapp.locked_sleep", "running", "host:42", False
    )
    JobTypeLock.objects.update(locked_until=T0)
    assert registry.locks()[0].expired is True


def test_inspect_counts_jobs_per_queue_and_status_and_ages_the_oldest_due_job():
    with frozen_clock(T0) as clock:
        registry.enqueue("jobsapp.echo", queue="mail")
        clock.advance(minutes=2)
        registry.enqueue("jobsapp.echo", queue="mail")
        registry.enqueue("jobsapp.echo", queue="mail", delay=timedelta(hours=1))
        registry.enqueue("jobsapp.explode")
        run_burst(queues=["default"])
        running = claimed(registry.enqueue("jobsapp.echo", queue="reports"), worker="box:7")
        registry.pause_queue("idle")
        clock.advance(seconds=30)
        report = registry.inspect()
    assert isinstance(report, Inspection)
    queues = {q.queue: q for q in report.queues}
    assert queues["mail"].counts == {"scheduled": 3}
    assert queues["mail"].due == 2
    assert queues["mail"].oldest_due_age == timedelta(minutes=2, seconds=30)
    assert queues["default"].counts == {"failed": 1} and queues["default"].due == 0
    assert queues["reports"].counts == {"running": 1}
    assert queues["idle"].paused and report.paused_queues == ("idle",)
    assert report.due == 2 and report.oldest_due_age == timedelta(minutes=2, seconds=30)
    assert [r.id for r in report.running] == [running.pk]
    assert report.workers == ()  # workers come from Worker rows; this claim made none
    json.dumps(report.as_dict())


# -- pause ----------------------------------------------------------------------------------


def test_pause_and_resume_are_stored_in_the_database(define):
    define("control.cron", cron="*/5 * * * *")
    registry.pause("control.cron")
    assert JobSchedule.objects.get(name="control.cron").paused is True
    registry.resume("control.cron")
    assert JobSchedule.objects.get(name="control.cron").paused is False
    with pytest.raises(ValueError, match="not recurring"):
        registry.pause("jobsapp.echo")


def test_paused_queue_is_not_worked_until_resumed():
    job = registry.enqueue("jobsapp.echo", queue="mail")
    registry.pause_queue("mail")
    assert registry.paused_queues() == ["mail"]
    run_burst()
    assert status_of(job) == "scheduled"
    registry.resume_queue("mail")
    run_burst()
    assert status_of(job) == "succeeded"


def wait_status(job: Job, status: str, timeout: float = 15) -> None:
    from tests.conftest import wait_for

    wait_for(lambda: status_of(job) == status, timeout=timeout)
