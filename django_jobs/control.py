"""The control API on ``django_jobs.registry``: everything an operator can do, as calls.

Reads return frozen snapshots (``django_jobs.types``); writes are guarded conditional updates,
so a late call never overwrites what a worker wrote first. ``manage.py jobs`` and the admin
call these methods and nothing else.
"""

from __future__ import annotations

import builtins
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import Error, OperationalError, connections, transaction
from django.db.models import Count

from . import clock, payload, signals, workflows
from .conf import jobs_settings
from .enqueuing import ENQUEUE_OPTIONS, _maybe_eager, _save_unique, build_row
from .exceptions import InvalidJobState, JobAlreadyRunning, JobStillRunning
from .execution import Outcome, record_outcome, schedule_retry, send_robust
from .humanize import cron_words, duration_words, every_words
from .ids import id_prefix_range
from .jobtypes import JobType, Registry
from .jobtypes import registry as job_types
from .limits import job_group, queue_limits
from .models import (
    Job,
    JobSchedule,
    JobStatus,
    JobTypeLock,
    PausedQueue,
    RateToken,
    Worker,
    Workflow,
)
from .pruning import prune
from .types import (
    Ensured,
    Health,
    HealthCheck,
    Inspection,
    JobInfo,
    JobStatusInfo,
    LimitInfo,
    LockInfo,
    QueueInfo,
    RunInfo,
    WorkerInfo,
    WorkflowInfo,
)
from .worker.scheduler import reset

#: Seconds between two looks at the database while ``stop()`` waits.
STOP_POLL_INTERVAL = 0.1
#: ``health()``: how long the oldest due job may wait before the check fails, by default.
HEALTH_MAX_WAIT = 300.0


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


class ControlAPI:
    """``django_jobs.registry``: the registered job types, and what an operator can do with
    their rows. Composed over the registry of declarations (``django_jobs.jobtypes``), which
    it answers for too, so ``registry.get(name)`` and ``registry.cancel(id)`` sit side by side.
    Every method goes through the same QuerySet vocabulary.
    """

    def __init__(self, declared: Registry) -> None:
        self.declared = declared

    # -- the declarations -----------------------------------------------------------------

    def get(self, name: str) -> JobType:
        return self.declared.get(name)

    def names(self) -> builtins.list[str]:
        return self.declared.names()

    def disabled_names(self) -> builtins.list[str]:
        return self.declared.disabled_names()

    def register(self, job_type: JobType) -> JobType:
        return self.declared.register(job_type)

    def unregister(self, name: str) -> None:
        self.declared.unregister(name)

    def __contains__(self, name: object) -> bool:
        return name in self.declared

    def __iter__(self):
        return iter(self.declared)

    def __len__(self) -> int:
        return len(self.declared)

    def __bool__(self) -> bool:
        return True

    # -- looking --------------------------------------------------------------------------

    def list(self) -> builtins.list[JobInfo]:
        """Every registered job with its schedule, next run, last run, running run and flags.

        A fixed number of queries, however many jobs are registered.
        """
        names = self.names()
        now = clock.now()
        scheduled = Job.objects.alive().scheduled().filter(name__in=names)
        next_runs = scheduled.next_run_by_name(names)
        waiting = dict(
            scheduled.order_by().values("name").annotate(n=_count()).values_list("name", "n")
        )
        last = Job.objects.alive().last_finished_by_name(names)
        failed = [job.pk for job in last.values() if job.status == "failed"]
        errors = (
            dict(Job.objects.filter(pk__in=failed).values_list("pk", "error")) if failed else {}
        )
        running: dict[str, Job] = {}
        for job in Job.objects.running().filter(name__in=names).order_by("started_at"):
            running.setdefault(job.name, job)
        paused = set(JobSchedule.objects.filter(paused=True).values_list("name", flat=True))
        infos = []
        for name in names:
            jt = self.get(name)
            enabled, is_paused = jt.is_enabled, name in paused
            next_run = next_runs.get(name) if enabled else None
            if next_run is None and jt.is_recurring and enabled and not is_paused:
                next_run = _next_occurrence(jt, now)
            if jt.cron:
                words = cron_words(jt.cron)
            elif jt.every:
                words = every_words(jt.every)
            else:
                words = "custom (next_run)" if jt.next_run else ""
            infos.append(JobInfo(
                name=name, queue=jt.queue, recurring=jt.is_recurring, cron=jt.cron,
                every=jt.every, schedule=words,
                timezone=str(jt.timezone) if jt.timezone is not None else None,
                next_run=next_run,
                last_run=(
                    RunInfo.from_job(last[name], errors.get(last[name].pk, ""))
                    if name in last else None
                ),
                running=RunInfo.from_job(running[name]) if name in running else None,
                enabled=enabled, paused=is_paused, scheduled=waiting.get(name, 0),
            ))
        return infos

    def status(self, job_id: Any) -> JobStatusInfo:
        """Where one job stands: status, progress, message, ETA and elapsed time (in words)."""
        return JobStatusInfo.from_job(self._job(job_id), clock.now())

    def running(self, name: str) -> Job | None:
        """The running job of ``name`` (the oldest if several run), or ``None``."""
        self.get(name)
        return Job.objects.for_name(name).running().order_by("started_at").first()

    def latest(self, name: str) -> Job | None:
        """The most recently created job of ``name``, or ``None``."""
        self.get(name)
        return Job.objects.latest_for(name)

    def queue_served_since(self, queue: str, since: datetime) -> bool:
        """Whether any worker started a job of ``queue`` at or after ``since``.

        A hint that a worker serves the queue, not a proof: it is only as recent as the last
        job started there.
        """
        return Job.objects.in_queues([queue]).started_since(since).exists()

    def locks(self) -> builtins.list[LockInfo]:
        """Every held ``JobTypeLock``, with its holder job and whether it has expired."""
        held = builtins.list(JobTypeLock.objects.order_by("key"))
        stale = set(JobTypeLock.objects.stale().values_list("key", flat=True))
        holders = {
            pk: (name, status)
            for pk, name, status in Job.objects.filter(
                pk__in=[lock.job_id for lock in held if lock.job_id]
            ).values_list("pk", "name", "status")
        }
        return [
            LockInfo(
                key=lock.key, job_id=lock.job_id,
                job_name=holders.get(lock.job_id, (None, None))[0],
                job_status=holders.get(lock.job_id, (None, None))[1],
                worker=lock.worker, locked_until=lock.locked_until,
                expired=lock.key in stale, updated_at=lock.updated_at,
            )
            for lock in held
        ]

    def workers(self, *, include_lost: bool = True) -> builtins.list[WorkerInfo]:
        """Every process that runs jobs, from its ``Worker`` row, by host and pid.

        ``stale`` marks a running or stopping process silent for ``WORKER_LOST_AFTER`` (by the
        database's clock): its peers are about to write it off. Lost rows stay for an hour.
        Two queries' worth of work in one, however many workers and jobs.
        """
        # Models are imported when called: this module is imported with the package, before
        # Django's app registry is ready.

        now = clock.now()
        rows = Worker.objects.with_liveness(jobs_settings.WORKER_LOST_AFTER).order_by(
            "host", "pid", "started_at"
        )
        if not include_lost:
            rows = rows.live()
        return [
            WorkerInfo(
                id=row.pk, worker=row.label, kind=row.kind, host=row.host, pid=row.pid,
                queues=tuple(row.queues or ()), concurrency=row.concurrency, busy=row.busy,
                running=row.running_jobs, version=row.version, state=row.state,
                started_at=row.started_at, last_heartbeat=row.heartbeat_at,
                heartbeat_age=max(now - row.heartbeat_at, timedelta(0)),
                stale=bool(row.overdue) and row.state != "lost",
            )
            for row in rows
        ]

    def limits(self) -> builtins.list[LimitInfo]:
        """Every concurrency and rate limit (of job types and of queues) with its use now.

        Two grouped queries (slots held, rate tokens used in their period), however many
        limits and keys there are.
        """
        slots = JobTypeLock.objects.slots_in_use()
        tokens = RateToken.objects.in_use()
        infos = []
        for job_type in self:
            if not job_type.has_limits:
                continue
            prefix = job_group(job_type.name)
            keyed = job_type.concurrency_key is not None
            infos.append(_limit_info(
                "job", job_type.name, keyed, job_type.concurrency, job_type.rate,
                {g: v for g, v in slots.items() if _in_group(g, prefix, keyed)},
                {g: v for g, v in tokens.items() if _in_group(g, prefix, keyed)},
            ))
        for queue, limit in sorted(queue_limits(jobs_settings.QUEUES).items()):
            group = limit.group
            infos.append(_limit_info(
                "queue", queue, False, limit.concurrency, limit.rate,
                {g: v for g, v in slots.items() if g == group},
                {g: v for g, v in tokens.items() if g == group},
            ))
        return infos

    def inspect(self) -> Inspection:
        """Queue depth per queue and status, the oldest due job's wait, running jobs, workers."""
        now = clock.now()
        paused = set(self.paused_queues())
        counts: dict[str, dict[str, int]] = {}
        for queue, status, n in (
            Job.objects.alive().order_by().values("queue", "status").annotate(n=_count())
            .values_list("queue", "status", "n")
        ):
            counts.setdefault(queue, {})[status] = n
        due = Job.objects.alive().due_by_queue(now)
        queues = []
        for queue in sorted(set(counts) | set(due) | paused):
            n, oldest = due.get(queue, (0, None))
            queues.append(QueueInfo(
                queue=queue, counts=counts.get(queue, {}), due=n,
                oldest_due_age=(now - oldest) if oldest else None, paused=queue in paused,
            ))
        running = tuple(
            RunInfo.from_job(job)
            for job in Job.objects.running().order_by("started_at").defer("data", "result")
        )
        oldest_due = [q.oldest_due_age for q in queues if q.oldest_due_age is not None]
        return Inspection(
            at=now, queues=tuple(queues), due=sum(q.due for q in queues),
            oldest_due_age=max(oldest_due) if oldest_due else None, running=running,
            workers=tuple(self.workers()), paused_queues=tuple(sorted(paused)),
        )

    def health(self, max_wait: float = HEALTH_MAX_WAIT) -> Health:
        """Whether jobs get run: the jobs database answers, some ``runjobs`` worker beat within
        ``WORKER_LOST_AFTER``, and no due job (outside paused queues) has waited longer than
        ``max_wait`` seconds. Never raises for a database that is down: it says so."""
        alias = jobs_settings.DATABASE
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Health(at=clock.now(), reachable=False, checks=(HealthCheck(
                "database", False, f"the jobs database {alias!r} is unreachable: {reason}",
            ),))
        lost_after = jobs_settings.WORKER_LOST_AFTER
        checks = [HealthCheck("database", True, f"the jobs database {alias!r} answers")]
        beating = Worker.objects.beating(lost_after).filter(kind=Worker.Kind.WORKER).count()
        checks.append(HealthCheck(
            "workers", beating > 0,
            f"{beating} runjobs worker(s) beat within {lost_after:g} s" if beating
            else f"no runjobs worker has beaten within {lost_after:g} s",
        ))
        now = clock.now()
        paused = builtins.list(PausedQueue.objects.values_list("queue", flat=True))
        oldest = Job.objects.alive().oldest_due_run_at(exclude_queues=paused)
        waited = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        checks.append(HealthCheck(
            "queue wait", waited <= max_wait,
            "no job is due" if oldest is None
            else f"the oldest due job has waited {duration_words(timedelta(seconds=waited))}"
            f" (limit {duration_words(timedelta(seconds=max_wait))})",
        ))
        return Health(at=now, reachable=True, checks=tuple(checks))

    # -- starting -------------------------------------------------------------------------

    def run(self, name: str, /, *args: Any, **data: Any) -> Any:
        """Run the job ``name`` now in this process and return its result."""
        return self.get(name).run(*args, **data)

    def enqueue(self, name: str, /, *args: Any, **data: Any) -> Job:
        """Enqueue the job ``name``; same options as ``fn.enqueue()``."""
        return self.get(name).enqueue(*args, **data)

    def ensure(self, name: str, /, **data: Any) -> Ensured:
        """Enqueue ``name`` unless a job of that name is already scheduled or running.

        Two callers racing are settled by the database: the new row carries the unique key
        ``name`` (unless you pass ``unique_key=``), so only one of them is inserted.
        """
        job_type = self.get(name)
        # "running" sorts before "scheduled": a running job is returned first.
        existing = Job.objects.for_name(name).alive().pending().order_by("status", "run_at")
        found = existing.first()
        if found is not None:
            return Ensured(job=found, created=False)
        options = {key: data.pop(key) for key in builtins.list(data) if key in ENQUEUE_OPTIONS}
        options.setdefault("unique_key", name)
        row = build_row(job_type, data, **options)
        saved = _save_unique(job_type, row)
        if saved is not row:
            return Ensured(job=saved, created=False)
        return Ensured(job=_maybe_eager([saved])[0], created=True)

    def start(self, name: str, /, **data: Any) -> Job:
        """Enqueue ``name`` to run now; ``JobAlreadyRunning`` if one of it is running.

        For a job locked per payload (``lock=`` a function), only a running job holding the
        same lock key counts.
        """
        job_type = self.get(name)
        running = Job.objects.for_name(name).running()
        if callable(job_type.lock) and job_type.lock is not True:
            payload = {k: v for k, v in data.items() if k not in ENQUEUE_OPTIONS}
            running = running.filter(lock_key=job_type.lock_key_for(payload))
        current = running.order_by("started_at").first()
        if current is not None:
            raise JobAlreadyRunning(
                f"job {name!r} is already running: {current.pk} on {current.worker or '?'}"
            )
        return job_type.enqueue(**data)

    def retry(self, job_id: Any, *, created_by: Any = None) -> Job:
        """Schedule a new run of a finished job with its payload; see ``Job.retry()``."""
        job = self._job(job_id)
        return job.retry(created_by=created_by, replace=self._unique_policy(job.name) == "replace")

    def _unique_policy(self, name: str) -> str | None:
        return self.get(name).unique if name in self else None

    # -- stopping -------------------------------------------------------------------------

    def cancel(self, job_id_or_name: Any) -> int:
        """Cancel a job by id, or every pending job of a name; return how many were affected.

        Scheduled jobs are cancelled outright; running ones are asked to stop and end
        ``cancelled`` when they next check ``ctx.cancelled``. Returns at once.
        """
        targets = self._targets(job_id_or_name)
        members = builtins.list(targets.filter(workflow__isnull=False, status__in=(
            JobStatus.WAITING, JobStatus.SCHEDULED)).values_list("pk", flat=True))
        cancelled, requested = targets.cancel(clock.now())
        # What waited for the cancelled members learns it now (cancelled, or released).
        workflows.settle(members)
        return cancelled + requested

    # -- workflows --------------------------------------------------------------------------

    def workflow_status(self, workflow_id: Any) -> WorkflowInfo:
        """Where a workflow stands: status, progress and ETA, each member and its links.

        ``workflow_id`` is the id, or a unique prefix of it (at least 4 hex characters).
        """
        return workflows.workflow_info(workflow_id)

    def cancel_workflow(self, workflow_id: Any) -> int:
        """Cancel every member of a workflow not finished yet, callbacks included; running
        members are asked to stop. Returns how many rows were cancelled at once."""
        workflow = Workflow.objects.get_by_id(workflow_id)
        for attempt in range(5):
            try:
                return workflows.cancel_workflow(workflow.pk)
            except OperationalError:
                # A deadlock against a member's settlement: one of the two is rolled back.
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return 0

    def stop(
        self, job_id_or_name: Any, timeout: float = 30.0
    ) -> builtins.list[JobStatusInfo]:
        """Cancel, then wait until no targeted job is running any more; return their states.

        Raises ``JobStillRunning`` after ``timeout`` seconds (the request stays in place: the
        job still stops when it next checks ``ctx.cancelled``). Call it outside a transaction,
        or it cannot see the worker's writes.
        """
        targets = self._targets(job_id_or_name)
        ids = builtins.list(targets.pending().values_list("pk", flat=True))
        targets.cancel(clock.now())
        deadline = time.monotonic() + timeout

        while True:
            still = builtins.list(Job.objects.filter(pk__in=ids).running().values_list("pk",
                                                                                      flat=True))
            if not still:
                break
            if time.monotonic() >= deadline:
                raise JobStillRunning(
                    f"{len(still)} job(s) still running after {timeout:g}s: "
                    f"{', '.join(map(str, still))}; cancellation stays requested"
                )
            time.sleep(STOP_POLL_INTERVAL)
        now = clock.now()
        return [JobStatusInfo.from_job(job, now) for job in Job.objects.filter(pk__in=ids)]

    def succeed(self, job_id: Any, result: Any = None) -> JobStatusInfo:
        """Record that the work of a job was done elsewhere, with ``result``.

        Allowed on a scheduled job, and on a running one whose worker is gone (lease
        expired); refused with ``InvalidJobState`` while a live worker holds it or once it
        has finished.
        """
        problem = payload.find_non_json(result, "the result")
        if problem:
            raise TypeError(f"{problem}; a result must be JSON-serialisable")
        return self._record_elsewhere(job_id, Outcome(JobStatus.SUCCEEDED, result=result))

    def fail(self, job_id: Any, message: str = "failed elsewhere", *, retry: bool = False
             ) -> JobStatusInfo:
        """Record that the work of a job failed elsewhere; same rules as ``succeed()``.

        With ``retry=True`` a next attempt is scheduled if the job has attempts left.
        """
        return self._record_elsewhere(job_id, Outcome.failed(str(message), retry=retry))

    def prune(self) -> int:
        """Delete finished jobs older than their ``keep``; return how many were deleted."""
        return prune()

    # -- pausing --------------------------------------------------------------------------

    def pause(self, name: str) -> None:
        """Pause a recurring job on every worker: pending occurrences are cancelled and no new
        ones are created until ``resume(name)``, which starts again from the next occurrence."""
        job_type = self.get(name)
        if not job_type.is_recurring:
            raise ValueError(f"job {name!r} is not recurring; only recurring jobs are paused")
        JobSchedule.objects.update_or_create(name=name, defaults={"paused": True})
        reset(name, "paused")

    def resume(self, name: str) -> None:
        """Undo ``pause(name)``; the job runs again from its next occurrence."""
        self.get(name)
        JobSchedule.objects.filter(name=name).update(paused=False)

    def pause_queue(self, queue: str) -> None:
        """Stop every worker from starting jobs of ``queue``; they stay scheduled."""
        PausedQueue.objects.get_or_create(queue=queue)

    def resume_queue(self, queue: str) -> None:
        """Let workers start jobs of ``queue`` again."""
        PausedQueue.objects.filter(queue=queue).delete()

    def paused_queues(self) -> builtins.list[str]:
        return sorted(PausedQueue.objects.values_list("queue", flat=True))

    # -- helpers --------------------------------------------------------------------------

    def _job(self, job_id: Any) -> Job:
        """One job by its id or a unique prefix of it (the 8 characters people are shown)."""
        return Job.objects.get_by_id(job_id)

    def _targets(self, job_id_or_name: Any):
        """The rows a cancel or stop acts on: one job by id (or short id), or every job of a
        name. A registered name wins over a short id spelled the same."""
        if isinstance(job_id_or_name, str) and job_id_or_name in self.names():
            return Job.objects.for_name(job_id_or_name)
        if _as_uuid(job_id_or_name) is None and id_prefix_range(str(job_id_or_name)) is None:
            self.get(job_id_or_name)  # neither a name nor an id: UnknownJob, with suggestions
        return Job.objects.filter(pk=Job.objects.get_by_id(job_id_or_name).pk)

    def _record_elsewhere(self, job_id: Any, outcome) -> JobStatusInfo:
        job = self._job(job_id)
        now = clock.now()
        if job.status == "scheduled":
            won = _finish_scheduled(job, outcome, now)
        elif job.status == "running" and _holder_is_gone(job):
            # Fenced on the claim read above, like the rescue's write: whoever writes first
            # wins (a lost worker never comes back, so its claim cannot be renewed).
            won = record_outcome(job, job.claim_id, outcome)
        else:
            won = False
        if not won:
            current = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
            why = "a worker holds it" if current == "running" else "it has finished"
            raise InvalidJobState(
                f"job {job.pk} is {current}; its outcome cannot be recorded because {why}"
            )
        job.refresh_from_db()
        send_robust(
            signals.job_finished, job=job, status=outcome.status, result=outcome.result,
            error=outcome.error,
        )
        return JobStatusInfo.from_job(job, clock.now())


def _in_group(group: str, prefix: str, keyed: bool) -> bool:
    """Whether a slot or token group belongs to a limit (``prefix``, or ``prefix:<key>``)."""
    return group.startswith(prefix + ":") if keyed else group == prefix


def _limit_info(scope, name, keyed, concurrency, rate, slots, tokens) -> LimitInfo:
    at_limit = set()
    for group, (held, _capacity) in slots.items():
        if concurrency is not None and held >= concurrency:
            at_limit.add(group)
    for group, (used, _capacity) in tokens.items():
        if rate is not None and used >= rate.count:
            at_limit.add(group)
    return LimitInfo(
        scope=scope, name=name, keyed=keyed, concurrency=concurrency,
        rate_limit=str(rate) if rate is not None else None,
        running=sum(held for held, _ in slots.values()),
        started_in_period=sum(used for used, _ in tokens.values()),
        keys=len(set(slots) | set(tokens)),
        keys_at_limit=tuple(sorted(g.split(":", 1)[1] for g in at_limit)),
    )


def _holder_is_gone(job: Job) -> bool:
    """The worker process holding this running row is lost (or, without one, its lease ran
    out): nobody will write its outcome."""
    rows = Job.objects.filter(pk=job.pk, claim_id=job.claim_id)
    return rows.orphaned().exists() or rows.stale().exists()


def _finish_scheduled(job: Job, outcome, now) -> bool:
    fields: dict[str, Any] = {
        "status": outcome.status, "started_at": now, "finished_at": now,
        "result": outcome.result, "unique_slot": None, "eta": None,
        "error": payload.truncate(outcome.error, jobs_settings.MAX_TEXT_LENGTH),
    }
    if outcome.status == JobStatus.SUCCEEDED:
        fields["progress"] = 1.0
    with transaction.atomic(using=jobs_settings.DATABASE):
        won = Job.objects.filter(pk=job.pk, status=JobStatus.SCHEDULED).update(**fields) == 1
        retried = None
        if won and outcome.status == JobStatus.FAILED and outcome.retry:
            retried = schedule_retry(job, now)
        if won and retried is None and job.workflow_id is not None:
            workflows.settle([job.pk], status=outcome.status)
    return won


def _next_occurrence(job_type: JobType, now):
    try:
        return job_type.schedule.next_after(now, default_zone=settings.TIME_ZONE or "UTC")
    except Exception:  # a user's next_run callable may raise; the listing must not
        return None


def _count():
    return Count("pk")


#: ``django_jobs.registry``.
registry = ControlAPI(job_types)
