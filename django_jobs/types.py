"""What the control API returns: frozen snapshots, never live rows.

Each has ``as_dict()``, a JSON-ready form (datetimes as ISO 8601, durations in seconds, ids as
strings) that ``manage.py jobs ... --json`` prints.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .humanize import duration_words

if TYPE_CHECKING:
    from .models import Job


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Snapshot):
        return value.as_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return value


class Snapshot:
    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunInfo(Snapshot):
    """One run of a job, in short: enough for a table row or a dashboard cell."""

    id: uuid.UUID
    name: str
    status: str
    queue: str
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: float
    message: str
    eta: datetime | None
    worker: str
    heartbeat_at: datetime | None
    attempt: int
    error: str  # the first line only

    @classmethod
    def from_job(cls, job: Job, error: str | None = None) -> RunInfo:
        """``error`` stands in for ``job.error`` when that field was deferred."""
        if error is None:
            error = "" if "error" in job.get_deferred_fields() else job.error
        return cls(
            id=job.pk, name=job.name, status=str(job.status), queue=job.queue, run_at=job.run_at,
            started_at=job.started_at, finished_at=job.finished_at, progress=job.progress,
            message=job.progress_message, eta=job.eta, worker=job.worker,
            heartbeat_at=job.heartbeat_at, attempt=job.attempt,
            error=(error or "").split("\n", 1)[0],
        )


@dataclass(frozen=True)
class DependencyOutcome(Snapshot):
    """How a job that another one waited for ended (``ctx.dependencies()``)."""

    id: uuid.UUID
    name: str
    status: str
    result: Any
    error: str  # the first line only


@dataclass(frozen=True)
class WorkflowMember(Snapshot):
    """One job of a workflow (its last attempt) and what it waits for."""

    id: uuid.UUID
    name: str
    status: str
    progress: float
    message: str
    attempt: int
    run_when: str  # "" (no dependencies), "success", "finish" or "failure"
    after: list[uuid.UUID]  # the members it runs after, in order
    started_at: datetime | None
    finished_at: datetime | None
    error: str  # the first line only


@dataclass(frozen=True)
class WorkflowInfo(Snapshot):
    """Where a workflow stands (``registry.workflow_status()``).

    ``status`` is ``running`` while a member is left to run, then ``succeeded``, ``failed``
    or ``cancelled``. ``progress`` averages the members' progress (an ended member counts
    as done); ``eta`` extrapolates it from the time since the first start.
    """

    id: uuid.UUID
    name: str
    status: str
    on_failure: str
    created_at: datetime
    cancelled_at: datetime | None
    finished_at: datetime | None
    progress: float
    eta: datetime | None
    counts: dict[str, int]
    members: list[WorkflowMember]

    def in_dependency_order(self) -> list[tuple[WorkflowMember, int]]:
        """The members in a topological order of the graph, each with its depth (the longest
        chain of members it waits for): what the admin and ``manage.py jobs workflow`` list.

        Each member comes after those it waits for, and as soon after them as it can (depth
        first), so a chain inside a group reads as a block, and a group's callbacks follow it.
        """
        index = {member.id: n for n, member in enumerate(self.members)}
        # ``after`` may name a job that is no longer a member (an attempt since retried):
        # only members order the list.
        waits = {member.id: {pk for pk in member.after if pk in index and pk != member.id}
                 for member in self.members}
        dependents: dict[uuid.UUID, list[uuid.UUID]] = {}
        for member_id, before in waits.items():
            for pk in before:
                dependents.setdefault(pk, []).append(member_id)
        left = {member_id: len(before) for member_id, before in waits.items()}
        # A stack: what a member's placing made ready comes next, the first member first.
        ready = sorted((index[member_id] for member_id, n in left.items() if n == 0),
                       reverse=True)
        order: list[WorkflowMember] = []
        while ready:
            member = self.members[ready.pop()]
            order.append(member)
            unlocked = []
            for member_id in dependents.get(member.id, ()):
                left[member_id] -= 1
                if left[member_id] == 0:
                    unlocked.append(index[member_id])
            ready.extend(sorted(unlocked, reverse=True))
        # after= only names jobs that exist already, so no cycle can be written; should one
        # show up all the same, its members are still listed, in creation order.
        placed = {member.id for member in order}
        order += [member for member in self.members if member.id not in placed]
        depth: dict[uuid.UUID, int] = {}
        for member in order:
            depth[member.id] = 1 + max(
                (depth[pk] for pk in waits[member.id] if pk in depth), default=-1
            )
        return [(member, depth[member.id]) for member in order]


@dataclass(frozen=True)
class JobInfo(Snapshot):
    """One registered job type and where it stands (``registry.list()``)."""

    name: str
    queue: str
    recurring: bool
    cron: str | None
    every: timedelta | None
    schedule: str  # in words: "every 5 minutes", "daily at 02:30"; "" when not recurring
    timezone: str | None
    next_run: datetime | None
    last_run: RunInfo | None  # the most recently finished run
    running: RunInfo | None  # the oldest running run
    enabled: bool
    paused: bool
    scheduled: int  # runs waiting (scheduled rows)

    @property
    def last_outcome(self) -> str | None:
        return self.last_run.status if self.last_run else None


@dataclass(frozen=True)
class JobStatusInfo(Snapshot):
    """Where one job stands (``registry.status(job_id)``)."""

    id: uuid.UUID
    name: str
    status: str
    queue: str
    priority: int
    progress: float
    message: str
    eta: datetime | None
    remaining: timedelta | None  # until eta, while running
    remaining_words: str
    elapsed: timedelta | None  # running time so far, or the run's duration once finished
    elapsed_words: str
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_attempts: int
    worker: str
    cancel_requested: bool
    result: Any
    error: str
    data: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled", "skipped")

    @classmethod
    def from_job(cls, job: Job, now: datetime) -> JobStatusInfo:
        elapsed = None
        if job.started_at is not None:
            elapsed = max((job.finished_at or now) - job.started_at, timedelta(0))
        remaining = None
        if job.status == "running" and job.eta is not None:
            remaining = max(job.eta - now, timedelta(0))
        return cls(
            id=job.pk, name=job.name, status=str(job.status), queue=job.queue,
            priority=job.priority, progress=job.progress, message=job.progress_message,
            eta=job.eta, remaining=remaining,
            remaining_words=duration_words(remaining) if remaining is not None else "",
            elapsed=elapsed, elapsed_words=duration_words(elapsed) if elapsed is not None else "",
            run_at=job.run_at, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, attempt=job.attempt, max_attempts=job.max_attempts,
            worker=job.worker, cancel_requested=job.cancel_requested_at is not None,
            result=job.result, error=job.error, data=job.data,
        )


@dataclass(frozen=True)
class Ensured(Snapshot):
    """What ``registry.ensure()`` found or made."""

    job: Any  # the Job row (not serialised by as_dict(): see id)
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": str(self.job.pk), "status": str(self.job.status), "created": self.created}


@dataclass(frozen=True)
class LimitInfo(Snapshot):
    """A concurrency or rate limit and its current use (``registry.limits()``)."""

    scope: str  # "job" (an @job's own limits) or "queue" (DJANGO_JOBS["QUEUES"])
    name: str  # the job's name or the queue
    keyed: bool  # counted per concurrency_key: the figures below add up every key
    concurrency: int | None
    rate_limit: str | None  # "100/m"
    running: int  # slots held now
    started_in_period: int  # claims within the rate's period (sliding window)
    keys: int  # keys with a slot held or a claim within the period
    keys_at_limit: tuple[str, ...]  # keys whose concurrency or rate is used up now

    @property
    def in_use(self) -> str:
        """``"3 / 5 running, 82 / 100 per minute"``, as the admin and the CLI show it; per key:
        ``"3 running over 2 keys (at most 2 per key)"``."""
        parts = []
        unit_words = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
        count, unit = self.rate_limit.split("/") if self.rate_limit else ("", "s")
        if self.keyed:
            keys = f"{self.keys} key{'s' if self.keys != 1 else ''}"
            if self.concurrency is not None:
                parts.append(f"{self.running} running over {keys} "
                             f"(at most {self.concurrency} per key)")
            if self.rate_limit is not None:
                parts.append(f"{self.started_in_period} started this {unit_words[unit]} over "
                             f"{keys} (at most {count} per key)")
            return ", ".join(parts)
        if self.concurrency is not None:
            parts.append(f"{self.running} / {self.concurrency} running")
        if self.rate_limit is not None:
            parts.append(f"{self.started_in_period} / {count} per {unit_words[unit]}")
        return ", ".join(parts)


@dataclass(frozen=True)
class LockInfo(Snapshot):
    """A held ``JobTypeLock`` (``registry.locks()``)."""

    key: str
    job_id: uuid.UUID | None
    job_name: str | None
    job_status: str | None
    worker: str
    locked_until: datetime | None  # only for keys taken without a worker process
    expired: bool  # its holder is gone: the next claim or sweep frees it
    updated_at: datetime


@dataclass(frozen=True)
class QueueInfo(Snapshot):
    """Depth of one queue (``registry.inspect()``)."""

    queue: str
    counts: dict[str, int]  # rows per status
    due: int  # scheduled rows whose run_at has passed
    oldest_due_age: timedelta | None  # how long the oldest due row has waited
    paused: bool


@dataclass(frozen=True)
class WorkerInfo(Snapshot):
    """One process that runs jobs, from its ``Worker`` row (``registry.workers()``)."""

    id: uuid.UUID
    worker: str  # "host:pid", as the jobs it runs say in Job.worker
    kind: str  # "worker" (manage.py runjobs) or "run" (a process inside fn.run())
    host: str
    pid: int
    queues: tuple[str, ...]  # empty: every queue
    concurrency: int
    busy: int  # runs held, as the process last reported with its heartbeat
    running: int  # running rows it owns, as the job table says
    version: str
    state: str  # running, stopping or lost
    started_at: datetime
    last_heartbeat: datetime
    heartbeat_age: timedelta  # at the time of the snapshot
    stale: bool  # running or stopping, yet silent for WORKER_LOST_AFTER: about to be lost

    @property
    def lost(self) -> bool:
        return self.state == "lost"

    @property
    def alive(self) -> bool:
        """Beating: running or stopping, and heard from within ``WORKER_LOST_AFTER``."""
        return not self.lost and not self.stale


@dataclass(frozen=True)
class Inspection(Snapshot):
    """The state of the queues and workers, as seen from the database."""

    at: datetime
    queues: tuple[QueueInfo, ...]
    due: int
    oldest_due_age: timedelta | None
    running: tuple[RunInfo, ...]
    workers: tuple[WorkerInfo, ...]  # every Worker row, lost ones included
    paused_queues: tuple[str, ...]


@dataclass(frozen=True)
class HealthCheck(Snapshot):
    """One check of ``registry.health()``."""

    name: str  # "database", "workers", "queue wait"
    ok: bool
    detail: str  # one line, for a person


@dataclass(frozen=True)
class Health(Snapshot):
    """Whether the job system works (``registry.health()``; ``manage.py jobs health``)."""

    at: datetime
    reachable: bool  # the jobs database answered; when not, the other checks were skipped
    checks: tuple[HealthCheck, ...]

    @property
    def ok(self) -> bool:
        return self.reachable and all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "ok": self.ok}
