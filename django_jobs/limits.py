"""Flow control: what a concurrency or rate limit is, read from ``@job`` and ``QUEUES``.

Pure: no ORM. The claim (``django_jobs.slots``) enforces these limits in the database.

Two scopes of limits exist:

- a job type's (``@job(concurrency=..., rate_limit=..., concurrency_key=...)``), counted per
  *limit key*: the job's name, or ``"<name>:<key>"`` with a ``concurrency_key``. The key is
  computed at enqueue and stored on the row (``Job.limit_key``);
- a queue's (``DJANGO_JOBS["QUEUES"]``), counted over every run of the queue.

A limit's *group* names what it counts, in the slot and token tables: ``"job:<limit key>"``
or ``"queue:<queue>"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .conf import jobs_settings

#: Seconds of each rate unit.
RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smhd])\s*$")
#: Keys of a queue's entry in ``DJANGO_JOBS["QUEUES"]``.
QUEUE_OPTIONS = ("concurrency", "rate_limit")
#: A rate limit keeps one token row per start it allows in its period: bounded, so that a
#: mistyped "1000000/d" cannot fill the table.
MAX_RATE = 100_000


@dataclass(frozen=True)
class Rate:
    """At most ``count`` claims in any ``seconds``-long interval (a sliding window)."""

    count: int
    seconds: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"

    @property
    def per(self) -> str:
        """``"this minute"``-like words for a period, as the admin shows current use."""
        return f"per {UNIT_WORDS[self.unit]}"


def parse_rate(value: Any, what: str = "rate_limit") -> Rate:
    """``"100/m"`` -> ``Rate(100, 60, "m")``; ``ValueError`` naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise ValueError(
            f"{what} must be a string like '100/m' (N/s, N/m, N/h or N/d), not {value!r}"
        )
    match = _RATE.match(value)
    if match is None:
        raise ValueError(
            f"{what} {value!r} is not a rate: write N/s, N/m, N/h or N/d, e.g. '100/m'"
        )
    count, unit = int(match.group(1)), match.group(2)
    if count < 1:
        raise ValueError(f"{what} {value!r} allows no run at all: N must be at least 1")
    if count > MAX_RATE:
        raise ValueError(f"{what} {value!r} is more than {MAX_RATE} per period: use a "
                         "shorter unit")
    return Rate(count, RATE_UNITS[unit], unit)


def check_concurrency(value: Any, what: str = "concurrency") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer of at least 1, not {value!r}")
    return value


@dataclass(frozen=True)
class Limit:
    """The limits of one group: at most ``concurrency`` running, at most ``rate`` claimed."""

    group: str
    concurrency: int | None = None
    rate: Rate | None = None


def job_group(limit_key: str) -> str:
    return f"job:{limit_key}"


def queue_group(queue: str) -> str:
    return f"queue:{queue}"


def queue_limits(setting: Mapping[str, Any] | None) -> dict[str, Limit]:
    """``{queue: Limit}`` from ``DJANGO_JOBS["QUEUES"]`` (validated by the system checks;
    an entry that is not valid is ignored here, the checks say why)."""
    found: dict[str, Limit] = {}
    if not isinstance(setting, Mapping):
        return found
    for queue, options in setting.items():
        if not isinstance(queue, str) or not isinstance(options, Mapping):
            continue
        try:
            concurrency = options.get("concurrency")
            if concurrency is not None:
                check_concurrency(concurrency)
            rate = options.get("rate_limit")
            parsed = parse_rate(rate) if rate is not None else None
        except ValueError:
            continue
        if concurrency is not None or parsed is not None:
            found[queue] = Limit(queue_group(queue), concurrency, parsed)
    return found


def queue_problems(setting: Any, known_queues: Iterable[str] = ()) -> list[str]:
    """What is wrong with a ``QUEUES`` setting, one sentence each (for the system checks)."""
    if not isinstance(setting, Mapping):
        return [f"DJANGO_JOBS['QUEUES'] should be a dict of queue name to options, not "
                f"{type(setting).__name__}."]
    problems = []
    for queue, options in setting.items():
        where = f"DJANGO_JOBS['QUEUES'][{queue!r}]"
        if not isinstance(queue, str) or not queue:
            problems.append(f"{where}: a queue name must be a non-empty string.")
            continue
        if not isinstance(options, Mapping):
            problems.append(f"{where} should be a dict such as {{'concurrency': 5, "
                            f"'rate_limit': '10/s'}}, not {type(options).__name__}.")
            continue
        for key in options:
            if key not in QUEUE_OPTIONS:
                problems.append(f"{where} has an unknown key {key!r}; known keys: "
                                f"{', '.join(QUEUE_OPTIONS)}.")
        if "concurrency" in options:
            try:
                check_concurrency(options["concurrency"], f"{where}['concurrency']")
            except ValueError as exc:
                problems.append(f"{exc}.")
        if "rate_limit" in options:
            try:
                parse_rate(options["rate_limit"], f"{where}['rate_limit']")
            except ValueError as exc:
                problems.append(f"{exc}.")
    return problems


def may_hold_slots(limit_key: str | None, queue: str) -> bool:
    """Whether a claimed row with this limit key and queue may hold slots, so that freeing
    what it holds takes a delete by run rather than by its lock key."""
    return bool(limit_key) or queue in queue_limits(jobs_settings.QUEUES)
