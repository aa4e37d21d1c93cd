"""The Prometheus metrics: what ``/metrics/`` says, parsed with prometheus_client's own parser
and checked against the rows the test made."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from django_jobs import clock
from django_jobs.metrics import WINDOW_SECONDS, JobsCollector
from django_jobs.models import Job, PausedQueue, Worker

pytestmark = pytest.mark.django_db


def scrape() -> dict[str, dict[tuple, float]]:
    """``{sample name: {sorted label items: value}}`` of one GET /metrics/."""
    response = Client().get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value
            )
    return samples


def finished(name: str, status: str, seconds: float, ago: timedelta) -> Job:
    end = timezone.now() - ago
    return Job.objects.create(name=name, status=status, started_at=end - timedelta(
        seconds=seconds), finished_at=end)


def test_queue_depth_oldest_due_age_running_and_paused_per_queue():
    now = timezone.now()
    Job.objects.create(name="jobsapp.echo", queue="mail", run_at=now - timedelta(minutes=2))
    Job.objects.create(name="jobsapp.echo", queue="mail", run_at=now - timedelta(seconds=5))
    Job.objects.create(name="jobsapp.echo", queue="mail", run_at=now + timedelta(hours=1))
    Job.objects.create(name="jobsapp.echo", queue="reports", status="running", started_at=now,
                       locked_until=now + timedelta(minutes=5))
    PausedQueue.objects.create(queue="idle")
    samples = scrape()
    assert samples["django_jobs_queue_due"] == {
        (("queue", "mail"),): 2.0, (("queue", "reports"),): 0.0, (("queue", "idle"),): 0.0}
    age = samples["django_jobs_queue_oldest_due_age_seconds"][(("queue", "mail"),)]
    assert 120 <= age < 130
    assert samples["django_jobs_running"][(("queue", "reports"),)] == 1.0
    assert samples["django_jobs_running"][(("queue", "mail"),)] == 0.0
    assert samples["django_jobs_queue_paused"] == {
        (("queue", "mail"),): 0.0, (("queue", "reports"),): 0.0, (("queue", "idle"),): 1.0}


def test_finished_runs_of_the_window_by_name_and_status():
    finished("jobsapp.echo", "succeeded", 1, timedelta(seconds=10))
    finished("jobsapp.echo", "succeeded", 1, timedelta(seconds=20))
    finished("jobsapp.echo", "failed", 1, timedelta(seconds=30))
    finished("jobsapp.explode", "failed", 1, timedelta(minutes=1))
    finished("jobsapp.echo", "succeeded", 1, timedelta(seconds=WINDOW_SECONDS + 60))  # too old
    samples = scrape()
    assert samples["django_jobs_finished_recent"] == {
        (("name", "jobsapp.echo"), ("status", "succeeded")): 2.0,
        (("name", "jobsapp.echo"), ("status", "failed")): 1.0,
        (("name", "jobsapp.explode"), ("status", "failed")): 1.0,
    }


def test_run_duration_histogram_per_name():
    for seconds in (0.05, 0.3, 2, 2, 45):
        finished("jobsapp.echo", "succeeded", seconds, timedelta(seconds=30))
    finished("jobsapp.explode", "failed", 4000, timedelta(seconds=30))
    # Cancelled before it started: it never ran, so it has no duration.
    Job.objects.create(name="jobsapp.echo", status="cancelled", finished_at=timezone.now())
    samples = scrape()
    buckets = samples["django_jobs_run_duration_seconds_bucket"]
    echo = {dict(labels)["le"]: value for labels, value in buckets.items()
            if dict(labels)["name"] == "jobsapp.echo"}
    assert echo == {"0.1": 1, "0.5": 2, "1.0": 2, "5.0": 4, "15.0": 4, "60.0": 5, "300.0": 5,
                    "900.0": 5, "3600.0": 5, "+Inf": 5}
    assert samples["django_jobs_run_duration_seconds_gcount"][(("name", "jobsapp.echo"),)] == 5
    total = samples["django_jobs_run_duration_seconds_gsum"][(("name", "jobsapp.echo"),)]
    assert total == pytest.approx(49.35, abs=0.01)
    explode = {dict(labels)["le"]: value for labels, value in buckets.items()
               if dict(labels)["name"] == "jobsapp.explode"}
    assert explode["3600.0"] == 0 and explode["+Inf"] == 1


def test_workers_beating_overdue_and_lost():
    now = clock.now()
    for pid, silent, state in ((1, 0, "running"), (2, 1, "stopping"), (3, 60, "running"),
                               (4, 600, "lost")):
        Worker.objects.create(host="h", pid=pid, state=state, started_at=now,
                              heartbeat_at=now - timedelta(seconds=silent))
    samples = scrape()
    assert samples["django_jobs_workers"] == {
        (("state", "beating"),): 2.0, (("state", "overdue"),): 1.0, (("state", "lost"),): 1.0}


def test_the_collector_runs_a_fixed_number_of_queries():
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            list(JobsCollector().collect())
        return len(captured)

    few = queries()
    for n in range(20):
        finished(f"jobsapp.name{n}", "succeeded", 1, timedelta(seconds=10))
        Job.objects.create(name=f"jobsapp.name{n}", queue=f"q{n}")
    assert queries() == few == 6
