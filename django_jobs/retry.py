"""Backoff policy for failed jobs. Pure: no ORM, no settings."""

from __future__ import annotations

from datetime import timedelta


def retry_delay(attempt: int, base: timedelta, backoff: float) -> timedelta:
    """Delay before the run that follows failed attempt ``attempt`` (1-based).

    Attempt n waits ``base * backoff ** (n - 1)``: 30 s, 60 s, 120 s... with the defaults.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    return base * (backoff ** (attempt - 1))


def should_retry(attempt: int, max_attempts: int) -> bool:
    """Whether a failure of attempt ``attempt`` leaves attempts to make."""
    return attempt < max_attempts
