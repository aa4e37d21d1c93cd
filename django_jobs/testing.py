"""Helpers for your own test suite: run due jobs in the test, move time, run jobs eagerly.

```python
from django_jobs.testing import eager, frozen_clock, run_due_jobs
```

* ``run_due_jobs()`` runs every due job now, in the test process, the way a worker would:
  locks, disabled jobs, paused queues, retries and recurring schedules are honoured.
* ``frozen_clock()`` stops django-jobs' clock and lets the test move it, so recurring jobs and
  delayed retries come due without sleeping.
* ``eager()`` makes ``enqueue()`` run the job at once, in the caller (``DJANGO_JOBS["EAGER"]``
  does the same for a whole test settings module).

See docs/testing.md for pytest and ``django.test.TestCase`` examples.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.utils import timezone

from . import clock
from .eager import restore_eager, set_eager
from .models import Job
from .worker.inprocess import DEFAULT_MAX_RUNS, run_due

__all__ = ["TestClock", "eager", "frozen_clock", "run_due_jobs"]


def run_due_jobs(
    *,
    names: Iterable[str] | None = None,
    queues: Iterable[str] | None = None,
    schedule: bool = True,
    max_runs: int = DEFAULT_MAX_RUNS,
) -> list[Job]:
    """Run every job due now (by django-jobs' clock) in this process, until none is due.

    ``names`` / ``queues`` limit what runs; ``schedule=False`` leaves recurring jobs'
    occurrences uncreated. Failures do not raise: they are recorded on the rows, which are
    returned in the order they ran, as they ended. Retries whose delay has passed run in the
    same call; later ones after ``clock.advance()`` and another call. Raises ``RuntimeError``
    after ``max_runs`` runs (a job that keeps enqueueing itself).
    """
    return run_due(names=names, queues=queues, schedule=schedule, max_runs=max_runs)


class TestClock:
    """A clock that stands still until the test moves it."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime) -> None:
        if timezone.is_naive(start):
            raise ValueError("the clock needs an aware datetime (use django.utils.timezone)")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; return the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("the clock only moves forward; use set() to go back")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to ``when`` (aware)."""
        if timezone.is_naive(when):
            raise ValueError("the clock needs an aware datetime (use django.utils.timezone)")
        with self._lock:
            self._now = when
            return when

    def __repr__(self) -> str:
        return f"<TestClock {self.now().isoformat()}>"


@contextmanager
def frozen_clock(start: datetime | None = None) -> Iterator[TestClock]:
    """Freeze django-jobs' clock at ``start`` (default: now) for the ``with`` block.

    Only django-jobs reads this clock (run_at, schedules, leases, pruning, timestamps it
    writes); ``timezone.now()`` elsewhere, and worker subprocesses, keep real time.
    """
    test_clock = TestClock(start or timezone.now())
    previous = clock.install(test_clock.now)
    try:
        yield test_clock
    finally:
        clock.install(previous)


@contextmanager
def eager(*, propagate: bool = False) -> Iterator[None]:
    """Within the block, ``enqueue()`` runs the job at once in this process.

    The run goes through a row, the lock and the bookkeeping like a worker's; ``run_at`` and
    ``delay`` are ignored. ``enqueue()`` returns the row as it ended. With ``propagate=True``
    the job's exception is raised from ``enqueue()``; otherwise it is only recorded.
    """
    previous = set_eager(True, propagate=propagate)
    try:
        yield
    finally:
        restore_eager(previous)
