"""The query vocabulary of django-jobs. The worker, the admin and the API ask through these."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from django.apps import apps
from django.db import connections, models
from django.db.models import Exists, Max, Min, OuterRef, Q
from django.db.models.functions import Left

from .. import clock
from ..conf import jobs_settings
from ..exceptions import AmbiguousJobId, JobNotFound
from ..ids import SHORT_ID_MIN, dashed_prefix, id_prefix_range

#: Characters of ``error`` the admin reads for the first line and the exception class.
ERROR_HEAD_LENGTH = 300


def _now(now: datetime | None) -> datetime:
    return now if now is not None else clock.now()


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


class JobQuerySet(models.QuerySet):
    def alive(self) -> JobQuerySet:
        """Rows that are not soft-deleted."""
        return self.filter(deleted_at__isnull=True)

    def scheduled(self) -> JobQuerySet:
        return self.filter(status="scheduled")

    def running(self) -> JobQuerySet:
        return self.filter(status="running")

    def pending(self) -> JobQuerySet:
        """Scheduled or running: not finished yet."""
        return self.filter(status__in=("scheduled", "running"))

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=("succeeded", "failed", "cancelled", "skipped"))

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
        if isinstance(job_id, uuid.UUID):
            full = job_id
        else:
            text = str(job_id).strip()
            try:
                full = uuid.UUID(text)
            except ValueError:
                full = None
        if full is not None:
            job = self.filter(pk=full).first()
            if job is None:
                raise JobNotFound(f"no job with id {full}")
            return job
        if id_prefix_range(text) is None:
            raise JobNotFound(
                f"{text!r} is not a job id: give the UUID or its first {SHORT_ID_MIN} or more "
                "hex characters"
            )
        if len(text.replace("-", "")) < SHORT_ID_MIN:
            raise ValueError(
                f"job id {text!r} is too short: give at least {SHORT_ID_MIN} hex characters "
                "(the admin and the jobs command show 8)"
            )
        found = list(self.with_id_prefix(text)[:2])
        if not found:
            raise JobNotFound(f"no job id starts with {text!r}")
        if len(found) > 1:
            count = self.with_id_prefix(text).count()
            raise AmbiguousJobId(
                f"job id {text!r} is ambiguous: {count} jobs start with it; give more characters"
            )
        return found[0]

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
        exclude_names: Iterable[str] = (),
        exclude_queues: Iterable[str] = (),
    ) -> JobQuerySet:
        """Due rows that a worker may start now: their lock key, if any, is free."""
        from .lock import JobTypeLock

        now = _now(now)
        held = JobTypeLock.objects.filter(key=OuterRef("lock_key"), locked_until__gt=now)
        qs = self.due(now).in_queues(queues).filter(~Exists(held))
        exclude_names = list(exclude_names)
        if exclude_names:
            qs = qs.exclude(name__in=exclude_names)
        exclude_queues = list(exclude_queues)
        if exclude_queues:
            qs = qs.exclude(queue__in=exclude_queues)
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
        """Running rows whose lease ran out: their worker stopped sending heartbeats."""
        return self.running().filter(locked_until__lt=_now(now))

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
        cancelled = self.scheduled().update(
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

    def claimed_by(self, job_id, claim_id) -> JobQuerySet:
        """The fence: this row, only while the claim ``claim_id`` still owns it."""
        return self.filter(pk=job_id, status="running", claim_id=claim_id)


class JobManager(models.Manager.from_queryset(JobQuerySet)):  # type: ignore[misc]
    """Queries go to ``DJANGO_JOBS['DATABASE']`` unless ``using()`` says otherwise."""

    def get_queryset(self) -> JobQuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)


class LockManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().using(self._db or jobs_settings.DATABASE)
