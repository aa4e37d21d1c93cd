"""Recurrence maths for ``cron=``, ``every=`` and ``next_run=``. Pure: no ORM.

Cron expressions are read in the job's time zone and the result is returned in UTC.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import croniter


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
            nxt = croniter(self.cron, local).get_next(datetime)
            return nxt.astimezone(UTC)
        if self.every:
            return (after + self.every).astimezone(UTC)
        if self.next_run:
            return self.next_run(after).astimezone(UTC)
        raise ScheduleError("this job has no schedule")
