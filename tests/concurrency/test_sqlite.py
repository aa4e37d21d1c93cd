"""SQLite only: a ``runjobs`` process wakes when another process commits a job (the watcher of
``PRAGMA data_version``), long before its next poll."""

from __future__ import annotations

import statistics
import time

import pytest

from django_jobs import registry
from django_jobs.models import Job

from .conftest import stop_all, vendor, wait_or_explain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.fixture(autouse=True)
def _sqlite_only():
    if vendor() != "sqlite":
        pytest.skip("SQLite only: PostgreSQL wakes workers with LISTEN/NOTIFY")


def test_a_change_to_the_database_file_wakes_an_idle_worker_process_at_once(worker):
    w = worker("--poll-interval", "30")
    time.sleep(1.0)  # idle: the main loop is inside its 30 s wait
    latencies = []
    for _ in range(10):
        job = registry.get("jobsapp.noop").enqueue()
        row = wait_or_explain(
            lambda job=job: Job.objects.filter(pk=job.pk, status="succeeded").first(), 10, w,
            what="the job did not run (no wake-up from the watcher?)",
        )
        latencies.append((row.started_at - row.created_at).total_seconds())
        time.sleep(0.1)
    median = statistics.median(latencies)
    print(f"\ndata_version wake-up latency (started_at - created_at), ms: "
          f"{[round(x * 1000) for x in latencies]}; median {median * 1000:.0f} ms")
    assert median < 0.5, (latencies, w.output())
    assert stop_all(w) == [0], w.output()
