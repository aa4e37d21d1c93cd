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
from datetime import UTC, datetime, timedelta

from django.db import connections, transaction
from django.utils import timezone

from .. import clock, locks
from ..conf import jobs_settings
from ..execution import DEFAULT_TIMEOUT, lease_margin
from ..models import LIVE_STATES, Job, JobStatus, JobTypeLock, Worker
from .limiting import Limiter, plan


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


class WrittenOff(Exception):
    """The claiming process's ``Worker`` row was written off as lost: it may claim nothing."""

    def __init__(self, owner: uuid.UUID) -> None:
        super().__init__(f"worker row {owner} was written off as lost")
        self.owner = owner


def claim(
    worker: str,
    limit: int,
    *,
    owner: uuid.UUID | None = None,
    queues: Iterable[str] | None = None,
    names: Iterable[str] | None = None,
    exclude_names: Iterable[str] = (),
    exclude_queues: Iterable[str] = (),
    exclude_paused: bool = False,
    now: datetime | None = None,
    ids: Iterable[object] | None = None,
    general: bool = False,
) -> list[Job]:
    """Claim up to ``limit`` due jobs for ``worker``; return them, marked running.

    ``owner`` is the claiming process's ``Worker`` row: the claim locks it in the same
    transaction, and raises ``WrittenOff`` if a peer wrote it off, so that a process judged
    lost can never take new work under its old identity (a peer's write-off waits for the
    claim, then finds the claimed rows and recovers them too). The lock writes nothing: the
    row's heartbeat is the monitor's, every ``HEARTBEAT_INTERVAL``, and a busy worker's
    claims add no row versions to it. Due-ness is decided by the
    database's clock. ``names`` restricts the claim to job names this process runs; ``ids``
    to given rows (eager mode runs the row it just enqueued); ``exclude_paused`` leaves out
    the queues paused at the time of the claim, read by the claim's own query (a worker's
    claims read no separate list). The rows are claimed, not
    started: ``Execution.begin()`` records the start. On PostgreSQL a process's claim is one
    statement while no limit applies (``_OneStatementClaim``); ``general`` forces the
    transaction.
    """
    if limit < 1:
        return []
    db = jobs_settings.DATABASE
    connection = connections[db]
    claim_id = uuid.uuid4()
    skip_locked = connection.features.has_select_for_update_skip_locked
    if (not general and skip_locked and connection.vendor == "postgresql" and owner is not None
            and ids is None
            and now is None and not clock.is_frozen() and not connection.in_atomic_block
            and not _queue_limits(names, queues)):
        filters = (tuple(sorted(queues or ())), _sorted_or_none(names),
                   tuple(sorted(exclude_names)), tuple(sorted(exclude_queues)), limit, True,
                   exclude_paused)
        rows, keyed = _one_statement_claim(db, filters).claim(worker, owner, claim_id)
        if not keyed:
            return rows
        # Rows with a lock key were among the first due: the general claim takes them in
        # their turn (and more rows without keys, for the slots left).
        return rows + claim(worker, limit - len(rows), owner=owner, queues=queues,
                            names=names, exclude_names=exclude_names,
                            exclude_queues=exclude_queues, exclude_paused=exclude_paused,
                            general=True)
    # Ask for a few more than needed: some may share a lock key.
    fetch = limit * 2 if limit > 1 else 1
    with _immediate(connection), transaction.atomic(using=db):
        if owner is not None and not Worker.objects.hold_if_live(owner):
            raise WrittenOff(owner)
        lease = None
        if owner is None:
            # Rows without a process behind them keep a lease until they start.
            lease = (now or clock.now()) + _default_timeout() + lease_margin()
        filters = (tuple(sorted(queues or ())), _sorted_or_none(names),
                   tuple(sorted(exclude_names)), tuple(sorted(exclude_queues)), fetch,
                   skip_locked, exclude_paused)
        id_list = None if ids is None else list(ids)
        if ids is not None or now is not None or clock.is_frozen():
            rows = list(_candidates(db, now, *filters, ids=id_list))
        else:
            rows = _compiled_candidates(db, connection.vendor, *filters).fetch()
        limits = plan(names, queues)
        limiter = None
        if limits is not None and any(limits.limits_of(row) for row in rows):
            # Rows with limits in the window: read what is in use. If some of its rows are at
            # their limit, read the window again without the keys and queues at their limit,
            # so that a key with a long backlog cannot starve the others.
            limiter = Limiter(limits, claim_id, worker, owner, lease)
            limiter.read_use()
            if any(limit.group in limiter.full_groups
                   for row in rows for limit in limits.limits_of(row)):
                filters = (*filters[:3], tuple(sorted({*exclude_queues, *limiter.full_queues})),
                           *filters[4:])
                rows = list(_candidates(db, now, *filters, ids=id_list,
                                        exclude_limit_keys=limiter.full_limit_keys))
        chosen: list[Job] = []
        keys: set[str] = set()
        for row in rows:
            if len(chosen) == limit:
                break
            if limiter is not None and not limiter.admit(row):
                continue
            if row.lock_key:
                if row.lock_key in keys or not locks.acquire(
                    row.lock_key, job_id=row.pk, claim_id=claim_id, worker=worker,
                    owner=owner, until=lease,
                ):
                    if limiter is not None:
                        limiter.forget(row)
                    continue
                keys.add(row.lock_key)
            chosen.append(row)
        if limiter is not None:
            chosen = limiter.take(chosen)
        if not chosen:
            return []
        Job.objects.filter(pk__in=[row.pk for row in chosen], status=JobStatus.SCHEDULED).update(
            status=JobStatus.RUNNING, claim_id=claim_id, owner=owner, worker=worker,
            started_at=None, heartbeat_at=clock.sql_now(), locked_until=lease, unique_slot=None,
        )
        if not skip_locked:
            # Without row locks the guarded UPDATE decides; read back what we won.
            # (By primary key: claim_id has no index, and the table may hold millions of rows.)
            won = set(
                Job.objects.filter(pk__in=[row.pk for row in chosen], claim_id=claim_id)
                .values_list("pk", flat=True)
            )
            lost_keys = [row.lock_key for row in chosen if row.pk not in won and row.lock_key]
            if lost_keys:
                # Keys taken for rows another worker won: give them back before commit, or
                # they would stay held by a claim that owns nothing.
                JobTypeLock.objects.filter(key__in=lost_keys, claim_id=claim_id).delete()
            if limiter is not None:
                lost = [row.pk for row in chosen if row.pk not in won]
                if lost:
                    JobTypeLock.objects.filter(job_id__in=lost, claim_id=claim_id).delete()
            chosen = [row for row in chosen if row.pk in won]
    for row in chosen:
        row.status = JobStatus.RUNNING
        row.claim_id = claim_id
        row.owner_id = owner
        row.worker = worker
        row.started_at = None
        row.locked_until = lease
        row.unique_slot = None
    return chosen


def _queue_limits(names: Iterable[str] | None, queues: Iterable[str] | None) -> bool:
    """Whether a queue this claim takes from has limits (every row of it may need a slot)."""
    limits = plan(names, queues)
    return limits is not None and bool(limits.queues)


class _OneStatementClaim:
    """The claim as one statement, on PostgreSQL, for rows without lock keys or limit keys.

    ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: the due rows are
    picked, locked, marked running under the claim and returned in one round trip, outside
    any transaction. The same statement locks the claiming process's row and takes rows only
    while that process is live, so a process written off by a peer claims nothing, as in the
    transaction of ``claim()``; it also says
    whether it was live, and how many of the rows it picked hold a lock key or a limit key:
    those are left to the general claim, in their turn, never skipped for later rows.
    Claims without a process behind them (``run_due_jobs()``, eager mode) keep the general
    path: their rows hold a lease.
    """

    def __init__(self, db: str, filters: tuple) -> None:
        self.db = db
        connection = connections[db]
        picked = _candidates(db, None, *filters).values("pk", "lock_key", "limit_key")
        # Django compiles FOR UPDATE only inside a transaction; the statement runs in one of
        # its own.
        with transaction.atomic(using=db):
            select_sql, select_params = picked.query.get_compiler(using=db).as_sql()
        quote = connection.ops.quote_name
        job, worker_table = quote(Job._meta.db_table), quote(Worker._meta.db_table)
        columns = ", ".join(f"claimed.{quote(f.column)}" for f in Job._meta.concrete_fields)
        live = ", ".join(["%s"] * len(LIVE_STATES))
        self.sql = (
            f"WITH me AS (SELECT id FROM {worker_table} "
            f"WHERE id = %s AND state IN ({live}) FOR UPDATE), "
            f"picked AS ({select_sql}), "
            f"claimed AS (UPDATE {job} AS claimed SET status = %s, claim_id = %s, "
            "owner_id = %s, worker = %s, started_at = NULL, "
            "heartbeat_at = STATEMENT_TIMESTAMP(), locked_until = NULL, unique_slot = NULL "
            "FROM picked WHERE claimed.id = picked.pk AND picked.lock_key IS NULL "
            "AND picked.limit_key IS NULL AND EXISTS (SELECT 1 FROM me) "
            f"RETURNING {columns}) "
            "SELECT claimed.*, (SELECT COUNT(*) FROM me) AS claimer_live, "
            "(SELECT COUNT(*) FROM picked WHERE lock_key IS NOT NULL "
            "OR limit_key IS NOT NULL) AS keyed "
            # One row even when nothing was claimed: it carries the two counts.
            "FROM (SELECT 1) AS one LEFT JOIN claimed ON TRUE"
        )
        self.select_params = list(select_params)

    def claim(
        self, worker: str, owner: uuid.UUID, claim_id: uuid.UUID
    ) -> tuple[list[Job], bool]:
        """The rows claimed, and whether rows with keys were in the way (the general claim
        must look). Raises ``WrittenOff`` as ``claim()`` does."""
        params = [owner, *LIVE_STATES, *self.select_params, JobStatus.RUNNING, claim_id, owner,
                  worker]
        found = list(Job.objects.using(self.db).raw(self.sql, params))
        if not found[0].claimer_live:
            raise WrittenOff(owner)
        return [row for row in found if row.pk is not None], bool(found[0].keyed)


@functools.lru_cache(maxsize=64)
def _one_statement_claim(db: str, filters: tuple) -> _OneStatementClaim:
    return _OneStatementClaim(db, filters)


def _sorted_or_none(names: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(sorted(names))


class _CompiledCandidates:
    """The claim's SELECT, compiled once for a worker's filters.

    Building and compiling the queryset costs more Python time than the database takes to
    answer it, and that time is on the path from a NOTIFY to the job's start. On PostgreSQL
    and MariaDB the query reads the database's clock itself, so it never changes; SQLite's
    clock is this host's, sent as a parameter that is replaced at each fetch.
    """

    #: A stand-in instant, found again in the compiled parameters (SQLite).
    MARKER = datetime(1999, 12, 31, 23, 59, 58, 123457, tzinfo=UTC)

    def __init__(self, db: str, vendor: str, *filters):
        self.db = db
        connection = connections[db]
        self.substitute = vendor not in ("postgresql", "mysql")
        now = self.MARKER if self.substitute else None
        candidates = _candidates(db, now, *filters)
        self.sql, params = candidates.query.get_compiler(using=db).as_sql()
        self.params = list(params)
        self.run_at = Job._meta.get_field("run_at")
        self.slots: list[int] = []
        if self.substitute:
            marker = self.run_at.get_db_prep_value(self.MARKER, connection)
            self.slots = [index for index, value in enumerate(self.params) if value == marker]
            if not self.slots:
                raise RuntimeError("the claim query does not compare with the current time")

    def fetch(self) -> list[Job]:
        params = self.params
        if self.slots:
            params = params.copy()
            value = self.run_at.get_db_prep_value(timezone.now(), connections[self.db])
            for index in self.slots:
                params[index] = value
        return list(Job.objects.using(self.db).raw(self.sql, params))


def _candidates(
    db, now, queues, names, exclude_names, exclude_queues, fetch, skip_locked,
    exclude_paused=False, ids=None, exclude_limit_keys=(),
):
    """The rows a claim looks at: claimable now, locked as they are read, ``fetch`` at most."""
    candidates = Job.objects.using(db).claimable(
        now, queues=queues, names=names, exclude_names=exclude_names,
        exclude_queues=exclude_queues, exclude_limit_keys=exclude_limit_keys,
        exclude_paused=exclude_paused,
    )
    if ids is not None:
        candidates = candidates.filter(pk__in=ids)
    if skip_locked:
        candidates = candidates.select_for_update(skip_locked=True)
    return candidates[:fetch]


@functools.lru_cache(maxsize=64)
def _compiled_candidates(db, vendor, *filters) -> _CompiledCandidates:
    return _CompiledCandidates(db, vendor, *filters)


def _default_timeout() -> timedelta:
    return DEFAULT_TIMEOUT
