"""The scheduler: creates the rows of recurring jobs, once per occurrence, across any number of
workers.

No leader: every scheduler may try to create an occurrence; the unique constraint on
``(name, occurrence)`` lets exactly one insert win and the others fail harmlessly (inside a
savepoint). ``JobSchedule.last_occurrence`` only moves forward, so pruning old rows never lets an
occurrence be created twice.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from .. import clock
from ..conf import jobs_settings
from ..jobtypes import JobType, registry
from ..models import Job, JobSchedule, JobStatus, Worker
from ..schedule import Plan, ScheduleError, plan

logger = logging.getLogger("django_jobs")

#: Longest sleep of the scheduler: how soon it notices pauses, resumes and new deployments.
MAX_SLEEP = 30.0


class Scheduler:
    def __init__(self) -> None:
        self._wake_at = 0.0  # monotonic time of the next tick

    def seconds_until_due(self) -> float:
        return self._wake_at - time.monotonic()

    def tick_if_due(self) -> int:
        if time.monotonic() < self._wake_at:
            return 0
        return self.tick()

    def tick(self, now: datetime | None = None) -> int:
        """Create what is due for every recurring job; return the number of rows created."""
        now = now or clock.now()
        recurring = [jt for jt in registry if jt.is_recurring]
        states = {s.name: s for s in JobSchedule.objects.all()}
        created = 0
        next_wake = MAX_SLEEP
        for job_type in recurring:
            state = states.get(job_type.name)
            if not job_type.is_enabled:
                # Switched off on this host only (JOBS_<NAME>_ENABLED, enabled=False in this
                # version of the code): this scheduler creates nothing for it, and leaves what
                # other hosts scheduled alone.
                continue
            if state is not None and state.paused:
                if state.last_occurrence is not None:
                    reset(job_type.name, "paused")
                continue
            try:
                count, upcoming = self._schedule(job_type, state, now)
            except ScheduleError as exc:
                logger.error("[%s] cannot schedule: %s", job_type.name, exc)
                continue
            created += count
            if upcoming is not None:
                next_wake = min(next_wake, max((upcoming - now).total_seconds(), 0.0))
        self._cancel_removed(set(states) - {jt.name for jt in recurring})
        self._wake_at = time.monotonic() + next_wake
        return created

    def _schedule(self, job_type: JobType, state: JobSchedule | None, now: datetime):
        last = state.last_occurrence if state is not None else None
        # A first look without locks: most ticks find nothing due and write nothing.
        todo = _plan(job_type, last, now)
        if not todo.occurrences:
            return 0, last
        upcoming = todo.occurrences[-1]
        db = jobs_settings.DATABASE
        created = 0
        if state is None:
            # In its own short transaction: on MariaDB, an INSERT IGNORE that meets the row
            # keeps a shared lock on it, which deadlocks against another scheduler's UPDATE below.
            JobSchedule.objects.bulk_create(
                [JobSchedule(name=job_type.name)], ignore_conflicts=True
            )
        with transaction.atomic(using=db):
            # Schedulers of one job take turns on its JobSchedule row and plan again from what
            # the previous one wrote: without this, an insert racing the supersede UPDATE of
            # another scheduler deadlocks on MariaDB. The unique constraint stays the backstop.
            locked = (
                JobSchedule.objects.select_for_update().filter(name=job_type.name)
                .values_list("last_occurrence", "paused").first()
            )
            if locked is None or locked[1]:
                return 0, None  # paused meanwhile
            last = locked[0]
            todo = _plan(job_type, last, now)
            if not todo.occurrences:
                return 0, last
            upcoming = todo.occurrences[-1]
            if todo.supersede_before is not None:
                # Before counting: superseded rows leave room for the occurrence replacing them.
                Job.objects.for_name(job_type.name).scheduled().filter(
                    occurrence__lt=todo.supersede_before
                ).update(
                    status=JobStatus.CANCELLED, finished_at=now, unique_slot=None,
                    error=f"superseded by a later occurrence (catch_up={job_type.catch_up!r})",
                )
            # ``overlap``: while this many occurrences are scheduled or running, no more are
            # created. Those held back are created by a later tick once there is room, or passed
            # over by catch_up when a later occurrence is due by then.
            room = job_type.max_pending_occurrences - (
                Job.objects.for_name(job_type.name).pending_occurrences().count()
            )
            newest = None
            for occurrence in todo.occurrences:
                if last is not None and occurrence <= last:
                    continue
                if room <= 0:
                    break
                made = _create_occurrence(job_type, occurrence, now)
                created += made
                room -= made
                newest = occurrence
            # The newest occurrence created, not the newest planned: one held back is planned
            # again at the next tick.
            if newest is not None:
                JobSchedule.objects.filter(name=job_type.name).filter(
                    Q(last_occurrence__isnull=True) | Q(last_occurrence__lt=newest)
                ).update(last_occurrence=newest, updated_at=now)
        return created, upcoming

    def _cancel_removed(self, names: set[str]) -> None:
        """Recurring jobs gone from the code: their future rows would never run; say why.

        Gone means gone from every live worker: during a deploy, old workers do not know the
        new jobs, and must not cancel what the new ones scheduled.
        """
        if names:
            names -= Worker.objects.registered_names(jobs_settings.WORKER_LOST_AFTER)
        if not names:
            return
        Job.objects.filter(name__in=names, occurrence__isnull=False).scheduled().update(
            status=JobStatus.CANCELLED, finished_at=clock.now(), unique_slot=None,
            error="the recurring job is no longer defined in the code",
        )


def _plan(job_type: JobType, last: datetime | None, now: datetime) -> Plan:
    """What to create at ``now`` for ``job_type``, ``last`` being the newest occurrence created.

    The occurrence right after ``last`` counts as one created ahead of time, as it is when
    ``overlap`` leaves room: held back, it runs late once there is room, and is not one of the
    missed occurrences that ``catch_up`` decides about.
    """
    schedule, zone = job_type.schedule, settings.TIME_ZONE or "UTC"
    if last is not None:
        ahead = schedule.next_after(last, default_zone=zone)
        if last < ahead <= now:
            todo = plan(schedule, ahead, now, job_type.catch_up, default_zone=zone)
            if todo.supersede_before is not None:
                return todo  # a later occurrence supersedes it
            return Plan((ahead, *todo.occurrences), None)
    return plan(schedule, last, now, job_type.catch_up, default_zone=zone)


def _create_occurrence(job_type: JobType, occurrence: datetime, now: datetime) -> int:
    row = Job(
        name=job_type.name,
        data={},
        queue=job_type.queue,
        priority=job_type.priority,
        run_at=occurrence,
        created_at=now,
        max_attempts=job_type.max_attempts,
        lock_key=job_type.lock_key_for({}),
        occurrence=occurrence,
    )
    try:
        with transaction.atomic(using=jobs_settings.DATABASE):
            row.save(using=jobs_settings.DATABASE, force_insert=True)
    except IntegrityError:
        return 0  # another scheduler created this occurrence first
    return 1


def reset(name: str, reason: str) -> None:
    """Forget the schedule position and cancel pending occurrences (pause, disable).

    When the job comes back it starts from its next occurrence, not from what it missed.
    """
    now = clock.now()
    with transaction.atomic(using=jobs_settings.DATABASE):
        JobSchedule.objects.filter(name=name).update(last_occurrence=None, updated_at=now)
        # These occurrences never ran: release them (occurrence=NULL) so that the unique
        # constraint lets a resume within the same interval create the next one again.
        Job.objects.for_name(name).scheduled().filter(occurrence__isnull=False).update(
            status=JobStatus.CANCELLED, finished_at=now, unique_slot=None, occurrence=None,
            error=f"not run: {reason}",
        )
