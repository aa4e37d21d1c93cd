"""The time django-jobs reads: ``django.utils.timezone.now()`` unless a test clock is installed.

Every timestamp django-jobs writes or compares (run_at, leases, schedules, pruning) comes from
``now()``, so a test can move time with ``django_jobs.testing.frozen_clock()`` and see recurring
jobs come due, retries wake up and leases run out without sleeping. The installed clock is
process-wide (worker threads see it too); worker subprocesses keep real time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

_source: Callable[[], datetime] | None = None


def now() -> datetime:
    """The current time, aware, as django-jobs sees it."""
    source = _source
    return source() if source is not None else timezone.now()


def install(source: Callable[[], datetime] | None) -> Callable[[], datetime] | None:
    """Make ``source`` the clock (``None``: real time again); return the previous one."""
    global _source
    previous, _source = _source, source
    return previous
