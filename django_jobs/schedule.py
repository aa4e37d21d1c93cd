"""Recurrence maths for ``cron=``, ``every=`` and ``next_run=``. Pure: no ORM.

Cron expressions are read in the job's time zone and the result is returned in UTC.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

logger = logging.getLogger("django_jobs")


class ScheduleError(ValueError):
    """A schedule that cannot be used, with a message fit for a person."""


def validate_cron(expression: str) -> None:
    """Raise ``ScheduleError`` unless ``expression`` is a valid 5-field cron expression."""
    if not isinstance(expression, str):
        raise ScheduleError(f"cron must be a string, not {type(expression).__name__}")
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"cron {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    if not croniter.is_valid(expression):
        raise ScheduleError(f"cron {expression!r} is not a valid cron expression")


def get_zone(name: str | tzinfo | None, default: str) -> tzinfo:
    if isinstance(name, tzinfo):
        return name
    key = name or default
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {key!r}") from exc


def _unambiguous(local: datetime) -> bool:
    """``True`` unless ``local`` is a wall time that the zone shows twice (clocks fell back)."""
    return local.replace(fold=0).utcoffset() == local.replace(fold=1).utcoffset()


@dataclass(frozen=True)
class Schedule:
    """When a recurring job runs: exactly one of cron, every or next_run is set."""

    cron: str | None = None
    every: timedelta | None = None
    next_run: Callable[[datetime | None], datetime] | None = None
    timezone: str | tzinfo | None = None

    def next_after(self, after: datetime, *, default_zone: str = "UTC") -> datetime:
        """The first occurrence strictly after the aware datetime ``after``, in UTC."""
        if self.cron:
            zone = get_zone(self.timezone, default_zone)
            local = after.astimezone(zone)
            it = croniter(self.cron, local)
            hourly = self.cron.split()[1] == "*"
            for _ in range(200):  # an overlap is at most a couple of hours of minutes
                nxt = it.get_next(datetime).astimezone(zone)
                # When clocks fall back a wall time happens twice; a job at fixed hours runs at
                # the first pass only (fold=0). Jobs of every hour run in both passes.
                if hourly or not nxt.fold or _unambiguous(nxt):
                    break
            return nxt.astimezone(UTC)
        if self.every:
            # Aligned to multiples of ``every`` since the epoch, so every scheduler, whatever
            # its clock reading, names the same occurrences.
            steps = (after.astimezone(UTC) - _EPOCH) // self.every + 1
            return _EPOCH + steps * self.every
        if self.next_run:
            return self.next_run(after).astimezone(UTC)
        raise ScheduleError("this job has no schedule")

    def anchor_before(
        self, moment: datetime, count: int, *, default_zone: str = "UTC"
    ) -> datetime | None:
        """An instant before the ``count`` latest occurrences at or before ``moment``.

        Walking ``next_after()`` from it finds those occurrences in a few steps, however long
        ago the last one was. ``None`` for ``next_run``: a callable can only be walked forward.
        """
        if self.cron:
            zone = get_zone(self.timezone, default_zone)
            it = croniter(self.cron, moment.astimezone(zone))
            # One more than asked, and three hours more: croniter's backward steps need not
            # agree with next_after() around a daylight saving change; the walk forward decides.
            for _ in range(count + 1):
                anchor = it.get_prev(datetime)
            return anchor.astimezone(UTC) - timedelta(hours=3)
        if self.every:
            latest = _EPOCH + ((moment.astimezone(UTC) - _EPOCH) // self.every) * self.every
            return latest - count * self.every
        return None


#: Most missed occurrences ``catch_up="all"`` runs after downtime; older ones are dropped.
MAX_CATCH_UP = 100
#: Occurrences of a ``next_run`` callable walked through when looking for the latest missed one.
_MAX_WALK = 100_000


@dataclass(frozen=True)
class Plan:
    """What the scheduler should create now for one recurring job."""

    occurrences: tuple[datetime, ...]  # rows to create, oldest first (the last is the future one)
    supersede_before: datetime | None  # pending rows of earlier occurrences are superseded


def plan(
    schedule: Schedule,
    last: datetime | None,
    now: datetime,
    catch_up: str,
    *,
    default_zone: str = "UTC",
) -> Plan:
    """Occurrences to create at ``now`` given the last one created (``None``: never, or reset).

    A recurring job always has its next future occurrence created ahead of time. Occurrences
    missed while no scheduler ran are handled by ``catch_up``: ``"latest"`` runs only the most
    recent missed one, ``"skip"`` none, ``"all"`` each of them (at most ``MAX_CATCH_UP``).
    """
    if last is None:
        if schedule.next_run is not None:
            first = schedule.next_run(None).astimezone(UTC)
            return Plan((max(first, now),), None)
        return Plan((schedule.next_after(now, default_zone=default_zone),), None)
    if last > now:
        return Plan((), None)  # the next occurrence is already created and not due yet
    wanted = MAX_CATCH_UP if catch_up == "all" else 1
    # Start the walk just before the missed occurrences that matter, not at ``last``: after a
    # long downtime there may be millions in between.
    anchor = schedule.anchor_before(now, wanted, default_zone=default_zone)
    current = last if anchor is None or anchor <= last else anchor
    missed: list[datetime] = []
    for _ in range(_MAX_WALK):
        following = schedule.next_after(current, default_zone=default_zone)
        if following <= current:
            raise ScheduleError(
                f"the schedule went backwards: {following.isoformat()} after {current.isoformat()}"
            )
        if following > now:
            break
        missed.append(following)
        if len(missed) > wanted:
            del missed[0]
        current = following
    else:
        # Only a next_run callable gets here. What was found is years stale: plan from now
        # instead, as after a reset, so nothing outdated runs.
        logger.warning(
            "gave up looking for the latest missed occurrence after %d steps (reached %s); "
            "planning from now on",
            _MAX_WALK, current.isoformat(),
        )
        following = schedule.next_after(now, default_zone=default_zone)
        return Plan((following,), following)
    if not missed:
        return Plan((following,), None)
    if catch_up == "all":
        return Plan((*missed, following), None)
    if catch_up == "skip":
        return Plan((following,), following)
    return Plan((missed[-1], following), missed[-1])
