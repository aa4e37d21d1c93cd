"""Prometheus metrics, read from the database at scrape time (the ``metrics`` extra).

Every figure comes from the job tables when Prometheus asks, so any web process can serve
them: the workers keep no counters of their own, and what the metrics say is what the
database says, whichever worker did the work. Each scrape runs a fixed handful of aggregate
queries over indexed ranges (due rows, running rows, rows finished in the last
``WINDOW_SECONDS``, worker rows).

Finished runs and run durations are over a sliding window, not counters since start-up: the
table is pruned (``keep=``), so a count over its rows would fall and look like a counter
reset. Read ``django_jobs_finished_recent`` and the ``django_jobs_run_duration_seconds``
histogram as "in the last five minutes" (no ``rate()``). docs/metrics.md has the list.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse

from . import clock
from .conf import jobs_settings
from .models import Job, PausedQueue, Worker

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # an optional dependency: say which extra brings it
    raise ImportError(
        "django_jobs.metrics needs prometheus_client: pip install 'django-rowjobs[metrics]'"
    ) from exc

#: The window of the finished-runs gauge and the duration histogram.
WINDOW_SECONDS = 300
#: Most finished runs one scrape reads for the duration histogram (the newest ones).
DURATION_SAMPLE = 10_000
#: Upper bounds of the duration histogram's buckets, in seconds.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))


class JobsCollector:
    """A custom collector: ``registry.register(JobsCollector())`` on any ``CollectorRegistry``."""

    def collect(self) -> Iterator[Metric]:
        now = clock.now()
        paused = set(PausedQueue.objects.values_list("queue", flat=True))

        due = Job.objects.alive().due_by_queue()
        depth = GaugeMetricFamily(
            "django_jobs_queue_due", "Scheduled jobs whose run_at has passed, per queue.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "django_jobs_queue_oldest_due_age_seconds",
            "How long the oldest due job of the queue has waited (0 when none is due).",
            labels=["queue"],
        )
        paused_gauge = GaugeMetricFamily(
            "django_jobs_queue_paused", "1 if the queue is paused.", labels=["queue"],
        )
        running = Job.objects.running_by_queue()
        running_gauge = GaugeMetricFamily(
            "django_jobs_running", "Running jobs, per queue.", labels=["queue"],
        )
        for queue in sorted(set(due) | set(running) | paused):
            n, oldest = due.get(queue, (0, None))
            depth.add_metric([queue], n)
            age.add_metric([queue], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
            paused_gauge.add_metric([queue], 1 if queue in paused else 0)
            running_gauge.add_metric([queue], running.get(queue, 0))
        yield depth
        yield age
        yield paused_gauge
        yield running_gauge

        since = now - timedelta(seconds=WINDOW_SECONDS)
        finished = GaugeMetricFamily(
            "django_jobs_finished_recent",
            f"Jobs that finished in the last {WINDOW_SECONDS} s, per job name and status.",
            labels=["name", "status"],
        )
        for name, status, n, _recent in Job.objects.finished_by_name(since, since):
            finished.add_metric([name, status], n)
        yield finished
        yield duration_histogram(Job.objects.run_times_since(since, DURATION_SAMPLE))

        states = Worker.objects.state_counts(jobs_settings.WORKER_LOST_AFTER)
        workers = GaugeMetricFamily(
            "django_jobs_workers",
            "Worker processes: beating (heard from within WORKER_LOST_AFTER), overdue (silent, "
            "not yet written off) and lost (written off, kept for an hour).",
            labels=["state"],
        )
        for state in ("beating", "overdue", "lost"):
            workers.add_metric([state], states[state])
        yield workers


def duration_histogram(rows: list[tuple[str, Any, Any]]) -> GaugeHistogramMetricFamily:
    """Run durations per job name, as a gauge histogram: buckets of the window's runs, which
    may shrink between scrapes (runs leave the window)."""
    family = GaugeHistogramMetricFamily(
        "django_jobs_run_duration_seconds",
        f"Run time (started to finished) of the jobs that finished in the last "
        f"{WINDOW_SECONDS} s, per job name.",
        labels=["name"],
    )
    counts: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    for name, started_at, finished_at in rows:
        seconds = max((finished_at - started_at).total_seconds(), 0.0)
        per_bucket = counts.setdefault(name, [0] * len(DURATION_BUCKETS))
        per_bucket[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        sums[name] = sums.get(name, 0.0) + seconds
    for name in sorted(counts):
        cumulative, buckets = 0, []
        for bound, n in zip(DURATION_BUCKETS, counts[name], strict=True):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))
        family.add_metric([name], buckets, gsum_value=sums[name])
    return family


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format. No access control of its own: see
    docs/metrics.md for serving it only to the scraper."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
