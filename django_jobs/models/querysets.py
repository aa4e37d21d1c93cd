"""The query vocabulary of django-jobs. The worker, the admin and the API ask through these."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.apps import apps
from django.db import IntegrityError, connections, models, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    DateTimeField,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest, Left, Trunc

from .. import clock
from ..conf import jobs_settings
from ..exceptions import AmbiguousJobId, JobNotFound
from ..ids import SHORT_ID_MIN, dashed_prefix, id_prefix_range

#: Characters of ``error`` the admin reads for the first line and the exception class.
ERROR_HEAD_LENGTH = 300

T = TypeVar("T")

#: The error of a pending job cancelled by ``unique="replace"``.
REPLACED = "replaced by a newer job with the same unique key"

STATUSES = ("waiting", "scheduled", "running", "succeeded", "failed", "cancelled", "skipped")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled", "skipped")


@dataclass(frozen=True)
class StatusCount:
    """Rows of one status: exact, estimated by the database's statistics, or "more than"."""

    status: str
    count: int
    estimated: bool = False  # from PostgreSQL's statistics: "about count"
    capped: bool = False  # counting stopped at count: "more than count - 1"


#: States of a worker process that may still beat (``models.worker.LIVE_STATES``).
_LIVE_STATES = ("running", "stopping")


def _model(name: str):
    """A model of this app, by name: the models' modules import this one for their managers,
    so the classes are looked up in Django's app registry when a query is built."""
    return apps.get_model("django_jobs", name)


def _now(now: datetime | None) -> datetime | Expression:
    """``now`` if given, else the database's current time in SQL (see ``django_jobs.clock``)."""
    return now if now is not None else clock.sql_now()


def id_prefix_q(prefix: str, using: str) -> Q | None:
    """The condition "the id starts with ``prefix``", or ``None`` if it is not hex.

    A range on the primary key where the engine orders UUIDs as their text reads (``uuid`` on
    PostgreSQL, ``char(32)`` elsewhere): it uses the primary key's index. MariaDB's own
    ``uuid`` type (10.7+) orders version 1-5 UUIDs by swapped groups, so there the text of
    the id is matched instead.
    """
    bounds = id_prefix_range(prefix)
    if bounds is None:
        return None
    connection = connections[using]
    if connection.vendor == "mysql" and connection.features.has_native_uuid_field:
        return Q(pk__startswith=dashed_prefix(prefix))
    return Q(pk__range=bounds)


def get_by_id(queryset: models.QuerySet, value: object, noun: str) -> models.Model:
    """The row of ``queryset`` with this id, or a unique prefix of it (see
    ``JobQuerySet.get_by_id()``); ``noun`` names the rows in errors."""
    if isinstance(value, uuid.UUID):
        full = value
    else:
        text = str(value).strip()
        try:
            full = uuid.UUID(text)
        except ValueError:
            full = None
    if full is not None:
        row = queryset.filter(pk=full).first()
        if row is None:
            raise JobNotFound(f"no {noun} with id {full}")
        return row
    if id_prefix_range(text) is None:
        raise JobNotFound(
            f"{text!r} is not a {noun} id: give the UUID or its first {SHORT_ID_MIN} or more "
            "hex characters"
        )
    if len(text.replace("-", "")) < SHORT_ID_MIN:
        raise ValueError(
            f"{noun} id {text!r} is too short: give at least {SHORT_ID_MIN} hex characters "
            "(the admin and the jobs command show 8)"
        )
    match = id_prefix_q(text, queryset.db)
    by_prefix = queryset.none() if match is None else queryset.filter(match)
    found = list(by_prefix[:2])
    if not found:
        raise JobNotFound(f"no {noun} id starts with {text!r}")
    if len(found) > 1:
        raise AmbiguousJobId(
            f"{noun} id {text!r} is ambiguous: {by_prefix.count()} {noun}s start with it; "
            "give more characters"
        )
    return found[0]


class JobQuerySet(models.QuerySet):
    def alive(self) -> JobQuerySet:
        """Rows that are not soft-deleted."""
        return self.filter(deleted_at__isnull=True)

    def scheduled(self) -> JobQuerySet:
        return self.filter(status="scheduled")

    def running(self) -> JobQuerySet:
        return self.filter(status="running")

    def waiting(self) -> JobQuerySet:
        """Rows enqueued after others that have not all ended yet: never claimed."""
        return self.filter(status="waiting")

    def pending(self) -> JobQuerySet:
        """Waiting, scheduled or running: not finished yet."""
        return self.filter(status__in=("waiting", "scheduled", "running"))

    def in_workflow(self, workflow_id) -> JobQuerySet:
        return self.filter(workflow=workflow_id)

    def last_attempts(self) -> JobQuerySet:
        """Rows no retry was made from: in a workflow, the attempt that stands for its member."""
        return self.filter(~Exists(self.model.objects.filter(rescheduled_from=OuterRef("pk"))))

    def workflow_member_counts(
        self, workflow_ids: Iterable[object]
    ) -> list[tuple[uuid.UUID, str, int, float]]:
        """``(workflow id, status, members, their summed progress)`` for these workflows'
        members (their last attempts): one grouped query for a page of workflows."""
        return list(
            self.filter(workflow__in=list(workflow_ids)).last_attempts().order_by()
            .values("workflow", "status").annotate(n=Count("pk"), progress=Sum("progress"))
            .values_list("workflow", "status", "n", "progress")
        )

    def pending_occurrences(self) -> JobQuerySet:
        """Rows the scheduler created for a recurring job's occurrence, not finished yet."""
        return self.pending().filter(occurrence__isnull=False)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)

    def for_name(self, name: str) -> JobQuerySet:
        return self.filter(name=name)

    def with_id_prefix(self, prefix: str) -> JobQuerySet:
        """Rows whose id starts with ``prefix`` (the 8 characters the admin and CLI show)."""
        match = id_prefix_q(prefix, self.db)
        return self.none() if match is None else self.filter(match)

    def get_by_id(self, job_id: object) -> models.Model:
        """The job with this id, or a unique prefix of it (at least 4 hex characters).

        Raises ``JobNotFound`` (no such job, not an id), ``AmbiguousJobId`` (the prefix names
        several jobs) or ``ValueError`` (a prefix too short to mean anything).
        """
        return get_by_id(self, job_id, "job")

    def in_queues(self, queues: Iterable[str] | None) -> JobQuerySet:
        queues = list(queues or ())
        return self.filter(queue__in=queues) if queues else self

    def due(self, now: datetime | None = None) -> JobQuerySet:
        """Scheduled rows whose time has come, in the order the worker takes them."""
        return self.scheduled().filter(run_at__lte=_now(now)).order_by(
            "-priority", "run_at", "created_at"
        )

    def claimable(
        self,
        now: datetime | None = None,
        *,
        queues: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        exclude_names: Iterable[str] = (),
        exclude_queues: Iterable[str] = (),
        exclude_limit_keys: Iterable[str] = (),
        exclude_paused: bool = False,
    ) -> JobQuerySet:
        """Due rows that a worker may start now: their lock key, if any, is free.

        ``names`` (when given) are the only job names taken: a worker runs what its code
        registers, and leaves other rows to the workers that know them.
        ``exclude_limit_keys`` are limit keys at their limit: their rows are left out before
        the claim's window is cut, so that one busy key cannot fill it.
        ``exclude_paused`` leaves out the rows of paused queues, read by the same query.
        """
        JobTypeLock = _model("JobTypeLock")
        now = _now(now)
        held = JobTypeLock.objects.filter(key=OuterRef("lock_key")).filter(
            Q(owner__isnull=False) | Q(locked_until__gt=now)
        )
        qs = self.due(now).in_queues(queues).filter(~Exists(held))
        if names is not None:
            qs = qs.filter(name__in=list(names))
        exclude_names = list(exclude_names)
        if exclude_names:
            qs = qs.exclude(name__in=exclude_names)
        exclude_queues = list(exclude_queues)
        if exclude_queues:
            qs = qs.exclude(queue__in=exclude_queues)
        exclude_limit_keys = list(exclude_limit_keys)
        if exclude_limit_keys:
            # NOT IN alone would drop the rows without a limit key (NULL NOT IN ... is NULL).
            qs = qs.filter(Q(limit_key__isnull=True) | ~Q(limit_key__in=exclude_limit_keys))
        if exclude_paused:
            paused = _model("PausedQueue").objects.filter(queue=OuterRef("queue"))
            qs = qs.filter(~Exists(paused))
        return qs

    def started_since(self, since: datetime) -> JobQuerySet:
        """Rows a worker started (claimed) at or after ``since``."""
        return self.filter(started_at__gte=since)

    def with_retry_state(self) -> JobQuerySet:
        """Annotate ``retry_pending``: a later run made from this one is scheduled or running.

        What tells "failed, will retry" from a final failure; one indexed lookup per row.
        """
        pending = self.model.objects.filter(
            rescheduled_from=OuterRef("pk"), status__in=("scheduled", "running")
        )
        return self.annotate(retry_pending=Exists(pending))

    def with_pause_state(self) -> JobQuerySet:
        """Annotate ``queue_paused`` and ``schedule_paused`` (a paused recurring job)."""
        # By name from the app registry: those models' module imports this one.
        paused_queue = apps.get_model("django_jobs", "PausedQueue")
        schedule = apps.get_model("django_jobs", "JobSchedule")
        return self.annotate(
            queue_paused=Exists(paused_queue.objects.filter(queue=OuterRef("queue"))),
            schedule_paused=Exists(schedule.objects.filter(name=OuterRef("name"), paused=True)),
        )

    def with_error_head(self, length: int = ERROR_HEAD_LENGTH) -> JobQuerySet:
        """Annotate ``error_head``: the start of ``error``, without reading whole tracebacks."""
        return self.annotate(error_head=Left("error", length))

    def due_by_queue(self, now: datetime | None = None) -> dict[str, tuple[int, datetime]]:
        """``{queue: (due rows, the oldest due run_at)}``: one grouped query on the due index."""
        rows = self.due(now).order_by().values("queue").annotate(n=Count("pk"), oldest=Min(
            "run_at"
        ))
        return {row["queue"]: (row["n"], row["oldest"]) for row in rows}

    def running_by_queue(self) -> dict[str, int]:
        """``{queue: running rows}``: one grouped query on the running rows' partial index."""
        rows = self.running().order_by().values("queue").annotate(n=Count("pk"))
        return {row["queue"]: row["n"] for row in rows}

    def finished_since(self, since: datetime | Expression) -> JobQuerySet:
        """Finished rows that ended at or after ``since`` (a range on ``django_jobs_finished``)."""
        return self.finished().filter(finished_at__gte=since)

    def finished_per_period(
        self, since: datetime, period: str
    ) -> list[tuple[datetime, str, int]]:
        """``(start of the period, status, rows)`` of rows finished since ``since``, grouped
        by ``period`` ("minute", "hour") in the database: one query, whatever the rows.

        Periods are cut in UTC: no engine needs time zone tables, and every zone whose offset
        is whole hours sees the same minutes and hours.
        """
        rows = (
            self.finished_since(since).order_by()
            .annotate(period=Trunc("finished_at", period, tzinfo=UTC))
            .values("period", "status").annotate(n=Count("pk"))
            .values_list("period", "status", "n")
        )
        return [(start, status, n) for start, status, n in rows]

    def finished_by_name(
        self, since: datetime, recent: datetime
    ) -> list[tuple[str, str, int, int]]:
        """``(name, status, rows since since, rows since recent)``: one grouped query."""
        rows = (
            self.finished_since(since).order_by().values("name", "status")
            .annotate(n=Count("pk"), recent=Count("pk", filter=Q(finished_at__gte=recent)))
            .values_list("name", "status", "n", "recent")
        )
        return list(rows)

    def run_times_since(
        self, since: datetime | Expression, limit: int
    ) -> list[tuple[str, datetime, datetime]]:
        """``(name, started_at, finished_at)`` of the newest ``limit`` runs finished since
        ``since`` that had started (a cancelled scheduled row never ran)."""
        return list(
            self.finished_since(since).filter(started_at__isnull=False)
            .order_by("-finished_at").values_list("name", "started_at", "finished_at")[:limit]
        )

    def oldest_due_run_at(
        self, now: datetime | None = None, exclude_queues: Iterable[str] = ()
    ) -> datetime | None:
        """The ``run_at`` of the due row that has waited longest, outside ``exclude_queues``."""
        qs = self.due(now)
        exclude_queues = list(exclude_queues)
        if exclude_queues:
            qs = qs.exclude(queue__in=exclude_queues)
        return qs.order_by("run_at").values_list("run_at", flat=True).first()

    def table_estimate(self) -> int | None:
        """The engine's own estimate of the rows in the job table, without counting them:
        ``reltuples`` on PostgreSQL, ``TABLE_ROWS`` on MariaDB/MySQL; ``None`` elsewhere or
        when the table was never analysed."""
        connection = connections[self.db]
        table = self.model._meta.db_table
        if connection.vendor == "postgresql":
            query = "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass"
            params = [connection.ops.quote_name(table)]
        elif connection.vendor == "mysql":
            query = (
                "SELECT TABLE_ROWS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
            )
            params = [table]
        else:
            return None
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            row = cursor.fetchone()
        if row is None or row[0] is None or row[0] < 0:
            return None
        return int(row[0])

    def status_estimates(self) -> dict[str, int]:
        """Rows per status from PostgreSQL's column statistics (``pg_stats``): the share of
        each common value times the table's estimated rows. Empty elsewhere, or before the
        table was analysed."""
        connection = connections[self.db]
        if connection.vendor != "postgresql":
            return {}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.reltuples::bigint, s.most_common_vals::text::text[], "
                "s.most_common_freqs FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace JOIN pg_stats s ON s.schemaname = n.nspname "
                "AND s.tablename = c.relname WHERE c.oid = %s::regclass AND s.attname = 'status'",
                [connection.ops.quote_name(self.model._meta.db_table)],
            )
            row = cursor.fetchone()
        if row is None or row[0] is None or row[0] < 0 or row[1] is None:
            return {}
        total, values, shares = row
        return {value: round(total * share) for value, share in zip(values, shares, strict=True)}

    def status_counts(self, cap: int) -> list[StatusCount]:
        """Rows per status of the whole table, cheap on a large one.

        Up to ``cap`` rows (by the engine's estimate, or a count that stops at ``cap + 1``),
        one exact grouped count. Past it: PostgreSQL's statistics ("about N") for the
        finished statuses and, on every engine, counts that stop at ``cap + 1`` for the rest
        (scheduled and running rows have partial indexes; on MariaDB every index on
        ``status`` is whole). A fixed number of queries, however many rows.
        """
        size = self.table_estimate()
        if size is None:
            size = self.order_by().values("pk")[: cap + 1].count()
        if size <= cap:
            exact = dict(
                self.order_by().values("status").annotate(n=Count("pk"))
                .values_list("status", "n")
            )
            return [StatusCount(status, exact.get(status, 0)) for status in STATUSES]
        estimates = self.status_estimates()
        counts = []
        for status in STATUSES:
            if status in FINISHED_STATUSES and status in estimates:
                counts.append(StatusCount(status, estimates[status], estimated=True))
                continue
            n = self.filter(status=status).order_by().values("pk")[: cap + 1].count()
            counts.append(StatusCount(status, n, capped=n > cap))
        return counts

    def failed_since(self, since: datetime) -> JobQuerySet:
        """Failed rows that ended at or after ``since``, newest first."""
        return self.filter(status="failed", finished_at__gte=since).order_by("-finished_at")

    def runs_after(self, job_id, depth: int = 20) -> list[models.Model]:
        """The runs rescheduled from ``job_id``, from theirs, and so on: ``depth`` hops at most,
        one query per hop (a chain is a handful of retries)."""
        found: list[models.Model] = []
        frontier, seen = [job_id], {job_id}
        for _ in range(depth):
            later = [job for job in self.filter(rescheduled_from__in=frontier)
                     .only("id", "name", "status", "attempt", "created_at",
                           "cancel_requested_at", "rescheduled_from_id")
                     .order_by("created_at") if job.pk not in seen]
            if not later:
                break
            found.extend(later)
            frontier = [job.pk for job in later]
            seen.update(frontier)
        return found

    def stale(self, now: datetime | None = None) -> JobQuerySet:
        """Running rows without a worker process whose lease ran out (``fn.run()`` in tests'
        eager mode and rows written before worker processes had rows)."""
        return self.running().filter(owner__isnull=True, locked_until__lt=_now(now))

    def owned_by(self, owners: Iterable[object]) -> JobQuerySet:
        """Running rows claimed by these worker processes."""
        return self.running().filter(owner__in=list(owners))

    def orphaned(self) -> JobQuerySet:
        """Running rows whose worker process is neither running nor stopping: lost, or gone."""
        Worker = _model("Worker")
        live = Worker.objects.filter(pk=OuterRef("owner_id"), state__in=_LIVE_STATES)
        return self.running().filter(owner__isnull=False).filter(~Exists(live))

    def latest_for(self, name: str) -> models.Model | None:
        """The most recently created run of ``name``, or ``None``."""
        return self.for_name(name).alive().order_by("-created_at").first()

    def next_run_by_name(self, names: Iterable[str]) -> dict[str, datetime]:
        """The earliest scheduled ``run_at`` of each of ``names``, in one grouped query."""
        rows = (
            self.scheduled().filter(name__in=list(names)).order_by()
            .values("name").annotate(next_run=Min("run_at"))
        )
        return {row["name"]: row["next_run"] for row in rows}

    def last_finished_by_name(self, names: Iterable[str]) -> dict[str, models.Model]:
        """The latest finished run of each of ``names``: two queries, however many names.

        Payload, result, error and meta are deferred; these rows are for summaries.
        """
        latest = (
            self.finished().filter(name__in=list(names)).order_by()
            .values("name").annotate(last=Max("finished_at"))
        )
        match = Q()
        for row in latest:
            if row["last"] is not None:
                match |= Q(name=row["name"], finished_at=row["last"])
        if not match:
            return {}
        found: dict[str, models.Model] = {}
        rows = self.finished().filter(match).defer("data", "result", "error", "meta")
        for job in rows.order_by("name", "-created_at"):
            found.setdefault(job.name, job)
        return found

    def cancel(self, now: datetime | None = None) -> tuple[int, int]:
        """Cancel these jobs: scheduled ones at once, running ones by request.

        Returns ``(cancelled, requested)``. A running job sees the request through
        ``ctx.cancelled`` and ends ``cancelled`` when it raises ``JobCancelled``.
        """
        now = _now(now)
        cancelled = self.filter(status__in=("waiting", "scheduled")).update(
            status="cancelled", finished_at=now, cancel_requested_at=now, unique_slot=None,
            error="cancelled before it started",
        )
        requested = self.running().filter(cancel_requested_at__isnull=True).update(
            cancel_requested_at=now
        )
        return cancelled, requested

    def next_run_at(self) -> datetime | None:
        """The earliest ``run_at`` among these rows (an index lookup with ``scheduled()``)."""
        return self.order_by("run_at").values_list("run_at", flat=True).first()

    def prunable(self, older_than: datetime) -> JobQuerySet:
        """Finished rows that ended before ``older_than``."""
        return self.finished().filter(finished_at__lt=older_than)

    def hold_unique_slot(
        self, slot: str, write: Callable[[], T], *, replace: bool, now: datetime | None = None
    ) -> tuple[models.Model | None, T | None]:
        """Apply a unique policy, then ``write()``, which makes one row scheduled in ``slot``.

        Returns ``(holder, None)`` when "skip" (``replace=False``) keeps the scheduled row that
        already holds ``slot``: ``write`` is not called. Otherwise any such row is cancelled
        ("replace") and ``(None, write())`` is returned. The unique constraint on
        ``unique_slot`` decides between racing callers: the loser's write fails inside its own
        savepoint and it looks again, so the caller's transaction is never aborted.
        """
        for _ in range(5):
            with transaction.atomic(using=self.db):
                pending = self.scheduled().filter(unique_slot=slot)
                if not replace:
                    holder = pending.first()
                    if holder is not None:
                        return holder, None
                else:
                    pending.update(
                        status="cancelled", unique_slot=None, finished_at=_now(now),
                        error=REPLACED,
                    )
                try:
                    with transaction.atomic(using=self.db):
                        return None, write()
                except IntegrityError:
                    continue
        raise IntegrityError(f"unique slot {slot} kept changing hands; nothing was written")

    def insert_scheduled(self, row: models.Model, *, replace: bool) -> models.Model:
        """Insert the scheduled ``row``; with a unique slot, under its job type's policy.

        Returns ``row``, or under "skip" the pending row that already holds the same key.
        """
        if row.unique_slot is None:
            row.save(using=self.db, force_insert=True)
            return row
        holder, _ = self.hold_unique_slot(
            row.unique_slot, lambda: row.save(using=self.db, force_insert=True), replace=replace
        )
        return holder or row

    def claimed_by(self, job_id, claim_id) -> JobQuerySet:
        """The fence: this row, only while the claim ``claim_id`` still owns it."""
        return self.filter(pk=job_id, status="running", claim_id=claim_id)

    def start_claimed(self, job_id, claim_id, *, locked_until: datetime | None = None) -> bool:
        """Write a claimed run's start, fenced as ``claimed_by``: ``started_at`` and
        ``heartbeat_at`` by the database's clock, and the lease ``locked_until`` when given.
        Whether the row was still ours.

        Every run writes this before its code, so it is written by hand rather than built by
        the ORM each time: building the ``UPDATE`` took a third of a worker's Python time per
        no-op job (py-spy, 4 threads on PostgreSQL), the statement is the same.
        """
        self._unfiltered("start_claimed")
        if claim_id is None:  # a row marked running by hand: the fence is "claim_id IS NULL"
            lease = {} if locked_until is None else {"locked_until": locked_until}
            return self.claimed_by(job_id, None).update(
                started_at=clock.sql_now(), heartbeat_at=clock.sql_now(), **lease) == 1
        connection = connections[self.db]
        now, now_params = clock.now_sql(connection)
        meta = self.model._meta
        params = [*now_params, *now_params]
        if locked_until is not None:
            params.append(meta.get_field("locked_until").get_db_prep_value(locked_until,
                                                                           connection))
        params += _fence_params(connection, meta, job_id, claim_id)
        lease = locked_until is not None

        def sets(column: Callable[[str], str]) -> list[str]:
            lease_set = [f"{column('locked_until')} = %s"] if lease else []
            return [f"{column('started_at')} = {now}", f"{column('heartbeat_at')} = {now}",
                    *lease_set]

        sql = _fenced_update(connection, meta, ("start", now, lease), sets)
        return self._write_one(connection, sql, params)

    def end_claimed(self, job_id, claim_id, finished_at: datetime, fields: dict[str, Any]) -> bool:
        """Write a run's ending, fenced as ``claimed_by``: ``fields`` (plain values) and
        ``finished_at``, or the row's start if that is later (the start is written by the
        database's clock, the end by this host's). Whether the row was still ours.

        Written by hand for the reason ``start_claimed`` is: every run that ends alone writes
        it, and on SQLite (where each run writes its own) building it by the ORM was a third
        of a worker's Python time per no-op job.
        """
        self._unfiltered("end_claimed")
        if claim_id is None:  # as in start_claimed
            return self.claimed_by(job_id, None).update(
                **{**fields, "finished_at": not_before_start(finished_at)}) == 1
        connection = connections[self.db]
        meta = self.model._meta
        names = tuple(name for name in fields if name != "finished_at")
        at = meta.get_field("finished_at").get_db_prep_save(finished_at, connection)
        params = [at, at]
        params += [meta.get_field(name).get_db_prep_save(fields[name], connection)
                   for name in names]
        params += _fence_params(connection, meta, job_id, claim_id)
        greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"  # as Greatest()

        def sets(column: Callable[[str], str]) -> list[str]:
            end = f"{greatest}(%s, COALESCE({column('started_at')}, %s))"
            return [f"{column('finished_at')} = {end}", *(f"{column(name)} = %s" for name in names)]

        sql = _fenced_update(connection, meta, ("end", names), sets)
        return self._write_one(connection, sql, params)

    def _unfiltered(self, what: str) -> None:
        if self.query.where:
            raise TypeError(f"{what}() writes one row by its id and claim: call it on "
                            f"Job.objects, not on a filtered queryset")

    def _write_one(self, connection: Any, sql: str, params: list[Any]) -> bool:
        """Run a fenced write by hand; whether it changed its row. An error dooms an atomic
        block around it, as the ORM's ``update()`` does (a run of ``fn.run()`` inside the
        caller's transaction writes there)."""
        with transaction.mark_for_rollback_on_error(using=self.db), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount == 1


def _fence_params(connection: Any, meta: Any, job_id: Any, claim_id: Any) -> list[Any]:
    return [
        meta.pk.get_db_prep_value(job_id, connection),
        "running",
        meta.get_field("claim_id").get_db_prep_value(claim_id, connection),
    ]


#: The fenced writes by hand, by (database engine, what they write).
_FENCED_UPDATES: dict[tuple[Any, ...], str] = {}


def _fenced_update(connection: Any, meta: Any, key: tuple[Any, ...],
                   sets: Callable[[Callable[[str], str]], list[str]]) -> str:
    """An ``UPDATE`` of one row under its claim (``claimed_by``: id, status, claim_id as the
    last three parameters), built once per engine and ``key``. ``sets`` makes its ``SET``
    clauses from a function quoting a field's column."""
    key = (connection.vendor, *key)
    sql = _FENCED_UPDATES.get(key)
    if sql is None:
        def column(name: str) -> str:
            return connection.ops.quote_name(meta.get_field(name).column)

        sql = _FENCED_UPDATES[key] = (
            f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {', '.join(sets(column))} "
            f"WHERE {column('id')} = %s AND {column('status')} = %s "
            f"AND {column('claim_id')} = %s"
        )
    return sql


def not_before_start(now: datetime) -> Expression:
    """``now``, or the run's start if that is later: the start is written by the database's
    clock and ``now`` by this host's (synchronised to it within a fraction of a millisecond),
    and a run must never be seen to end before it began."""
    at = Value(now, output_field=DateTimeField())
    return Greatest(at, Coalesce(F("started_at"), at))


class JobManager(models.Manager.from_queryset(JobQuerySet)):  # type: ignore[misc]
    """Queries go to ``DJANGO_JOBS['DATABASE']`` unless ``using()`` says otherwise."""

    def get_queryset(self) -> JobQuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)


class WorkerQuerySet(models.QuerySet):
    def live(self) -> WorkerQuerySet:
        """Processes that may still beat: running or stopping."""
        return self.filter(state__in=("running", "stopping"))

    def overdue(self, lost_after: float) -> WorkerQuerySet:
        """Live processes whose last heartbeat is older than ``lost_after`` seconds, by the
        database's clock."""
        return self.live().filter(heartbeat_at__lt=clock.sql_now(-lost_after))

    def beating(self, lost_after: float) -> WorkerQuerySet:
        """Live processes that beat within ``lost_after`` seconds."""
        return self.live().filter(heartbeat_at__gte=clock.sql_now(-lost_after))

    def beat(self, worker_id, **fields) -> bool:
        """Refresh a process's heartbeat; ``False`` when it was written off (or removed)."""
        return self.filter(pk=worker_id).live().update(
            heartbeat_at=clock.sql_now(), **fields
        ) == 1

    def hold_if_live(self, worker_id) -> bool:
        """Lock a live process's row until the end of the transaction; ``False`` when it was
        written off (or removed). A write-off of it waits for the transaction, and sees what
        it wrote."""
        return bool(list(self.filter(pk=worker_id).live().select_for_update()
                         .values_list("pk", flat=True)))

    def with_liveness(self, lost_after: float) -> WorkerQuerySet:
        """Annotate ``overdue`` (no heartbeat for ``lost_after`` seconds by the database's
        clock: a live process that its peers are about to write off) and ``running_jobs``
        (running rows it owns, from the partial index on ``owner``)."""
        job = apps.get_model("django_jobs", "Job")  # by name: job.py imports this module
        owned = (
            job.objects.running().filter(owner=OuterRef("pk")).order_by().values("owner")
            .annotate(n=Count("pk")).values("n")
        )
        return self.annotate(
            overdue=ExpressionWrapper(
                Q(heartbeat_at__lt=clock.sql_now(-lost_after)), output_field=BooleanField()
            ),
            running_jobs=Coalesce(Subquery(owned, output_field=IntegerField()), Value(0)),
        )

    def state_counts(self, lost_after: float) -> dict[str, int]:
        """``{"beating": n, "overdue": n, "lost": n}`` over every row: one query."""
        counts = self.order_by().aggregate(
            beating=Count("pk", filter=Q(state__in=("running", "stopping"),
                                         heartbeat_at__gte=clock.sql_now(-lost_after))),
            overdue=Count("pk", filter=Q(state__in=("running", "stopping"),
                                         heartbeat_at__lt=clock.sql_now(-lost_after))),
            lost=Count("pk", filter=Q(state="lost")),
        )
        return {key: value or 0 for key, value in counts.items()}

    def registered_names(self, lost_after: float) -> set[str]:
        """Every job name some beating worker process has registered."""
        names: set[str] = set()
        for registered in self.beating(lost_after).filter(kind="worker").values_list(
            "names", flat=True
        ):
            names.update(registered or ())
        return names


class WorkerManager(models.Manager.from_queryset(WorkerQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> WorkerQuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)


class JobTypeLockQuerySet(models.QuerySet):
    def stale(self) -> JobTypeLockQuerySet:
        """Keys whose holder is gone: a worker process that is no longer live, or (keys taken
        without a process) past ``locked_until``. The next claim or sweep frees them."""
        Worker = _model("Worker")
        live = Worker.objects.filter(state__in=_LIVE_STATES).values("pk")
        return self.filter(
            Q(owner__isnull=True, locked_until__lte=clock.sql_now())
            | (Q(owner__isnull=False) & ~Q(owner__in=live))
        )

    def with_holder_state(self) -> JobTypeLockQuerySet:
        """Annotate ``owner_live``: the holding worker process is running or stopping."""
        Worker = _model("Worker")
        return self.annotate(owner_live=Exists(
            Worker.objects.filter(pk=OuterRef("owner_id"), state__in=_LIVE_STATES)
        ))


    def held_by_run(self, job_id, claim_id) -> JobTypeLockQuerySet:
        """The lock key and the slots one claimed run holds (the fence of their release)."""
        return self.filter(job_id=job_id, claim_id=claim_id)

    def slots(self) -> JobTypeLockQuerySet:
        """Held slots of concurrency limits, not lock keys; those of a run without a
        process past ``locked_until`` are free for the taking."""
        return self.filter(slot_of__isnull=False).exclude(
            owner__isnull=True, locked_until__lte=clock.sql_now()
        )

    def slots_in_use(self, groups: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
        """``{group: (slots held, capacity)}``: one grouped query over the held slots."""
        qs = self.slots()
        if groups is not None:
            qs = qs.filter(slot_of__in=list(groups))
        rows = qs.order_by().values("slot_of").annotate(n=Count("pk"), cap=Max("capacity"))
        return {row["slot_of"]: (row["n"], row["cap"] or 0) for row in rows}

    def held_slot_numbers(self) -> dict[str, tuple[set[int], int]]:
        """``{group: (numbers of its held slots, capacity)}``: one query over the held slots
        (the table holds the running runs' slots only)."""
        held: dict[str, tuple[set[int], int]] = {}
        for group, key, capacity in self.slots().values_list("slot_of", "key", "capacity"):
            numbers, cap = held.setdefault(group, (set(), capacity or 0))
            numbers.add(int(key.rpartition("#")[2]))
            if capacity and capacity > cap:
                held[group] = (numbers, capacity)
        return held


class JobTypeLockManager(models.Manager.from_queryset(JobTypeLockQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> JobTypeLockQuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)


class RateTokenQuerySet(models.QuerySet):
    def usable(self) -> RateTokenQuerySet:
        """Tokens within their group's current capacity (a limit lowered leaves the rest)."""
        return self.filter(number__lt=F("capacity"))

    def free(self) -> RateTokenQuerySet:
        """Tokens not used within their period, by the database's clock."""
        return self.usable().filter(free_at__lte=clock.sql_now())

    def in_use(self, groups: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
        """``{group: (tokens used within their period, capacity)}``: one grouped query over
        the tokens used in the last period (the others are not read)."""
        qs = self.usable().filter(free_at__gt=clock.sql_now())
        if groups is not None:
            qs = qs.filter(group__in=list(groups))
        rows = qs.order_by().values("group").annotate(n=Count("pk"), cap=Max("capacity"))
        return {row["group"]: (row["n"], row["cap"]) for row in rows}

    def use(self, seconds: int, capacity: int) -> int:
        """Take these tokens if still free: each serves again ``seconds`` later. Returns how
        many were taken (the guard decides between racing claims)."""
        return self.free().update(free_at=clock.sql_now(seconds), capacity=capacity)


class RateTokenManager(models.Manager.from_queryset(RateTokenQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> RateTokenQuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)


class LockManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)


class WorkflowQuerySet(models.QuerySet):
    def open(self) -> WorkflowQuerySet:
        """Workflows with members left to run (``finished_at`` not written yet)."""
        return self.filter(finished_at__isnull=True)

    def prunable(self, older_than: datetime) -> WorkflowQuerySet:
        return self.filter(finished_at__lt=older_than)

    def get_by_id(self, workflow_id: object) -> models.Model:
        """The workflow with this id, or a unique prefix of it (at least 4 hex characters)."""
        return get_by_id(self, workflow_id, "workflow")

    def with_state(self) -> WorkflowQuerySet:
        """Annotate ``state``: the status the sweep writes once no member is left to run, and
        the same before the sweep has run: ``running`` while a member waits, is scheduled or
        runs; then ``failed`` if a member's last attempt failed, ``cancelled`` if one was
        cancelled, else ``succeeded`` (what ``registry.workflow_status()`` says).

        A finished workflow's row answers at once: the members are read only for open ones.
        """
        jobs = _model("Job").objects.filter(workflow=OuterRef("pk"))
        return self.annotate(state=Case(
            When(~Q(status=""), then=F("status")),
            When(Exists(jobs.pending()), then=Value("running")),
            When(Exists(jobs.last_attempts().filter(status="failed")), then=Value("failed")),
            When(Exists(jobs.last_attempts().filter(status="cancelled")),
                 then=Value("cancelled")),
            default=Value("succeeded"),
            output_field=CharField(),
        ))


class WorkflowManager(models.Manager.from_queryset(WorkflowQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> WorkflowQuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)


class DependencyQuerySet(models.QuerySet):
    def unsettled(self) -> DependencyQuerySet:
        return self.filter(settled=False)

    def ended_unsettled(self) -> DependencyQuerySet:
        """Edges whose dependency has ended for good but whose outcome was not counted yet.

        A failed dependency with a retry is not among them: its retry took the edge over in
        the same transaction.
        """
        return self.unsettled().filter(depends_on__status__in=FINISHED_STATUSES)


class DependencyManager(models.Manager.from_queryset(DependencyQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> DependencyQuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)
