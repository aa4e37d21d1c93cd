"""Rescue: rows left running by workers that died (or froze) past their lease.

Any live worker may do it. The update re-checks status, claim and lease in its WHERE clause, so a
job that finished between the sweep's read and its write is never reopened, and of several
rescuers exactly one wins each row.
"""

from __future__ import annotations

import logging
from datetime import datetime

from .. import clock
from ..execution import Outcome, call_hook, record_outcome
from ..jobtypes import registry
from ..models import Job

logger = logging.getLogger("django_jobs")

BATCH = 100


def rescue_stale(now: datetime | None = None) -> list[Job]:
    """Fail every stale row (retrying it if attempts remain); return those this call rescued."""
    now = now or clock.now()
    rescued = []
    for job in Job.objects.stale(now).order_by("locked_until")[:BATCH]:
        outcome = Outcome.failed(
            f"worker lost: {job.worker or 'its worker'} stopped sending heartbeats and the "
            f"lease ran out at {job.locked_until.isoformat()}"
        )
        if not record_outcome(job, job.claim_id, outcome, guard={"locked_until__lt": now}):
            continue  # it finished, or another worker rescued it first
        logger.warning("[%s] %s rescued: %s", job.name, job.pk, outcome.error)
        rescued.append(job)
        job_type = registry.get(job.name) if job.name in registry else None
        if job_type is not None and job_type.on_stale is not None:
            call_hook(job_type.on_stale, job, None, "on_stale")
    return rescued
