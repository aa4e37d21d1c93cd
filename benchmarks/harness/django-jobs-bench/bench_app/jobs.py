"""The job the harness adapter enqueues and runs.

``t`` is the producer's wall clock (epoch seconds) just before the ``enqueue_many`` call that
stored the row; the pickup latency is measured from it to the first line of the body, on the
same machine. ``pad`` only carries ``JOB_PAYLOAD_BYTES`` of payload.
"""

from __future__ import annotations

import os
import time

from django.dispatch import receiver

from django_jobs import JobContext, job
from django_jobs.signals import job_finished

from .telemetry import TELEMETRY

QUEUE = "harness"
WORK_S = max(0.0, float(os.environ.get("JOB_WORK_MS", "1")) / 1000.0)


# Three attempts: a run that was started on a worker that then died (SIGKILL in
# chaos_crash_recovery) is written off by a live worker and retried, as a deployment that
# cares about its jobs would configure it. Runs that were only prefetched go back to the
# queue without using an attempt.
@job(name="harness.bench_job", queue=QUEUE, max_attempts=3, retry_delay=1)
def bench_job(ctx: JobContext, seq: int, t: float, pad: str = "") -> None:
    TELEMETRY.picked_up((time.time() - t) * 1000.0)
    if WORK_S:
        time.sleep(WORK_S)


@receiver(job_finished)
def _count_outcome(sender, job, status, **kwargs) -> None:
    # Sent once the outcome is written: a completion counts when it is durable.
    if job.name == bench_job.name:
        TELEMETRY.finished(str(status))
