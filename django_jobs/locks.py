"""Per-type and per-key locks (``JobTypeLock``): take, take over when expired, release.

The table's primary key is the lock key, so two holders are impossible at the database level:
whoever inserts second gets an ``IntegrityError``, whatever the code above it believes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import IntegrityError, transaction

from .conf import jobs_settings
from .models import JobTypeLock


def acquire(
    key: str,
    *,
    job_id: uuid.UUID,
    claim_id: uuid.UUID,
    worker: str,
    until: datetime,
    now: datetime,
) -> bool:
    """Take ``key`` for this claim; ``True`` if taken. Call inside a transaction."""
    fields = {"job_id": job_id, "claim_id": claim_id, "worker": worker, "locked_until": until}
    # An expired lock belonged to a run whose worker stopped heartbeating: take it over.
    if JobTypeLock.objects.filter(key=key, locked_until__lte=now).update(updated_at=now, **fields):
        return True
    try:
        with transaction.atomic(using=jobs_settings.DATABASE):
            JobTypeLock.objects.create(key=key, **fields)
    except IntegrityError:
        return False
    return True


def release(key: str, claim_id: uuid.UUID | None) -> bool:
    """Free ``key`` if this claim still holds it."""
    return JobTypeLock.objects.filter(key=key, claim_id=claim_id).delete()[0] > 0
