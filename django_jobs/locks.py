"""Per-type and per-key locks (``JobTypeLock``): take, release, and take over a dead holder's.

The table's primary key is the lock key, so two holders are impossible at the database level:
whoever inserts second gets an ``IntegrityError``, whatever the code above it believes.

A key taken by a worker process (``owner``) is held as long as the row exists: it goes with
the run's outcome, its release, or the recovery of its lost worker, in the same transaction.
A key taken without a process (runs in tests' eager mode) is held until ``locked_until``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q

from . import clock
from .conf import jobs_settings
from .models import JobTypeLock


def acquire(
    key: str,
    *,
    job_id: uuid.UUID,
    claim_id: uuid.UUID,
    worker: str,
    owner: uuid.UUID | None = None,
    until: datetime | None = None,
    slot_of: str | None = None,
    capacity: int | None = None,
) -> bool:
    """Take ``key`` (a lock key, or with ``slot_of`` a slot of that concurrency group) for
    this claim; ``True`` if taken. Call inside a transaction."""
    fields = {
        "job_id": job_id, "claim_id": claim_id, "worker": worker, "owner_id": owner,
        "locked_until": None if owner is not None else until, "slot_of": slot_of,
        "capacity": capacity,
    }
    # A key taken without a process and left past its time belonged to a run that ended
    # without releasing it: take it over.
    expired = Q(owner__isnull=True) & (
        Q(locked_until__isnull=True) | Q(locked_until__lte=clock.sql_now())
    )
    if JobTypeLock.objects.filter(expired, key=key).update(**fields):
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
