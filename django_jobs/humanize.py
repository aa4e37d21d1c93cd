"""Durations and schedules in words, for people: the CLI, the admin and ``registry.status()``.

Pure: no ORM, no settings.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
#: Job statuses in the order a job goes through them (``counts_words``).
_STATUS_ORDER = ("waiting", "scheduled", "running", "succeeded", "failed", "cancelled", "skipped")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)


def duration_words(delta: timedelta) -> str:
    """``timedelta(seconds=125)`` -> ``"2 min 5 s"``: the two largest units, rounded down.

    Under one second gives tenths (``"0.4 s"``); negative durations get a leading ``-``.
    """
    seconds = delta.total_seconds()
    if seconds < 0:
        return "-" + duration_words(-delta)
    if seconds < 1:
        return "0 s" if seconds == 0 else f"{max(int(seconds * 10), 1) / 10:g} s"
    whole = int(seconds)
    parts = []
    for unit, size in _UNITS:
        count, whole = divmod(whole, size)
        if count or parts:
            parts.append((count, unit))
        if len(parts) == 2:
            break
    return " ".join(f"{count} {unit}" for count, unit in parts if count) or "0 s"


def counts_words(counts: dict[str, int]) -> str:
    """``{"running": 1, "succeeded": 3}`` -> ``"4 members: 3 succeeded, 1 running"``: a
    workflow's members by status, in the order a job goes through them."""
    order = {status: n for n, status in enumerate(_STATUS_ORDER)}
    found = sorted((status for status, n in counts.items() if n),
                   key=lambda status: (order.get(status, len(order)), status))
    total = sum(counts.values())
    words = f"{total} member{'' if total == 1 else 's'}"
    if not found:
        return words
    return words + ": " + ", ".join(f"{counts[status]} {status}" for status in found)


def ago_words(delta: timedelta) -> str:
    """How long ago, for people: ``"just now"``, ``"45 s ago"``, ``"3 min 5 s ago"``."""
    if delta.total_seconds() < 1:
        return "just now"
    return f"{duration_words(delta)} ago"


def every_words(delta: timedelta) -> str:
    """``timedelta(minutes=5)`` -> ``"every 5 minutes"``; an hour -> ``"every hour"``."""
    seconds = delta.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"every {unit}" if count == 1 else f"every {count} {unit}s"
    return f"every {seconds:g} s"


def _int(field: str, low: int, high: int) -> int | None:
    if field.isdigit() and low <= int(field) <= high:
        return int(field)
    return None


def _ints(field: str, low: int, high: int) -> list[int] | None:
    values = [_int(part, low, high) for part in field.split(",")]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def _day_names(field: str) -> str | None:
    """``1-5`` -> ``weekdays``; ``0,6`` -> ``weekends``; ``1,3`` -> ``Monday and Wednesday``."""
    if field in ("1-5", "mon-fri", "MON-FRI"):
        return "weekdays"
    if field in ("0,6", "6,0", "sat,sun", "SAT,SUN"):
        return "weekends"
    days = _ints(field, 0, 7)
    if days is None:
        return None
    names = [_DAYS[d % 7] for d in days]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def cron_words(expression: str) -> str:
    """A readable description of common cron expressions; the expression itself otherwise.

    ``"*/5 * * * *"`` -> ``"every 5 minutes"``; ``"0 * * * *"`` -> ``"at minute 0 of every
    hour"``; ``"30 2 * * *"`` -> ``"daily at 02:30"``; ``"0 9 * * 1-5"`` -> ``"on weekdays at
    09:00"``.
    """
    fields = expression.split() if isinstance(expression, str) else []
    if len(fields) != 5:
        return str(expression)
    minute, hour, dom, month, dow = fields
    if (dom, month, dow) == ("*", "*", "*"):
        if (minute, hour) == ("*", "*"):
            return "every minute"
        step = re.fullmatch(r"\*/(\d+)", minute)
        if step and hour == "*":
            n = int(step.group(1))
            return "every minute" if n == 1 else f"every {n} minutes"
        m = _int(minute, 0, 59)
        if m is not None and hour == "*":
            return f"at minute {m} of every hour"
        hstep = re.fullmatch(r"\*/(\d+)", hour)
        if m is not None and hstep:
            n = int(hstep.group(1))
            return f"at minute {m} of every hour" if n == 1 else (
                f"every {n} hours at minute {m}"
            )
    m = _int(minute, 0, 59)
    hours = _ints(hour, 0, 23)
    if m is None or hours is None:
        return expression
    times = [f"{h:02d}:{m:02d}" for h in hours]
    at = "at " + (times[0] if len(times) == 1 else ", ".join(times[:-1]) + " and " + times[-1])
    if (dom, month, dow) == ("*", "*", "*"):
        return f"daily {at}"
    if dom == "*" and month == "*":
        days = _day_names(dow)
        if days is None:
            return expression
        prefix = "on" if days in ("weekdays", "weekends") else "every"
        return f"{prefix} {days} {at}"
    day = _int(dom, 1, 31)
    if day is not None and dow == "*":
        if month == "*":
            return f"monthly on the {_ordinal(day)} {at}"
        month_number = _int(month, 1, 12)
        if month_number is not None:
            return f"yearly on {_MONTHS[month_number - 1]} {day} {at}"
    return expression


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|d|h|m|min|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> timedelta:
    """``"90"``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` -> ``timedelta``; ``ValueError`` else.

    A bare number is seconds.
    """
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration")
    total = 0.0
    position = 0
    while position < len(cleaned):
        match = _DURATION.match(cleaned, position)
        if match is None or match.end() == position:
            raise ValueError(
                f"cannot read {text!r} as a duration; use seconds or e.g. 30s, 5m, 1h30m, 2d"
            )
        unit = match.group(2).lower() if match.group(2) else None
        total += float(match.group(1)) * _UNIT_SECONDS[unit]
        position = match.end()
    return timedelta(seconds=total)
