"""Bounds and names shared by ``@job`` and ``enqueue()``: pure, no ORM, no settings."""

from __future__ import annotations

from typing import Any

NAME_MAX_LENGTH = 200
QUEUE_MAX_LENGTH = 100
PRIORITY_RANGE = (-32768, 32767)
#: Keyword arguments of ``enqueue()`` that are options, not payload: a job function cannot
#: take a parameter of these names (it could never receive it).
ENQUEUE_OPTIONS = frozenset(
    {"run_at", "delay", "priority", "queue", "unique_key", "created_by", "meta", "after"}
)


def check_priority(priority: Any) -> int:
    low, high = PRIORITY_RANGE
    if isinstance(priority, bool) or not isinstance(priority, int) or not low <= priority <= high:
        raise ValueError(f"priority must be an integer from {low} to {high}, not {priority!r}")
    return priority


def positional_error(name: str, method: str, args: tuple[Any, ...]) -> TypeError:
    """The payload is stored by name, so positional arguments have nowhere to go."""
    return TypeError(
        f"{method}() of job {name!r} got {len(args)} positional argument"
        f"{'s' if len(args) > 1 else ''} ({', '.join(map(repr, args[:3]))}): use keyword "
        f"arguments, e.g. {method}(user_id=7), named as the function's parameters"
    )
