"""Example jobs: each shows one feature of django-jobs."""

import random
import time
from datetime import timedelta

from django_jobs import JobContext, job


@job(name="demo:heartbeat-report", cron="*/5 * * * *")
def heartbeat_report(ctx: JobContext) -> dict:
    """A cron job, every five minutes; locked by default (one run at a time, cluster-wide)."""
    from django_jobs.models import Job

    counts = {status: Job.objects.filter(status=status).count()
              for status in ("scheduled", "running", "succeeded", "failed")}
    ctx.log.info("queue: %s", counts)
    return counts


@job(timeout=timedelta(minutes=2))
def import_catalogue(ctx: JobContext, items: int = 40) -> dict:
    """Progress in weighted phases, ETA, and cooperative cancellation."""
    phases = ctx.phases({"download": 1, "import": 3})
    with phases("download") as phase:
        for i in range(10):
            ctx.check_cancelled()
            time.sleep(0.1)
            phase.progress((i + 1) / 10, message=f"chunk {i + 1}/10")
    with phases("import") as phase:
        for i in range(items):
            ctx.check_cancelled()  # raises JobCancelled when cancelled from the admin
            time.sleep(0.15)
            phase.progress((i + 1) / items, message=f"item {i + 1}/{items}")
    return {"imported": items}


@job(max_attempts=3, retry_delay=timedelta(seconds=2), retry_backoff=2.0)
def flaky_webhook(ctx: JobContext, url: str) -> str:
    """Fails on its first attempts, then succeeds: retries with backoff (2 s, then 4 s)."""
    if ctx.attempt < 3:
        raise ConnectionError(f"{url} did not answer (attempt {ctx.attempt})")
    return f"delivered to {url} on attempt {ctx.attempt}"


@job(lock=lambda data: str(data["customer_id"]))
def sync_customer(ctx: JobContext, customer_id: int) -> int:
    """A per-key lock: two syncs of one customer never overlap; different customers do."""
    time.sleep(random.uniform(0.2, 0.6))
    return customer_id


@job(lock=True)
def rebuild_search_index(ctx: JobContext) -> str:
    """A type lock: at most one rebuild runs at any moment, on any worker."""
    for step in range(5):
        ctx.progress((step + 1) / 5, message=f"segment {step + 1}/5")
        time.sleep(0.3)
    return "rebuilt"
