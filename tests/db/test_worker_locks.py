"""Locks, rescue of stale rows and the fence on every write about a claim, with the worker
running in the test process."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from django_jobs import registry, signals
from django_jobs.conf import jobs_settings
from django_jobs.execution import Execution, Outcome, record_outcome
from django_jobs.models import Job, JobTypeLock
from django_jobs.worker.claim import claim
from django_jobs.worker.rescue import rescue_stale
from tests.conftest import wait_for
from tests.jobsapp import jobs as test_jobs
from tests.jobsapp.models import Interval

from .worker_helpers import run_burst, status_of, worker_thread

pytestmark = pytest.mark.django_db(transaction=True)


def overlaps(a: Interval, b: Interval) -> bool:
    return a.started < b.ended and b.started < a.ended


# -- per-key locks -----------------------------------------------------------------------------


def test_per_key_lock_serialises_runs_of_one_customer_but_not_of_different_customers():
    per_customer = registry.get("jobsapp.per_customer")
    for customer in (1, 1, 1, 2, 2):
        per_customer.enqueue(customer=customer, seconds=0.2)
    worker = run_burst(concurrency=4)
    assert worker.stats.claimed == 5
    assert set(Job.objects.values_list("status", flat=True)) == {"succeeded"}
    intervals = list(Interval.objects.all())
    assert len(intervals) == 5
    assert all(i.ended is not None for i in intervals)
    by_key: dict[str, list[Interval]] = {}
    for interval in intervals:
        by_key.setdefault(interval.key, []).append(interval)
    for runs in by_key.values():
        for index, a in enumerate(runs):
            for b in runs[index + 1 :]:
                assert not overlaps(a, b), f"two runs of {a.key} overlapped"
    # With four threads, the two customers did run side by side.
    assert any(overlaps(a, b) for a in by_key["customer:1"] for b in by_key["customer:2"])
    assert not JobTypeLock.objects.exists()


def test_the_database_refuses_a_second_holder_of_a_lock_key():
    job = registry.get("jobsapp.per_customer").enqueue(customer=7, seconds=1.0)
    with worker_thread():
        wait_for(
            lambda: JobTypeLock.objects.filter(key="jobsapp.per_customer:7").exists(), timeout=5
        )
        held = JobTypeLock.objects.get(key="jobsapp.per_customer:7")
        assert held.job_id == job.pk
        with pytest.raises(IntegrityError), transaction.atomic():
            JobTypeLock.objects.create(
                key="jobsapp.per_customer:7",
                job_id=uuid.uuid4(),
                claim_id=uuid.uuid4(),
                worker="intruder",
                locked_until=timezone.now() + timedelta(minutes=5),
            )
        assert JobTypeLock.objects.get(key="jobsapp.per_customer:7").job_id == job.pk
        wait_for(lambda: status_of(job) == "succeeded", timeout=5)
    assert not JobTypeLock.objects.exists()


EXIT_PATHS = [
    # (job name, payload, final status, error prefix)
    pytest.param("jobsapp.locked_sleep", {"seconds": 0.05}, "succeeded", "", id="success"),
    pytest.param(
        "jobsapp.locked_raise", {"kind": "error"}, "failed", "RuntimeError", id="exception"
    ),
    pytest.param(
        "jobsapp.locked_raise",
        {"kind": "keyboard"},
        "failed",
        "KeyboardInterrupt",
        id="keyboard-interrupt",
    ),
    pytest.param("jobsapp.locked_exit", {}, "failed", "SystemExit", id="system-exit"),
    pytest.param("jobsapp.checks_timeout", {}, "failed", "timed out", id="timeout"),
    pytest.param("jobsapp.locked_cancellable", {}, "cancelled", "", id="cancel"),
]


@pytest.mark.parametrize(("name", "data", "status", "error"), EXIT_PATHS)
def test_lock_is_freed_on_every_exit_path(name, data, status, error):
    held_while_running = []

    def on_started(sender, job, **kwargs):
        held_while_running.append(
            JobTypeLock.objects.filter(key=job.lock_key, job_id=job.pk).exists()
        )

    signals.job_started.connect(on_started, weak=False)
    try:
        job = registry.get(name).enqueue(**data)
        with worker_thread():
            wait_for(lambda: status_of(job) != "scheduled", timeout=5)
            if status == "cancelled":
                registry.cancel(job.pk)
            wait_for(lambda: status_of(job) not in ("scheduled", "running"), timeout=5)
    finally:
        signals.job_started.disconnect(on_started)
    row = Job.objects.get(pk=job.pk)
    assert held_while_running == [True]
    assert row.lock_key == name
    assert row.status == status, row.error
    assert row.error.startswith(error) if error else True
    assert not JobTypeLock.objects.exists()


# -- rescue ------------------------------------------------------------------------------------


def forge_dead_run(job: Job, *, expired_by: float = 1.0, hold_lock: bool = True) -> uuid.UUID:
    """Make ``job`` look claimed by a worker that died: running, lease ran out."""
    now = timezone.now()
    claim_id = uuid.uuid4()
    lease = now - timedelta(seconds=expired_by)
    Job.objects.filter(pk=job.pk).update(
        status="running",
        claim_id=claim_id,
        worker="deadhost:1",
        started_at=now - timedelta(seconds=10),
        heartbeat_at=now - timedelta(seconds=10),
        locked_until=lease,
    )
    if hold_lock and job.lock_key:
        JobTypeLock.objects.create(
            key=job.lock_key,
            job_id=job.pk,
            claim_id=claim_id,
            worker="deadhost:1",
            locked_until=lease,
        )
    return claim_id


def test_worker_rescues_a_row_whose_lease_expired_and_retries_it():
    test_jobs.HOOK_CALLS.clear()
    job = registry.get("jobsapp.locked_sleep").enqueue(seconds=0.05)
    forge_dead_run(job)
    worker = run_burst()
    assert worker.stats.rescued == 1
    lost = Job.objects.get(pk=job.pk)
    assert lost.status == "failed"
    assert lost.error.startswith("worker lost: deadhost:1")
    assert test_jobs.HOOK_CALLS == [("on_stale", "jobsapp.locked_sleep", "")]
    retry = Job.objects.get(rescheduled_from=job.pk)
    assert retry.attempt == 2
    assert retry.status == "succeeded", retry.error  # the lock of the dead run was freed
    assert not JobTypeLock.objects.exists()


def test_rescue_without_attempts_left_fails_the_row_without_retry():
    job = registry.get("jobsapp.noop").enqueue()
    forge_dead_run(job)
    assert [row.pk for row in rescue_stale()] == [job.pk]
    row = Job.objects.get(pk=job.pk)
    assert row.status == "failed" and row.error.startswith("worker lost")
    assert Job.objects.count() == 1


def test_rescue_leaves_a_row_whose_lease_has_not_expired():
    job = registry.get("jobsapp.locked_sleep").enqueue()
    forge_dead_run(job, expired_by=-30)  # lease still 30 s ahead
    assert rescue_stale() == []
    assert status_of(job) == "running"
    assert JobTypeLock.objects.filter(key="jobsapp.locked_sleep").exists()


def test_rescue_after_completion_does_not_reopen_the_finished_job():
    job = registry.get("jobsapp.locked_sleep").enqueue()
    claim_id = forge_dead_run(job)
    row = Job.objects.get(pk=job.pk)
    # The (slow, but alive) worker finishes first...
    assert record_outcome(row, claim_id, Outcome("succeeded", result="done"))
    # ... then a rescuer sweeps.
    assert rescue_stale() == []
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.result, row.error) == ("succeeded", "done", "")
    assert Job.objects.count() == 1
    assert not JobTypeLock.objects.exists()


def test_completion_after_rescue_does_not_overwrite_the_rescue():
    job = registry.get("jobsapp.locked_sleep").enqueue()
    claim_id = forge_dead_run(job)
    row = Job.objects.get(pk=job.pk)
    assert [r.pk for r in rescue_stale()] == [job.pk]
    # The written-off worker wakes up and reports success: nothing changes.
    assert not record_outcome(row, claim_id, Outcome("succeeded", result="late"))
    rescued = Job.objects.get(pk=job.pk)
    assert rescued.status == "failed" and rescued.result is None
    assert rescued.error.startswith("worker lost")
    assert Job.objects.filter(rescheduled_from=job.pk).count() == 1  # one retry, not two


def test_rescuer_that_read_a_row_before_it_finished_does_not_overwrite_it():
    job = registry.get("jobsapp.locked_sleep").enqueue()
    claim_id = forge_dead_run(job)
    now = timezone.now()
    seen_stale = Job.objects.stale(now).get(pk=job.pk)  # the rescuer's read
    assert record_outcome(Job.objects.get(pk=job.pk), claim_id, Outcome("succeeded"))
    # The rescuer's write, exactly as rescue_stale() makes it.
    assert not record_outcome(
        seen_stale,
        seen_stale.claim_id,
        Outcome.failed("worker lost"),
        guard={"locked_until__lt": now},
    )
    row = Job.objects.get(pk=job.pk)
    assert row.status == "succeeded"
    assert Job.objects.count() == 1


def test_rescuer_that_read_a_row_before_its_lease_was_renewed_does_not_fail_it():
    job = registry.get("jobsapp.locked_sleep").enqueue()
    claim_id = forge_dead_run(job)
    now = timezone.now()
    seen_stale = Job.objects.stale(now).get(pk=job.pk)
    # The live worker extends its lease (a heartbeat after a long pause).
    Job.objects.filter(pk=job.pk, claim_id=claim_id).update(locked_until=now + timedelta(minutes=1))
    assert not record_outcome(
        seen_stale,
        seen_stale.claim_id,
        Outcome.failed("worker lost"),
        guard={"locked_until__lt": now},
    )
    assert status_of(job) == "running"
    assert JobTypeLock.objects.filter(key="jobsapp.locked_sleep").exists()


def between_rescue_read_and_write(action):
    """An execute wrapper running ``action`` on another connection right after the rescuer's
    SELECT of stale rows, i.e. between its read and its write."""
    fired: list[str] = []

    def in_other_thread():
        try:
            action()
        finally:
            connections.close_all()

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not fired and sql.lstrip().upper().startswith("SELECT") and "locked_until" in sql:
            fired.append(sql)
            thread = threading.Thread(target=in_other_thread)
            thread.start()
            thread.join(timeout=10)
        return result

    return wrapper, fired


def test_rescue_racing_a_completion_between_its_read_and_write_keeps_the_completion():
    job = registry.get("jobsapp.locked_sleep").enqueue()
    claim_id = forge_dead_run(job)
    wrapper, fired = between_rescue_read_and_write(
        lambda: record_outcome(
            Job.objects.get(pk=job.pk), claim_id, Outcome("succeeded", result="done")
        )
    )
    with connection.execute_wrapper(wrapper):
        assert rescue_stale() == []
    assert fired
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.result, row.error) == ("succeeded", "done", "")
    assert Job.objects.count() == 1  # no retry row
    assert not JobTypeLock.objects.exists()


def test_rescue_racing_a_lease_renewal_between_its_read_and_write_leaves_the_job_running():
    test_jobs.HOOK_CALLS.clear()
    job = registry.get("jobsapp.locked_sleep").enqueue()
    claim_id = forge_dead_run(job)
    wrapper, fired = between_rescue_read_and_write(
        lambda: Job.objects.filter(pk=job.pk, claim_id=claim_id).update(
            locked_until=timezone.now() + timedelta(minutes=1)
        )
    )
    with connection.execute_wrapper(wrapper):
        assert rescue_stale() == []
    assert fired
    assert status_of(job) == "running"
    assert JobTypeLock.objects.filter(key="jobsapp.locked_sleep").exists()
    assert test_jobs.HOOK_CALLS == []


# -- fencing -----------------------------------------------------------------------------------


def claimed_execution(name: str, **data) -> Execution:
    job_type = registry.get(name)
    job = job_type.enqueue(**data)
    rows = claim("test:1", 1)
    assert [row.pk for row in rows] == [job.pk]
    return Execution(rows[0], job_type, worker="test:1")


def snapshot(job: Job) -> dict:
    return Job.objects.filter(pk=job.pk).values().get()


@pytest.mark.parametrize("taken_away", ["claim_id", "status"])
def test_writes_about_a_claim_that_was_taken_away_change_nothing(taken_away):
    execution = claimed_execution("jobsapp.locked_sleep")
    job = execution.job
    other = uuid.uuid4()
    if taken_away == "claim_id":
        # Rescued and claimed again elsewhere: a new claim owns the row and its lock.
        Job.objects.filter(pk=job.pk).update(claim_id=other, worker="other:2")
        JobTypeLock.objects.filter(key=job.lock_key).update(claim_id=other, worker="other:2")
    else:
        Job.objects.filter(pk=job.pk).update(status="failed", error="worker lost")
    before = snapshot(job)
    lock_before = list(JobTypeLock.objects.values())

    assert execution.update(progress=0.5, progress_message="late") is False
    assert execution.lost
    Execution(job, execution.job_type, worker="test:1").extend(60)
    assert (
        Execution(job, execution.job_type, worker="test:1").finish(
            Outcome("succeeded", result="late")
        )
        is False
    )
    assert (
        Execution(job, execution.job_type, worker="test:1").finish(Outcome.failed("late failure"))
        is False
    )
    assert Execution(job, execution.job_type, worker="test:1").release() is False

    assert snapshot(job) == before
    assert list(JobTypeLock.objects.values()) == lock_before
    assert Job.objects.count() == 1  # no retry row from the late failure


def test_writes_about_a_claim_still_held_do_apply():
    """The counterpart of the fence test: the same calls work while the claim is ours."""
    execution = claimed_execution("jobsapp.locked_sleep")
    job = execution.job
    assert execution.update(progress=0.5, progress_message="half")
    assert snapshot(job)["progress_message"] == "half"
    assert execution.release()
    row = snapshot(job)
    assert row["status"] == "scheduled" and row["claim_id"] is None
    assert not JobTypeLock.objects.exists()


def test_the_compiled_claim_follows_the_clock_it_is_given():
    # The claim's SELECT is compiled once per set of filters; only the instant changes.
    from django_jobs import clock

    later = clock.now() + timedelta(hours=1)
    row = registry.get("jobsapp.echo").enqueue(n=1, run_at=later)
    assert claim("w", 1) == []
    assert claim("w", 1, now=later - timedelta(seconds=1)) == []
    claimed = claim("w", 1, now=later + timedelta(seconds=1))
    assert [job.pk for job in claimed] == [row.pk]
    assert Job.objects.get(pk=row.pk).status == "running"


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's claim begins IMMEDIATE")
def test_on_sqlite_every_claim_begins_immediate_even_the_first_after_a_reconnect(monkeypatch):
    db = connections[jobs_settings.DATABASE]
    # A project without transaction_mode in OPTIONS: Django reads OPTIONS at every connect.
    options = {k: v for k, v in db.settings_dict["OPTIONS"].items() if k != "transaction_mode"}
    monkeypatch.setitem(db.settings_dict, "OPTIONS", options)
    echo = registry.get("jobsapp.echo")
    echo.enqueue(n=1)
    begins: list[str] = []

    def record(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("BEGIN"):
            begins.append(sql.strip().upper())
        return execute(sql, params, many, context)

    try:
        db.close()
        with db.execute_wrapper(record):
            assert len(claim("w", 1)) == 1
            echo.enqueue(n=2)
            assert len(claim("w", 1)) == 1
            db.close()
            assert claim("w", 1) == []
    finally:
        db.close()  # the next connection reads the suite's own OPTIONS again
    assert begins == ["BEGIN IMMEDIATE"] * 3


def test_each_set_of_claim_filters_gets_its_own_compiled_query():
    echo = registry.get("jobsapp.echo")
    mail = echo.enqueue(n=1, queue="mail")
    sms = echo.enqueue(n=2, queue="sms")
    assert [j.pk for j in claim("w", 1, queues=["mail"])] == [mail.pk]
    assert claim("w", 1, queues=["mail"]) == []
    assert claim("w", 1, exclude_queues=["sms"]) == []
    assert [j.pk for j in claim("w", 1, queues=["sms"])] == [sms.pk]
