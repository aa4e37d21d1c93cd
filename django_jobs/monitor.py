"""The monitor thread of a process that runs jobs: its heartbeat, and everything about its runs
that must not depend on the runs' own threads.

It has its own database connection, and the job threads never write about their runs while
the job's code runs: progress is handed over and written here, cancellation requests are read
here, timeouts are enforced here. A job that holds a transaction open for minutes, or blocks
its thread, therefore delays no heartbeat and no timeout of any run.

One heartbeat is one UPDATE of the process's ``Worker`` row, with the database's clock. When
it finds the row written off (a peer judged the process lost, e.g. after it was frozen), every
run of the process is lost: their late writes are fenced off, and ``on_written_off`` is told.

A worker hands its monitor a ``look`` (``worker/look.py``: whether its sweep has work), which
the monitor sends at least every ``RESCUE_INTERVAL``: on PostgreSQL in the heartbeat's own
statement, so that an idle worker's sweep costs no statement of its own while there is nothing
to recover. The monitor only sends it and hands back the answer; what it means is the worker's.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from django.db import DatabaseError, InternalError, OperationalError, connections

from . import clock
from .conf import jobs_settings
from .execution import LOCK_WAIT_SECONDS, Execution, Outcome, lock_waits_bounded
from .models import LIVE_STATES, Job, Worker

logger = logging.getLogger("django_jobs")

#: After a progress write found its row locked, seconds before the next try for that run.
PROGRESS_BACKOFF = 5.0


class Look(Protocol):
    """A read that rides on the heartbeat (see ``worker.look.Look``)."""

    def sql(self, me: uuid.UUID | None) -> tuple[str, list]:
        """A SELECT list and its parameters."""

    def due(self) -> bool:
        """Whether a read of its own is due before the next heartbeat."""

    def record(self, row: Sequence) -> None:
        """The read's answer, one value per column of ``sql()``."""

    def forget(self) -> None:
        """The heartbeat failed, or went without the read."""


class Monitor(threading.Thread):
    def __init__(
        self,
        owner: uuid.UUID | None = None,
        *,
        busy: Callable[[], int] | None = None,
        on_written_off: Callable[[uuid.UUID], uuid.UUID | None] | None = None,
        on_hung: Callable[[Execution], None] | None = None,
        look: Look | None = None,
    ) -> None:
        super().__init__(name="django-jobs-monitor", daemon=True)
        self.owner = owner
        self._busy = busy
        self._on_written_off = on_written_off
        self._on_hung = on_hung
        self._look = look
        self._executions: dict[object, Execution] = {}
        self._guard = threading.Lock()
        self._stop_event = threading.Event()
        self._last_beat = 0.0
        self._last_cancel_check = 0.0
        self._last_sync = time.monotonic()
        self._hung: set[object] = set()
        self._progress_blocked: dict[object, float] = {}  # job pk -> monotonic time
        self.beats = 0
        self.last_database_error = 0.0  # monotonic time of the last failed database call
        # Whether the last database call failed, and since when the calls succeed again.
        self.database_down = False
        self.database_up_since = time.monotonic()

    # -- the runs it watches -----------------------------------------------------------------

    def add(self, execution: Execution) -> None:
        execution.monitored = True
        with self._guard:
            self._executions[execution.job.pk] = execution

    def discard(self, execution: Execution) -> None:
        with self._guard:
            self._executions.pop(execution.job.pk, None)
            self._progress_blocked.pop(execution.job.pk, None)

    def all(self) -> list[Execution]:
        with self._guard:
            return list(self._executions.values())

    def snapshot(self) -> list[Execution]:
        """Runs that have not ended."""
        return [e for e in self.all() if not e.finished.is_set()]

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        tick = min(0.5, jobs_settings.HEARTBEAT_INTERVAL / 2)
        try:
            while not self._stop_event.wait(tick):
                self.tick()
        finally:
            connections.close_all()

    def tick(self) -> None:
        """One round; survives anything (a raising receiver, a lost database, a bug)."""
        # The heartbeat first: nothing a run does may delay it.
        for step in (self._beat_if_due, self._look_if_due, self.enforce_timeouts,
                     self._check_hung,
                     self.write_progress, self._read_cancellations_if_due, self._sync_if_due):
            try:
                step()
            except DatabaseError as exc:
                if time.monotonic() - self.last_database_error > 30:  # once per outage
                    logger.warning("monitor: database error, will retry: %s", exc)
                self.last_database_error = time.monotonic()
                self.database_down = True
                try:
                    connections[jobs_settings.DATABASE].close()
                except Exception:
                    pass
                return
            except Exception:
                logger.exception("monitor: %s failed; carrying on", step.__name__)

    def _beat_if_due(self) -> None:
        if time.monotonic() - self._last_beat >= jobs_settings.HEARTBEAT_INTERVAL:
            self.beat()

    def _look_if_due(self) -> None:
        """A look of its own, when the sweep's interval is shorter than the heartbeat's."""
        look, owner = self._look, self.owner
        if look is None or owner is None or not self._one_statement() or not look.due():
            return
        try:
            sql, params = look.sql(owner)
            with connections[jobs_settings.DATABASE].cursor() as cursor:
                cursor.execute(f"SELECT {sql}", params)
                look.record(cursor.fetchone())
        except BaseException:
            look.forget()
            raise

    def _read_cancellations_if_due(self) -> None:
        if time.monotonic() - self._last_cancel_check >= jobs_settings.CANCEL_CHECK_INTERVAL:
            self._last_cancel_check = time.monotonic()
            self.read_cancellations()

    def _sync_if_due(self) -> None:
        if time.monotonic() - self._last_sync >= clock.SYNC_INTERVAL:
            self._last_sync = time.monotonic()
            clock.sync(connections[jobs_settings.DATABASE], force=True)

    # -- heartbeat ---------------------------------------------------------------------------

    def beat(self) -> None:
        """One UPDATE of this process's row; a written-off row loses every run of it."""
        owner = self.owner  # the main loop may re-register meanwhile: judge this row only
        if owner is None:
            return
        busy = self._busy() if self._busy is not None else len(self.snapshot())
        look = self._look
        if look is not None and self._one_statement():
            try:
                beat = self._beat_and_look(look, owner, busy)
            except BaseException:
                look.forget()  # the sweep runs in full until a heartbeat looks again
                raise
        else:
            if look is not None:
                look.forget()
            with lock_waits_bounded():
                beat = Worker.objects.beat(owner, busy=busy)
        if self.database_down:
            self.database_down = False
            self.database_up_since = time.monotonic()
        if beat:
            self._last_beat = time.monotonic()
            self.beats += 1
            return
        logger.error(
            "this process (worker row %s) was written off as lost by a peer (it did not beat "
            "for WORKER_LOST_AFTER); its runs were recovered elsewhere and its late writes "
            "will be ignored", owner,
        )
        if self._on_written_off is not None:
            self.owner = self._on_written_off(owner)
        else:
            for execution in self.all():
                execution.lost = True
            self.owner = None
        self._last_beat = time.monotonic()

    def _one_statement(self) -> bool:
        """Whether the heartbeat and its look can be one statement: PostgreSQL with
        client-side binding (the lock bound and the UPDATE go as one query string, which
        PostgreSQL runs as one transaction), outside any transaction, on the real clock."""
        connection = connections[jobs_settings.DATABASE]
        return (connection.vendor == "postgresql" and not connection.in_atomic_block
                and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")
                and not clock.is_frozen())

    def _beat_and_look(self, look: Look, owner: uuid.UUID, busy: int) -> bool:
        """The heartbeat and the look, in one statement and one transaction: ``SET LOCAL
        lock_timeout`` (as ``lock_waits_bounded`` sets it: it lasts for this transaction only,
        so nothing is left on a pooled server connection), then the UPDATE of this process's
        row and the look's SELECT list. The look sees the database as it was when the
        statement began."""
        connection = connections[jobs_settings.DATABASE]
        quote = connection.ops.quote_name
        live = ", ".join(["%s"] * len(LIVE_STATES))
        look_sql, look_params = look.sql(owner)
        sql = (
            f"SET LOCAL lock_timeout = '{int(LOCK_WAIT_SECONDS)}s'; "
            f"WITH beat AS (UPDATE {quote(Worker._meta.db_table)} "
            "SET heartbeat_at = STATEMENT_TIMESTAMP(), busy = %s "
            f"WHERE id = %s AND state IN ({live}) RETURNING 1) "
            f"SELECT (SELECT COUNT(*) FROM beat) AS beaten, {look_sql}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [busy, owner, *LIVE_STATES, *look_params])
            raw = cursor.cursor
            if raw.description is None and hasattr(raw, "nextset"):
                raw.nextset()  # psycopg 3 stands on the first result (the SET's)
            row = cursor.fetchone()
        look.record(row[1:])
        return row[0] == 1

    # -- what the job threads hand over -------------------------------------------------------

    def write_progress(self) -> None:
        """Write the progress that runs reported since the last tick, one fenced UPDATE each."""
        now = time.monotonic()
        for execution in self.snapshot():
            if self._progress_blocked.get(execution.job.pk, 0.0) > now:
                continue
            fields = execution.take_progress()
            if not fields:
                continue
            try:
                with lock_waits_bounded():
                    execution.update(**fields)
            except (OperationalError, InternalError) as exc:
                # Its row is locked by the job's own transaction (or a passing error): the
                # progress waits, and this run is left alone for a while; heartbeats and
                # timeouts of every run go on.
                logger.info("[%s] progress not written yet: %s", execution.job.name, exc)
                execution.queue_progress({**fields, **(execution.take_progress() or {})})
                self._progress_blocked[execution.job.pk] = now + PROGRESS_BACKOFF

    def read_cancellations(self) -> None:
        """Tell runs about cancellation requests, and about claims taken away from them."""
        running = [e for e in self.snapshot() if e.started]
        if not running:
            return
        rows = {
            pk: (claim_id, status, cancel_requested_at)
            for pk, claim_id, status, cancel_requested_at in Job.objects.filter(
                pk__in=[e.job.pk for e in running]
            ).values_list("pk", "claim_id", "status", "cancel_requested_at")
        }
        for execution in running:
            row = rows.get(execution.job.pk)
            if row is None or row[0] != execution.claim_id or row[1] != "running":
                # Its own ending may have been written between the read and now: that run
                # is finished, not lost (``ending`` first: ``finished`` is set before the
                # ending is let go).
                if not execution.ending and not execution.finished.is_set():
                    execution.report_lost("recovered or changed elsewhere; its late writes "
                                          "will be ignored")
                continue
            execution.cancel_requested = row[2] is not None

    # -- timeouts ------------------------------------------------------------------------------

    def enforce_timeouts(self) -> None:
        for execution in self.snapshot():
            if execution.started and execution.past_deadline and not execution.timed_out:
                # The thread may go on running: its lock key stays held until it returns (or
                # until this process gives up on it, see HUNG_AFTER), so no run overlaps it.
                # One try, never a wait: the heartbeat must not stall behind this write.
                written = execution.finish(
                    Outcome.failed(f"timed out after {execution.timeout}"), keep_lock=True,
                    wait=False,
                )
                if written is None:
                    continue  # being ended by its thread, or no database: next tick
                execution.timed_out = True
                execution.timed_out_at = time.monotonic()
                if written:
                    logger.error("[%s] %s timed out after %s", execution.job.name,
                                 execution.job.pk, execution.timeout)

    def _check_hung(self) -> None:
        """A timed-out run whose thread has not returned within HUNG_AFTER is hung."""
        if self._on_hung is None:
            return
        limit = jobs_settings.HUNG_AFTER
        for execution in self.all():
            if (
                execution.timed_out_at is not None
                and not execution.returned.is_set()
                and execution.job.pk not in self._hung
                and time.monotonic() - execution.timed_out_at >= limit
            ):
                self._hung.add(execution.job.pk)
                self._on_hung(execution)
