"""PostgreSQL only: connections killed under a busy worker, and NOTIFY wake-ups."""

from __future__ import annotations

import statistics
import time

import pytest
from django.db import connection

from django_jobs import registry
from django_jobs.models import Job
from tests.jobsapp.models import Execution, Interval

from .conftest import stop_all, vendor, wait_or_explain, worker_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.fixture(autouse=True)
def _postgres_only():
    if vendor() != "postgresql":
        pytest.skip("PostgreSQL only: pg_terminate_backend and LISTEN/NOTIFY")


def _listening() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def _wake_latency(w) -> float:
    job = registry.get("jobsapp.noop").enqueue()
    row = wait_or_explain(
        lambda: Job.objects.filter(pk=job.pk, status="succeeded").first(), 10, w,
        what="the job did not run (no NOTIFY wake-up?)",
    )
    return (row.started_at - row.created_at).total_seconds()


def test_killed_connections_mid_job_worker_reconnects_finishes_and_relistens(worker):
    # A 30 s poll: a job enqueued later only starts quickly if LISTEN came back.
    w = worker("--poll-interval", "30")
    wait_or_explain(_listening, 10, w, what="the worker never LISTENed")
    job = registry.get("jobsapp.db_then_sleep_retried").enqueue(seconds=1.5, token="survived")
    wait_or_explain(lambda: Interval.objects.filter(job_id=job.pk).exists(), 15, w,
                    what="the job never started")
    with connection.cursor() as cursor:
        cursor.execute(TERMINATE)
        killed = len(cursor.fetchall())
    assert killed >= 2, "expected to kill at least the job's and the listener's connections"

    runs = Job.objects.for_name("jobsapp.db_then_sleep_retried")
    wait_or_explain(lambda: not runs.pending().exists(), 20, w, what="a run stayed pending")
    first = Job.objects.get(pk=job.pk)
    assert w.proc.poll() is None, w.output()
    if first.status == "succeeded":
        assert runs.count() == 1
        ran = first
    else:
        # The job's own query hit the dead connection: that is the job failing, and the
        # failure (the finish write) landed; the retry then ran on a fresh connection.
        assert first.status == "failed", (first.status, w.output())
        ran = runs.get(rescheduled_from=first.pk)
        assert ran.status == "succeeded" and ran.attempt == 2, (ran.error, w.output())
    assert ran.worker == worker_name(w)
    assert list(Execution.objects.values_list("token", "job_id")) == [("survived", ran.pk)]
    assert not Job.objects.running().exists()

    wait_or_explain(_listening, 10, w, what="LISTEN was not re-established")
    latency = _wake_latency(w)
    print(f"\nwake-up after the connections were killed: {latency * 1000:.0f} ms")
    assert latency < 1.0, w.output()
    assert stop_all(w) == [0], w.output()


def test_notify_wakes_an_idle_worker_at_once(worker):
    w = worker("--poll-interval", "30")
    wait_or_explain(_listening, 10, w, what="the worker never LISTENed")
    time.sleep(1.0)  # idle: the main loop is inside its 30 s wait
    latencies = [_wake_latency(w) for _ in range(10)]
    median = statistics.median(latencies)
    print(f"\nNOTIFY wake-up latency (started_at - created_at), ms: "
          f"{[round(x * 1000) for x in latencies]}; median {median * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
    assert median < 0.5, (latencies, w.output())
    assert stop_all(w) == [0], w.output()
