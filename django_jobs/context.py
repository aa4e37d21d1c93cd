"""``JobContext``: what a running job sees of itself: payload, progress, cancellation, lease."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import clock
from .conf import jobs_settings
from .exceptions import JobCancelled, JobTimeout, Snooze
from .payload import storable_text
from .types import DependencyOutcome

if TYPE_CHECKING:
    from .execution import Execution
    from .models import Job

_logger = logging.getLogger("django_jobs.job")


class _PrefixAdapter(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['job_name']}] {msg}", kwargs


class JobContext:
    """First argument of every job function."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution
        self.job: Job = execution.job
        self.data: dict[str, Any] = execution.job.data
        self.attempt: int = execution.job.attempt
        self.log = _PrefixAdapter(_logger, {"job_name": execution.job.name})
        self._lock = threading.Lock()
        self._cancel_requested = False
        self._last_cancel_check = 0.0
        self._last_write = 0.0
        self._pending: dict[str, Any] | None = None
        self._started = time.monotonic()
        self._dependencies: list[DependencyOutcome] | None = None

    def __repr__(self) -> str:
        return f"<JobContext {self.job.name} {self.job.pk}>"

    # -- cancellation ------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested, the timeout passed or the claim was lost.

        In a worker the monitor thread reads cancellation requests (every
        ``CANCEL_CHECK_INTERVAL`` seconds) so this costs no query; elsewhere the database is
        asked at most that often.
        """
        execution = self._execution
        if execution.timed_out or execution.lost or execution.past_deadline:
            return True
        if execution.monitored:
            return execution.cancel_requested
        if self._cancel_requested:
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= jobs_settings.CANCEL_CHECK_INTERVAL:
            self._last_cancel_check = now
            row = execution.fenced().values_list("pk", "cancel_requested_at").first()
            # No row under our claim: somebody took the run away from us.
            if row is None:
                if not execution.finished.is_set():
                    execution.lost = True
                return True
            self._cancel_requested = row[1] is not None
        return self._cancel_requested

    def check_cancelled(self) -> None:
        """Raise ``JobTimeout`` past the timeout, ``JobCancelled`` when cancelled."""
        if not self.cancelled:
            return
        execution = self._execution
        if execution.timed_out or execution.past_deadline:
            raise JobTimeout(f"job {self.job.name!r} ran past its timeout")
        raise JobCancelled(f"job {self.job.name!r} was cancelled")

    def snooze(self, seconds: float | timedelta) -> None:
        """Stop here and run again in ``seconds``, without using an attempt (raises
        ``Snooze``; the code after this call does not run)."""
        raise Snooze(seconds)

    def extend_lock(self, seconds: float | timedelta) -> datetime:
        """Make sure at least ``seconds`` remain before this run times out or goes stale."""
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if seconds <= 0:
            raise ValueError("extend_lock() takes a positive number of seconds")
        return self._execution.extend(float(seconds))

    # -- progress ----------------------------------------------------------------------------

    def progress(
        self,
        fraction: float,
        message: str | None = None,
        eta: timedelta | float | None = None,
    ) -> None:
        """Report how far the run is, from 0 to 1 (clamped); writes are throttled.

        Without ``eta``, one is estimated from the pace so far once 5% is done.
        """
        try:
            fraction = min(max(float(fraction), 0.0), 1.0)
        except (TypeError, ValueError):
            raise TypeError(f"progress() takes a number from 0 to 1, not {fraction!r}") from None
        if fraction != fraction:  # NaN
            raise ValueError("progress() got NaN")
        now = clock.now()
        if eta is None and fraction >= 0.05:
            elapsed = time.monotonic() - self._started
            eta_at = now + timedelta(seconds=elapsed / fraction * (1 - fraction))
        elif eta is None:
            eta_at = None
        else:
            eta_at = now + (eta if isinstance(eta, timedelta) else timedelta(seconds=float(eta)))
        fields: dict[str, Any] = {"progress": fraction, "eta": eta_at}
        if message is not None:
            fields["progress_message"] = storable_text(str(message), jobs_settings.MAX_TEXT_LENGTH)
        with self._lock:
            if self._pending:
                fields = {**self._pending, **fields}
            self._pending = fields
            due = time.monotonic() - self._last_write >= jobs_settings.PROGRESS_THROTTLE
        if due or fraction >= 1.0:
            self.flush()

    def flush(self) -> None:
        """Write pending progress now (done for you at the end of the run).

        In a worker the write is handed to the monitor thread, which makes it on its own
        connection: never inside a transaction the job holds open, never waiting on it.
        """
        with self._lock:
            fields, self._pending = self._pending, None
            self._last_write = time.monotonic()
        if not fields:
            return
        execution = self._execution
        if execution.monitored:
            execution.queue_progress(fields)
        else:
            execution.update(**fields)
        for key, value in fields.items():
            setattr(self.job, key, value)

    def take_pending(self) -> dict[str, Any] | None:
        """Progress not written yet (throttled, or still with the monitor): the run's final
        write carries it."""
        with self._lock:
            fields, self._pending = self._pending, None
        handed = self._execution.take_progress()
        if handed or fields:
            return {**(handed or {}), **(fields or {})}
        return None

    # -- workflows ---------------------------------------------------------------------------

    @property
    def workflow_id(self) -> Any:
        """The workflow this run belongs to, or ``None``."""
        return self.job.workflow_id

    def dependencies(self) -> list[DependencyOutcome]:
        """The jobs this run waited for (``after=``, the step before it in a chain, the
        members of a group for its callbacks), in the order given, as they ended: for a job
        that was retried, its last attempt."""
        if self._dependencies is None:
            # Imported when called: this module loads with the package (``JobContext`` is
            # public), while Django populates its apps, before the models exist.
            from .models import JobDependency

            rows = (
                JobDependency.objects.filter(job=self.job.pk).order_by("position", "pk")
                .values_list("depends_on_id", "depends_on__name", "depends_on__status",
                             "depends_on__result", "depends_on__error")
            )
            self._dependencies = [
                DependencyOutcome(id=pk, name=name or "", status=status or "gone",
                                  result=result, error=(error or "").split("\n", 1)[0])
                for pk, name, status, result, error in rows
            ]
        return self._dependencies

    def dependency_results(self) -> list[Any]:
        """The results of ``dependencies()``, in order (``None`` for one that did not
        succeed)."""
        return [dep.result for dep in self.dependencies()]

    def dependency_counts(self) -> dict[str, int]:
        """How the jobs this run waited for ended: ``{"succeeded": 998, "failed": 2}``, a
        summary for large groups."""
        counts: dict[str, int] = {}
        for dep in self.dependencies():
            counts[dep.status] = counts.get(dep.status, 0) + 1
        return counts

    @property
    def previous_result(self) -> Any:
        """The result of the one job this run waited for (the previous step of a chain);
        ``None`` when it waited for none. Raises ``ValueError`` when it waited for several:
        read ``dependency_results()`` then."""
        dependencies = self.dependencies()
        if len(dependencies) > 1:
            raise ValueError(
                f"job {self.job.name!r} ran after {len(dependencies)} jobs: "
                "ctx.dependency_results() has their results"
            )
        return dependencies[0].result if dependencies else None

    def phases(self, weights: Mapping[str, float]) -> Phases:
        """Weighted phases: ``with ctx.phases({...})("name") as p: p.progress(0.5)``."""
        return Phases(self, weights)


class Phases:
    """Maps the progress of each named phase onto the overall 0..1 by weight."""

    def __init__(self, ctx: JobContext, weights: Mapping[str, float]) -> None:
        if not weights:
            raise ValueError("phases() needs at least one phase")
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise ValueError(f"phase {name!r} has weight {weight!r}; weights are positive")
        self._ctx = ctx
        self._weights = dict(weights)
        self._total = float(sum(weights.values()))
        self._done: set[str] = set()

    def _offset(self, name: str) -> float:
        """Weight of the phases declared before ``name``: phases run in declaration order."""
        offset = 0.0
        for other, weight in self._weights.items():
            if other == name:
                break
            offset += weight
        return offset

    @contextmanager
    def __call__(self, name: str) -> Iterator[Phase]:
        if name not in self._weights:
            raise KeyError(f"unknown phase {name!r}; declared: {', '.join(self._weights)}")
        phase = Phase(self, name)
        phase.progress(0.0)
        yield phase
        phase.progress(1.0)
        self._done.add(name)

    def report(self, name: str, fraction: float, message: str | None, eta: Any) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        overall = (self._offset(name) + self._weights[name] * fraction) / self._total
        label = f"{name}: {message}" if message else name
        self._ctx.progress(overall, message=label, eta=eta)


class Phase:
    def __init__(self, phases: Phases, name: str) -> None:
        self._phases = phases
        self.name = name

    def progress(self, fraction: float, message: str | None = None, eta: Any = None) -> None:
        self._phases.report(self.name, fraction, message, eta)
