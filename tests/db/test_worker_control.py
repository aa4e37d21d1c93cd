"""What a worker claims, in which order, and when it stops: claim order, queues, disabled jobs,
the claim's query count, --max-jobs and --burst."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_jobs import registry
from django_jobs.models import Job
from django_jobs.worker.claim import claim
from django_jobs.worker.loop import Worker
from tests.jobsapp.models import Execution

from .worker_helpers import run_burst, status_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_starts_jobs_by_priority_then_run_at_then_created_at():
    record = registry.get("jobsapp.record")
    now = timezone.now()
    # token: (priority, run_at offset in seconds, created_at offset in seconds)
    plan = {
        "low-oldest-run": (0, -300, -10),
        "high-later-run": (5, -60, -10),
        "low-tie-created-first": (0, -120, -20),
        "low-tie-created-last": (0, -120, -5),
        "high-earlier-run": (5, -120, -1),
        "negative": (-1, -600, -30),
    }
    for token, (priority, run_at, created_at) in plan.items():
        job = record.enqueue(token=token, priority=priority)
        Job.objects.filter(pk=job.pk).update(
            run_at=now + timedelta(seconds=run_at), created_at=now + timedelta(seconds=created_at)
        )
    expected = [
        "high-earlier-run",
        "high-later-run",
        "low-oldest-run",
        "low-tie-created-first",
        "low-tie-created-last",
        "negative",
    ]
    # The documented order is the one Job.objects.due() gives...
    assert [job.data["token"] for job in Job.objects.due()] == expected
    run_burst(concurrency=1)
    # ... and the one in which the worker ran them.
    assert list(Execution.objects.order_by("pk").values_list("token", flat=True)) == expected


def test_job_not_yet_due_is_not_claimed_and_burst_still_exits():
    later = registry.get("jobsapp.echo").enqueue(delay=timedelta(hours=1))
    started = time.monotonic()
    worker = run_burst()
    assert time.monotonic() - started < 3
    assert worker.stats.claimed == 0
    assert status_of(later) == "scheduled"


def test_worker_with_queues_takes_only_jobs_of_those_queues():
    echo = registry.get("jobsapp.echo")
    mail = [echo.enqueue(queue="mail", n=n) for n in range(2)]
    other = [echo.enqueue(n=9), echo.enqueue(queue="reports", n=8)]
    worker = run_burst(queues=["mail"])
    assert worker.stats.claimed == 2
    assert [status_of(job) for job in mail] == ["succeeded", "succeeded"]
    assert [status_of(job) for job in other] == ["scheduled", "scheduled"]
    # A worker of every queue then takes the rest.
    run_burst()
    assert [status_of(job) for job in other] == ["succeeded", "succeeded"]


def test_job_disabled_in_code_is_not_claimed():
    disabled = Job.objects.create(name="jobsapp.disabled_job")
    enabled = registry.get("jobsapp.noop").enqueue()
    worker = run_burst()
    assert worker.stats.claimed == 1
    assert status_of(enabled) == "succeeded"
    assert status_of(disabled) == "scheduled"


def test_job_disabled_by_environment_is_not_claimed_until_enabled_again(monkeypatch):
    echo = registry.get("jobsapp.echo").enqueue(n=1)
    monkeypatch.setenv("JOBS_JOBSAPP_ECHO_ENABLED", "false")
    worker = run_burst()
    assert worker.stats.claimed == 0
    assert status_of(echo) == "scheduled"
    monkeypatch.setenv("JOBS_JOBSAPP_ECHO_ENABLED", "true")
    run_burst()
    assert status_of(echo) == "succeeded"


def test_claim_query_count_on_postgresql_is_fixed_for_a_batch():
    if connection.vendor != "postgresql":
        pytest.skip("the pinned count is PostgreSQL's (SKIP LOCKED path)")
    registry.get("jobsapp.noop").enqueue_many([{} for _ in range(10)])
    with CaptureQueriesContext(connection) as queries:
        rows = claim("test:1", 10)
    assert len(rows) == 10
    # Observed: 4 statements, whatever the batch size. BEGIN; one SELECT ... FOR UPDATE SKIP
    # LOCKED of the candidates (free lock keys checked by NOT EXISTS in that same query); one
    # UPDATE marking all of them running (one lease, one statement); COMMIT. Unlocked jobs need
    # no JobTypeLock query. A per-row query would make this 13+.
    kinds = [q["sql"].split()[0].upper() for q in queries]
    assert kinds == ["BEGIN", "SELECT", "UPDATE", "COMMIT"], [q["sql"] for q in queries]
    assert "SKIP LOCKED" in queries[1]["sql"]
    assert Job.objects.filter(status="running", worker="test:1").count() == 10


def test_max_jobs_claims_exactly_that_many_then_exits():
    echo = registry.get("jobsapp.echo")
    jobs = [echo.enqueue(n=n) for n in range(5)]
    worker = Worker(max_jobs=3, install_signals=False, scheduler=False)  # not burst
    thread = threading.Thread(target=lambda: setattr(worker, "code", worker.run()), daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():
        worker.stop(force=True)
        thread.join(timeout=10)
        pytest.fail("the worker did not exit after --max-jobs")
    assert worker.code == 0
    assert worker.stats.claimed == 3
    assert [status_of(job) for job in jobs].count("succeeded") == 3
    assert [status_of(job) for job in jobs].count("scheduled") == 2


def test_max_jobs_counts_claims_not_concurrency_slots():
    echo = registry.get("jobsapp.echo")
    for n in range(6):
        echo.enqueue(n=n)
    worker = run_burst(max_jobs=4, concurrency=3)
    assert worker.stats.claimed == 4
    assert Job.objects.filter(status="succeeded").count() == 4
    assert Job.objects.filter(status="scheduled").count() == 2


def test_burst_worker_exits_once_the_queue_is_empty():
    echo = registry.get("jobsapp.echo")
    jobs = [echo.enqueue(n=n) for n in range(3)]
    started = time.monotonic()
    worker = run_burst()
    assert time.monotonic() - started < 5
    assert worker.exit_code == 0
    assert worker.stats.claimed == 3
    assert [status_of(job) for job in jobs] == ["succeeded"] * 3


def test_burst_worker_on_an_empty_queue_exits_at_once():
    started = time.monotonic()
    worker = run_burst()
    assert time.monotonic() - started < 2
    assert worker.exit_code == 0
    assert worker.stats.claimed == 0
