"""Backoff policy for failed jobs. Pure: no ORM, no settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .humanize import duration_words


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


def next_step(job: Any, job_type: Any, retry: bool = True) -> str:
    """What follows a failure, for the log: ``"attempt 2 of 3, retrying in 30 s"``."""
    attempt, most = job.attempt, job.max_attempts
    if not retry or not should_retry(attempt, most):
        return f"attempt {attempt} of {most}, final attempt" if most > 1 else "final attempt"
    delay = retry_delay(attempt, job_type.retry_delay, job_type.retry_backoff)
    return f"attempt {attempt} of {most}, retrying in {duration_words(delay)}"
