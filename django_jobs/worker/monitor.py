"""The monitor thread: heartbeats for running jobs, and timeouts enforced at their deadline.

It has its own database connection, so a job that blocks its thread (or its connection) does
not stop the heartbeats that keep its row from being rescued by other workers.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, connections

from .. import clock
from ..conf import jobs_settings
from ..execution import Execution, Outcome, lease_margin
from ..models import Job, JobStatus, JobTypeLock

logger = logging.getLogger("django_jobs")


class Monitor(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="django-jobs-monitor", daemon=True)
        self._executions: dict[object, Execution] = {}
        self._guard = threading.Lock()
        self._stop_event = threading.Event()
        self._last_beat = time.monotonic()

    def add(self, execution: Execution) -> None:
        with self._guard:
            self._executions[execution.job.pk] = execution

    def discard(self, execution: Execution) -> None:
        with self._guard:
            self._executions.pop(execution.job.pk, None)

    def snapshot(self) -> list[Execution]:
        with self._guard:
            return [e for e in self._executions.values() if not e.finished.is_set()]

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)

    def run(self) -> None:
        interval = jobs_settings.HEARTBEAT_INTERVAL
        tick = min(0.5, interval / 2)
        try:
            while not self._stop_event.wait(tick):
                try:
                    self.enforce_timeouts()
                    if time.monotonic() - self._last_beat >= interval:
                        self.beat()
                except DatabaseError as exc:
                    logger.warning("monitor: database error, will retry: %s", exc)
                    connections[jobs_settings.DATABASE].close()
        finally:
            connections.close_all()

    def beat(self) -> None:
        """One UPDATE refreshing ``heartbeat_at`` of every job this process runs."""
        self._last_beat = time.monotonic()
        self._renew_lingering_locks()
        executions = self.snapshot()
        if not executions:
            return
        updated = Job.objects.filter(
            pk__in=[e.job.pk for e in executions],
            claim_id__in={e.claim_id for e in executions},
            status=JobStatus.RUNNING,
        ).update(heartbeat_at=clock.now())
        if updated < len(executions):
            self._mark_lost(executions)

    def _renew_lingering_locks(self) -> None:
        with self._guard:
            lingering = [e for e in self._executions.values() if e.lingering_lock]
        if not lingering:
            return
        lease = clock.now() + lease_margin()
        for execution in lingering:
            JobTypeLock.objects.filter(
                key=execution.job.lock_key, claim_id=execution.claim_id
            ).update(locked_until=lease)

    def _mark_lost(self, executions: list[Execution]) -> None:
        """Some claims were taken away (rescued by a peer): tell their contexts."""
        still_ours = set(
            Job.objects.filter(
                pk__in=[e.job.pk for e in executions], status=JobStatus.RUNNING
            ).values_list("pk", "claim_id")
        )
        for execution in executions:
            if (execution.job.pk, execution.claim_id) not in still_ours:
                if not execution.finished.is_set():
                    logger.warning(
                        "[%s] %s is no longer ours (rescued elsewhere); its late writes will "
                        "be ignored", execution.job.name, execution.job.pk,
                    )
                    execution.lost = True

    def enforce_timeouts(self) -> None:
        for execution in self.snapshot():
            if execution.past_deadline and not execution.timed_out:
                execution.timed_out = True
                timeout = execution.job_type.timeout if execution.job_type else "its timeout"
                logger.error("[%s] %s timed out after %s", execution.job.name,
                             execution.job.pk, timeout)
                # The thread may go on running: its lock key stays held (and its lease
                # renewed by beat()) until it returns, so no second run can overlap it.
                execution.finish(Outcome.failed(f"timed out after {timeout}"), keep_lock=True)
