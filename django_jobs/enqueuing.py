"""Turning calls into ``Job`` rows: options, JSON validation, uniqueness, bulk inserts.

Everything here writes through the jobs database alias inside the caller's transaction, so a
job enqueued in ``transaction.atomic()`` exists for workers only once that transaction commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import clock, payload
from .conf import jobs_settings
from .jobtypes import QUEUE_MAX_LENGTH, check_priority, registry
from .models import Job, JobStatus

if TYPE_CHECKING:
    from .jobtypes import JobType

#: Keyword arguments of ``enqueue()`` that are options, not payload.
ENQUEUE_OPTIONS = frozenset(
    {"run_at", "delay", "priority", "queue", "unique_key", "created_by", "meta"}
)


def enqueue(name: str, /, **data: Any) -> Job:
    """Enqueue the registered job ``name``; same options as ``fn.enqueue()``."""
    return enqueue_job(registry.get(name), data)


def enqueue_job(job_type: JobType, kwargs: dict[str, Any]) -> Job:
    options = {key: kwargs.pop(key) for key in list(kwargs) if key in ENQUEUE_OPTIONS}
    row = build_row(job_type, kwargs, **options)
    if row.unique_key is None:
        row.save(using=jobs_settings.DATABASE, force_insert=True)
    else:
        row = _save_unique(job_type, row)
    return _maybe_eager([row])[0]


def enqueue_many(
    job_type: JobType, payloads: Iterable[Mapping[str, Any]], **options: Any
) -> list[Job]:
    """One bulk ``INSERT`` for many payloads sharing ``options``; all or nothing."""
    unknown = set(options) - ENQUEUE_OPTIONS
    if unknown:
        raise TypeError(f"enqueue_many() got unknown options: {', '.join(sorted(unknown))}")
    now = clock.now()
    rows = []
    for index, data in enumerate(payloads):
        if not isinstance(data, Mapping):
            raise TypeError(
                f"enqueue_many() item {index} is {type(data).__name__}; each must be a dict"
            )
        rows.append(build_row(job_type, dict(data), now=now, what=f"payload[{index}]", **options))
    if not rows:
        return []
    db = jobs_settings.DATABASE
    if any(row.unique_key is not None for row in rows):
        # Uniqueness is decided row by row against what is already pending.
        with transaction.atomic(using=db):
            return _maybe_eager([_save_unique(job_type, row) for row in rows])
    return _maybe_eager(Job.objects.using(db).bulk_create(rows, batch_size=2000))


def _maybe_eager(rows: list[Job]) -> list[Job]:
    """In eager mode (``django_jobs.testing.eager()``) run the new rows at once, here."""
    from .inprocess import eager_state, run_eagerly

    state = eager_state()
    if not state.enabled:
        return rows
    return run_eagerly(rows, propagate=state.propagate)


def build_row(
    job_type: JobType,
    data: dict[str, Any],
    *,
    run_at: datetime | None = None,
    delay: timedelta | float | None = None,
    priority: int | None = None,
    queue: str | None = None,
    unique_key: str | None = None,
    created_by: Any = None,
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
    what: str = "payload",
) -> Job:
    """An unsaved ``Job`` for one call, or a clear error naming the bad argument."""
    now = now or clock.now()
    label = f"{what} of job {job_type.name!r}"
    payload.dumps(data, what=label, limit=jobs_settings.MAX_PAYLOAD_BYTES)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise TypeError(f"meta of job {job_type.name!r} must be a dict, not {type(meta).__name__}")
    payload.dumps(meta, what=f"meta of job {job_type.name!r}")
    if run_at is not None and delay is not None:
        raise TypeError("give run_at= or delay=, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise TypeError(f"run_at must be a datetime, not {type(run_at).__name__}")
        if timezone.is_naive(run_at):
            raise ValueError("run_at must be an aware datetime (use django.utils.timezone)")
    elif delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (timedelta, int, float)):
            raise TypeError(f"delay must be a timedelta or seconds, not {delay!r}")
        run_at = now + (delay if isinstance(delay, timedelta) else timedelta(seconds=delay))
    else:
        run_at = now
    if priority is None:
        priority = job_type.priority
    check_priority(priority)
    queue = job_type.queue if queue is None else queue
    if not isinstance(queue, str) or not queue or len(queue) > QUEUE_MAX_LENGTH:
        raise ValueError(f"queue must be a non-empty string of at most {QUEUE_MAX_LENGTH} chars")
    if unique_key is None and job_type.unique is not None:
        unique_key = job_type.name
    if unique_key is not None and (not isinstance(unique_key, str) or len(unique_key) > 255):
        raise ValueError("unique_key must be a string of at most 255 characters")
    created_by_id = getattr(created_by, "pk", created_by)
    return Job(
        name=job_type.name,
        data=data,
        queue=queue,
        priority=priority,
        run_at=run_at,
        created_at=now,
        max_attempts=job_type.max_attempts,
        unique_key=unique_key,
        lock_key=job_type.lock_key_for(data),
        created_by_id=created_by_id,
        meta=meta,
    )


def unique_slot(name: str, unique_key: str) -> str:
    """The value of ``Job.unique_slot``: unique keys are scoped to their job type."""
    return hashlib.sha256(f"{name}\0{unique_key}".encode()).hexdigest()


def _save_unique(job_type: JobType, row: Job) -> Job:
    """Apply ``unique``: "skip" keeps the pending job, "replace" cancels it for the new one.

    The unique constraint on ``unique_slot`` is what decides between racing callers; the
    savepoint lets the loser look again instead of aborting the caller's transaction.
    """
    db = jobs_settings.DATABASE
    policy = job_type.unique or "skip"
    for _ in range(5):
        with transaction.atomic(using=db):
            slot = unique_slot(job_type.name, row.unique_key)
            pending = Job.objects.using(db).scheduled().filter(unique_slot=slot)
            if policy == "skip":
                existing = pending.first()
                if existing is not None:
                    return existing
            else:
                pending.update(
                    status=JobStatus.CANCELLED,
                    unique_slot=None,
                    finished_at=clock.now(),
                    error="replaced by a newer job with the same unique key",
                )
            row.unique_slot = slot
            try:
                with transaction.atomic(using=db):
                    row.save(using=db, force_insert=True)
                return row
            except IntegrityError:
                row.unique_slot = None
                continue
    raise IntegrityError(f"could not enqueue {job_type.name!r}: unique key kept changing hands")
