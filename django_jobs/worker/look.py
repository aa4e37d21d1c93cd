"""Whether the sweep has work: a look, sent with the heartbeat, that lets an idle worker skip it.

The sweep (``rescue.py``) sends its statements every ``RESCUE_INTERVAL``, and on an idle
system they all find nothing. A ``Look`` asks the same questions in one query, one ``EXISTS``
each, cut to one row: overdue peers, runs of processes that are gone, runs without a process
whose lease ran out, lock keys of processes that are no longer live. The worker hands its
``Look`` to its monitor (layer 4, which may not import the worker), and the monitor sends it in
the heartbeat's own statement on PostgreSQL, or on its own when ``RESCUE_INTERVAL`` is shorter
than ``HEARTBEAT_INTERVAL``.

The sweep is skipped only on a fresh look that found nothing. Anything else runs it in full:
no look yet (other databases, start-up), a look older than two intervals (the monitor is
behind), a heartbeat that failed (``forget()``), work found. A look that finds work calls
``on_work`` (the worker wakes its main loop, which sweeps at once).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from ..conf import jobs_settings
from ..models import Job, JobTypeLock
from .rescue import overdue_peers


class Look:
    FIELDS = ("overdue", "orphaned", "stale", "stale_locks")

    def __init__(self, on_work: Callable[[], object] | None = None) -> None:
        self._on_work = on_work
        # The last look: (monotonic time, what it found); None when there is none to trust.
        # (One assignment each way: the monitor writes it, the main loop reads it.)
        self._last: tuple[float, dict[str, bool]] | None = None

    # -- what the monitor calls -----------------------------------------------------------------

    def sql(self, me: uuid.UUID | None) -> tuple[str, list]:
        """A SELECT list of one boolean column per field, and its parameters."""
        lost_after = jobs_settings.WORKER_LOST_AFTER
        querysets = (
            overdue_peers(me, lost_after).values("pk"),
            Job.objects.orphaned().values("pk"),
            Job.objects.stale().values("pk"),
            JobTypeLock.objects.stale().filter(owner__isnull=False).values("pk"),
        )
        db = jobs_settings.DATABASE
        parts, params = [], []
        for field, queryset in zip(self.FIELDS, querysets, strict=True):
            sql, more = queryset.order_by()[:1].query.get_compiler(using=db).as_sql()
            parts.append(f"EXISTS({sql}) AS {field}")
            params.extend(more)
        return ", ".join(parts), params

    def due(self) -> bool:
        """Whether a look of its own is due: none is trusted, or the last one is older than
        ``RESCUE_INTERVAL`` (which may be shorter than the heartbeat's)."""
        last = self._last
        return last is None or time.monotonic() - last[0] >= jobs_settings.RESCUE_INTERVAL

    def record(self, row) -> None:
        """A look's answer, in ``FIELDS`` order."""
        found = {field: bool(value) for field, value in zip(self.FIELDS, row, strict=True)}
        self._last = (time.monotonic(), found)
        if self.needs_sweep(found, True) and self._on_work is not None:
            self._on_work()

    def forget(self) -> None:
        """The heartbeat failed, or went without a look: trust no earlier answer."""
        self._last = None

    # -- what the worker's loop asks --------------------------------------------------------------

    def sweep_needed(self, write_off_others: bool) -> bool:
        """Whether the sweep may find work: ``True`` unless a fresh look found none."""
        found = self._fresh()
        return found is None or self.needs_sweep(found, write_off_others)

    def sweep_wanted(self, write_off_others: bool) -> bool:
        """Whether a fresh look found work (the main loop must not sleep past the sweep's
        next turn)."""
        found = self._fresh()
        return found is not None and self.needs_sweep(found, write_off_others)

    @staticmethod
    def needs_sweep(found: dict[str, bool], write_off_others: bool) -> bool:
        """Whether an answer leaves work for a sweep that may (or may not) write off peers."""
        return bool(found["orphaned"] or found["stale"] or found["stale_locks"]
                    or (found["overdue"] and write_off_others))

    def _fresh(self) -> dict[str, bool] | None:
        """What the last look found, if it was taken within two look intervals."""
        last = self._last
        every = min(jobs_settings.HEARTBEAT_INTERVAL, jobs_settings.RESCUE_INTERVAL)
        if last is None or time.monotonic() - last[0] > 2 * every:
            return None
        return last[1]
