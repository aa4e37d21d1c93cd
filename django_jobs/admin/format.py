"""Words for durations and cron expressions, as the admin shows them.

``django_jobs.humanize`` is the library-wide home of these helpers; until it exists (or if it
lacks one), the small fallbacks below keep the admin self-contained.
"""

from __future__ import annotations

from datetime import timedelta

_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def _duration_words(delta: timedelta) -> str:
    """``timedelta(seconds=125)`` -> ``"2 min 5 s"``; the two largest units only."""
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 10:
        text = f"{seconds:.1f} s".replace(".0 s", " s")
        return sign + text
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    words = [f"{value} {unit}" for value, unit in parts[:2] if value]
    return sign + " ".join(words)


def _time(minute: str, hour: str) -> str | None:
    if minute.isdigit() and hour.isdigit():
        return f"{int(hour):02d}:{int(minute):02d}"
    return None


def _weekdays(field: str) -> str | None:
    names = []
    for part in field.split(","):
        if "-" in part:
            low, _, high = part.partition("-")
            if not (low.isdigit() and high.isdigit()):
                return None
            names.append(f"{_DAYS[int(low) % 7]} to {_DAYS[int(high) % 7]}")
        elif part.isdigit():
            names.append(_DAYS[int(part) % 7])
        else:
            return None
    return ", ".join(names)


def _cron_words(expression: str) -> str:
    """Common cron shapes in words; anything else comes back as ``cron <expression>``."""
    fields = expression.split()
    if len(fields) != 5:
        return f"cron {expression}"
    minute, hour, dom, month, dow = fields
    every_day = dom == "*" and month == "*"
    if every_day and dow == "*":
        if minute == "*" and hour == "*":
            return "every minute"
        if minute.startswith("*/") and minute[2:].isdigit() and hour == "*":
            return f"every {int(minute[2:])} minutes"
        if minute.isdigit() and hour == "*":
            return f"every hour at minute {int(minute)}"
        if minute.isdigit() and hour.startswith("*/") and hour[2:].isdigit():
            return f"every {int(hour[2:])} hours at minute {int(minute)}"
    at = _time(minute, hour)
    if at is None:
        return f"cron {expression}"
    if every_day and dow == "*":
        return f"every day at {at}"
    if every_day:
        days = _weekdays(dow)
        return f"every {days} at {at}" if days else f"cron {expression}"
    if dom.isdigit() and month == "*" and dow == "*":
        return f"on day {int(dom)} of every month at {at}"
    return f"cron {expression}"


try:  # pragma: no cover - depends on which helpers the library ships
    from ..humanize import duration_words
except ImportError:
    duration_words = _duration_words

try:  # pragma: no cover
    from ..humanize import cron_words
except ImportError:
    cron_words = _cron_words

try:  # pragma: no cover
    from ..humanize import every_words
except ImportError:

    def every_words(delta: timedelta) -> str:
        return "every " + duration_words(delta)
