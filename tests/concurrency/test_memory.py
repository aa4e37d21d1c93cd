"""Growth: thousands of jobs through one worker process, and its memory stays flat."""

from __future__ import annotations

import time

import pytest

from django_jobs import registry
from django_jobs.models import Job

from .conftest import rss_kb, stop_all, vendor, wait_or_explain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_memory_stays_flat_over_thousands_of_jobs_in_one_worker(worker):
    total = 1000 if vendor() == "sqlite" else 3000
    warmup = 500
    w = worker("--concurrency", "1")
    registry.get("jobsapp.noop").enqueue_many([{"n": i} for i in range(total)])
    done = Job.objects.for_name("jobsapp.noop").filter(status="succeeded")

    t0 = time.monotonic()
    wait_or_explain(lambda: done.count() >= warmup, 60, w, what="warm-up jobs did not run")
    after_warmup = rss_kb(w.pid)
    t1 = time.monotonic()
    wait_or_explain(lambda: done.count() == total, 120, w, what="not every job ran")
    at_end = rss_kb(w.pid)
    elapsed = time.monotonic() - t0
    growth_mb = (at_end - after_warmup) / 1024
    print(f"\n{vendor()}: {total} noop jobs through one worker in {elapsed:.1f}s "
          f"({total / elapsed:.0f} jobs/s, {(total - warmup) / (time.monotonic() - t1):.0f} "
          f"after warm-up); VmRSS {after_warmup / 1024:.1f} MB after {warmup}, "
          f"{at_end / 1024:.1f} MB at the end ({growth_mb:+.1f} MB)")
    assert growth_mb < 20, w.output()
    assert not Job.objects.exclude(status="succeeded").exists()
    assert stop_all(w) == [0], w.output()
