"""The one place that claims jobs.

The claim transaction only locks candidate rows, takes their lock keys and marks them running;
the jobs run after it commits. PostgreSQL and MariaDB use ``SELECT ... FOR UPDATE SKIP LOCKED``
so concurrent workers never wait on each other; SQLite has no row locks, so there the
transaction is ``IMMEDIATE`` (one writer at a time) and the update is guarded on the status.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime

from django.db import connections, transaction

from .. import clock, locks
from ..conf import jobs_settings
from ..execution import lease_margin
from ..jobtypes import registry
from ..models import Job, JobStatus


@contextmanager
def _immediate(connection):
    """On SQLite, take the write lock when the transaction begins, not halfway through."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        yield
        return
    # Connecting resets ``transaction_mode`` from OPTIONS: connect first, or the first claim
    # after a reconnect would begin DEFERRED and could fail with "database is locked".
    connection.ensure_connection()
    previous = getattr(connection, "transaction_mode", None)
    connection.transaction_mode = "IMMEDIATE"
    try:
        yield
    finally:
        connection.transaction_mode = previous


def claim(
    worker: str,
    limit: int,
    *,
    queues: Iterable[str] | None = None,
    exclude_names: Iterable[str] = (),
    exclude_queues: Iterable[str] = (),
    now: datetime | None = None,
    ids: Iterable[object] | None = None,
) -> list[Job]:
    """Claim up to ``limit`` due jobs for ``worker``; return them, marked running.

    ``ids`` restricts the claim to those rows (eager mode runs the row it just enqueued).
    """
    if limit < 1:
        return []
    db = jobs_settings.DATABASE
    connection = connections[db]
    now = now or clock.now()
    claim_id = uuid.uuid4()
    skip_locked = connection.features.has_select_for_update_skip_locked
    # Ask for a few more than needed: some may share a lock key.
    fetch = limit * 2 if limit > 1 else 1
    with _immediate(connection), transaction.atomic(using=db):
        filters = (tuple(sorted(queues or ())), tuple(sorted(exclude_names)),
                   tuple(sorted(exclude_queues)), fetch, skip_locked)
        if ids is None:
            rows = _compiled_candidates(db, *filters).fetch(now)
        else:
            rows = list(_candidates(db, now, *filters, ids=list(ids)))
        chosen: list[Job] = []
        keys: set[str] = set()
        for row in rows:
            if len(chosen) == limit:
                break
            timeout = registry.get(row.name).timeout if row.name in registry else None
            row.locked_until = now + (timeout or _default_timeout()) + lease_margin()
            if row.lock_key:
                if row.lock_key in keys or not locks.acquire(
                    row.lock_key, job_id=row.pk, claim_id=claim_id, worker=worker,
                    until=row.locked_until, now=now,
                ):
                    continue
                keys.add(row.lock_key)
            chosen.append(row)
        if not chosen:
            return []
        # One UPDATE per distinct lease (usually one): rows differ only by their timeout.
        by_lease: dict[datetime, list] = {}
        for row in chosen:
            by_lease.setdefault(row.locked_until, []).append(row.pk)
        for lease, ids in by_lease.items():
            Job.objects.filter(pk__in=ids, status=JobStatus.SCHEDULED).update(
                status=JobStatus.RUNNING, claim_id=claim_id, worker=worker, started_at=now,
                heartbeat_at=now, locked_until=lease, unique_slot=None,
            )
        if not skip_locked:
            # Without row locks the guarded UPDATE decides; read back what we won.
            # (By primary key: claim_id has no index, and the table may hold millions of rows.)
            won = set(
                Job.objects.filter(pk__in=[row.pk for row in chosen], claim_id=claim_id)
                .values_list("pk", flat=True)
            )
            chosen = [row for row in chosen if row.pk in won]
    for row in chosen:
        row.status = JobStatus.RUNNING
        row.claim_id = claim_id
        row.worker = worker
        row.started_at = row.heartbeat_at = now
        row.unique_slot = None
    return chosen


class _CompiledCandidates:
    """The claim's SELECT, compiled once for a worker's filters; only ``now`` changes.

    Building and compiling the queryset costs more Python time than the database takes to
    answer it, and that time is on the path from a NOTIFY to the job's start.
    """

    #: A stand-in instant, found again in the compiled parameters.
    MARKER = datetime(1999, 12, 31, 23, 59, 58, 123457, tzinfo=UTC)

    def __init__(self, db: str, *filters):
        self.db = db
        candidates = _candidates(db, self.MARKER, *filters)
        self.sql, params = candidates.query.get_compiler(using=db).as_sql()
        self.params = list(params)
        self.run_at = Job._meta.get_field("run_at")
        marker = self._adapt(self.MARKER)
        self.slots = [index for index, value in enumerate(self.params) if value == marker]
        if not self.slots:
            raise RuntimeError("the claim query does not compare with the current time")

    def _adapt(self, instant: datetime):
        return self.run_at.get_db_prep_value(instant, connections[self.db])

    def fetch(self, now: datetime) -> list[Job]:
        params = self.params.copy()
        value = self._adapt(now)
        for index in self.slots:
            params[index] = value
        return list(Job.objects.using(self.db).raw(self.sql, params))


def _candidates(db, now, queues, exclude_names, exclude_queues, fetch, skip_locked, ids=None):
    """The rows a claim looks at: claimable now, locked as they are read, ``fetch`` at most."""
    candidates = Job.objects.using(db).claimable(
        now, queues=queues, exclude_names=exclude_names, exclude_queues=exclude_queues
    )
    if ids is not None:
        candidates = candidates.filter(pk__in=ids)
    if skip_locked:
        candidates = candidates.select_for_update(skip_locked=True)
    return candidates[:fetch]


@functools.lru_cache(maxsize=64)
def _compiled_candidates(db, *filters) -> _CompiledCandidates:
    return _CompiledCandidates(db, *filters)


def _default_timeout():
    from datetime import timedelta

    return timedelta(minutes=5)
