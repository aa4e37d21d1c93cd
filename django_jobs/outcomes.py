"""Writing the endings of runs together: one commit for many outcomes.

Two thirds of a short job's time is two commits: the fenced write of its start and that of its
outcome. An outcome that is the only write its run's end makes (no retry to schedule, no
workflow to settle, no lock key or slot to free: see ``execution.ends_alone``) is handed to
this writer instead, and the run's thread goes on to its next job at once. The writer writes
what it was handed in one transaction, each row fenced by its claim like every write about a
run, as soon as it can: the next batch fills while the previous one commits, and waits at most
``LINGER`` for company.

Until its outcome lands the row stays ``running`` under its claim, alive by its process's
heartbeat. A crash in between is a crash during the run, and the liveness rules cover it: the
run fails as "worker lost" (and is retried if attempts remain), never lost, never left running.
A process written off in between finds its late outcomes fenced off, as every late write.

``job_finished`` and ``on_error`` are sent from the writer's thread once an outcome has landed.

Not on SQLite: one connection writes at a time there and a commit is no round trip, so a second
writing thread only makes the run's thread and the claim wait for the file's lock (measured
slower); each run writes its own ending (``writes_together()``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError, connections, transaction

from .conf import jobs_settings
from .execution import Execution, Outcome, close_broken_connection, outcome_fields, through_outages
from .models import Job, JobStatus

logger = logging.getLogger("django_jobs")

#: Most outcomes written in one transaction.
BATCH_SIZE = 64
#: Longest wait, in seconds, for more outcomes once one is waiting to be written.
LINGER = 0.005
#: Seconds the writer goes on trying to reach the database once the process is leaving.
CLOSE_PATIENCE = 10.0


def writes_together() -> bool:
    """Whether a worker hands its endings to a writer: not on SQLite (see above)."""
    return connections[jobs_settings.DATABASE].vendor != "sqlite"


@dataclass(frozen=True)
class Ended:
    """A run whose outcome waits to be written."""

    execution: Execution
    outcome: Outcome
    extra: dict[str, Any] | None  # the progress it had not written yet
    at: datetime  # its end, by this host's clock

    @functools.cached_property
    def fields(self) -> dict[str, Any]:
        """The columns its ending writes, as a write alone would."""
        return outcome_fields(self.outcome, self.extra, self.at)


class OutcomeWriter(threading.Thread):
    """The thread that writes handed-over outcomes, on a connection of its own."""

    def __init__(self, *, linger: float | None = None, batch_size: int | None = None) -> None:
        super().__init__(name="django-jobs-outcomes", daemon=True)
        self.linger = LINGER if linger is None else linger
        self.batch_size = BATCH_SIZE if batch_size is None else batch_size
        self._pending: list[Ended] = []
        self._ready = threading.Condition()
        self._closing = False
        self._give_up_at: float | None = None  # monotonic; set once closing
        self.written = 0  # outcomes that landed
        self.batches = 0  # transactions that wrote them

    # -- the runs' side ------------------------------------------------------------------------

    def offer(
        self,
        execution: Execution,
        outcome: Outcome,
        extra: dict[str, Any] | None,
        at: datetime,
    ) -> bool:
        """Take this ending to write it later; ``False``: write it yourself (not running)."""
        with self._ready:
            if self._closing or not self.is_alive():
                return False
            self._pending.append(Ended(execution, outcome, extra, at))
            if len(self._pending) in (1, self.batch_size):
                # The writer waits for a first ending, then lingers for a full batch: only
                # those wake it (a wake-up per ending cost the run's threads the GIL).
                self._ready.notify()
        return True

    def close(self, patience: float = CLOSE_PATIENCE) -> bool:
        """Write what is pending, then end; ``False`` if the writer could not finish.

        Through a database outage it keeps trying for ``patience`` seconds. A write can also
        wait on a row lock (a job's transaction that locked another run's row, and still runs
        past the grace period): the process does not wait longer than ``patience`` for it
        either. What is unwritten then is left to the liveness rules, as after a crash.
        """
        with self._ready:
            self._closing = True
            self._give_up_at = time.monotonic() + patience
            self._ready.notify()
        if self.is_alive():
            self.join(timeout=patience + 1.0)
        if self.is_alive():
            logger.warning("the writer of outcomes is still waiting for the database; the "
                           "runs whose outcomes it holds will be recovered as lost")
            return False
        return True

    # -- the writer's side ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._write(batch)
                except BaseException:
                    # Nothing may stop this thread while rows wait for it: a row handed over
                    # and never written would stay running under a live process.
                    logger.exception("the writer of outcomes failed on a batch of %d",
                                     len(batch))
        finally:
            connections.close_all()

    def _next_batch(self) -> list[Ended] | None:
        with self._ready:
            while not self._pending:
                if self._closing:
                    return None
                self._ready.wait()
            until = time.monotonic() + self.linger
            while len(self._pending) < self.batch_size and not self._closing:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
        return batch

    def _write(self, batch: list[Ended]) -> None:
        try:
            landed = through_outages(lambda: write_together(batch), stop=self._leaving,
                                     what=f"{len(batch)} outcome(s)")
        except (OperationalError, InterfaceError) as exc:
            logger.warning("%d outcome(s) could not be written before the process left (%s): "
                           "their runs will be recovered as lost", len(batch), exc)
            for ended in batch:
                ended.execution.report_lost(
                    "the process left before its outcome could be written; its run will be "
                    "recovered as lost"
                )
            return
        except Exception as exc:
            # The database refused one of them (a value it cannot store): each alone, the
            # way a run writes its ending, which records a failure saying why.
            logger.info("a batch of %d outcomes was refused (%s); writing them one by one",
                        len(batch), exc)
            close_broken_connection()
            for ended in batch:
                self._write_alone(ended)
            return
        self.batches += 1
        for ended, won in zip(batch, landed, strict=True):
            if won:
                self.written += 1
                self._announce(ended.execution, ended.outcome)
            else:
                ended.execution.report_lost(
                    f"it ended {ended.outcome.status}, and its outcome was not written"
                )

    def _write_alone(self, ended: Ended) -> None:
        execution = ended.execution
        written = execution.write_outcome(ended.outcome, ended.extra, False, patient=True)
        if written is None:
            return
        won, outcome = written
        if won:
            self.written += 1
            self._announce(execution, outcome)
        else:
            execution.report_lost(f"it ended {outcome.status}, and its outcome was not written")

    def _announce(self, execution: Execution, outcome: Outcome) -> None:
        try:
            execution.announce(outcome)
        except BaseException:
            logger.exception("[%s] %s: announcing its end failed", execution.job.name,
                             execution.job.pk)

    def _leaving(self) -> bool:
        """Whether the process is leaving and its patience with the database is spent."""
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at


def write_together(batch: list[Ended]) -> list[bool]:
    """Write the endings in one transaction, each fenced by its claim; which ones landed."""
    connection = connections[jobs_settings.DATABASE]
    if connection.vendor == "postgresql" and len({tuple(e.fields) for e in batch}) == 1:
        return _in_one_statement(connection, batch)
    # Rows in primary-key order: two writes over the same rows (a batch and an operator's
    # bulk cancel, say) then never wait on each other in a cycle.
    order = sorted(range(len(batch)), key=lambda index: str(batch[index].execution.job.pk))
    landed = [False] * len(batch)
    with transaction.atomic(using=jobs_settings.DATABASE):
        for index in order:
            ended = batch[index]
            landed[index] = Job.objects.end_claimed(ended.execution.job.pk,
                                                    ended.execution.claim_id, ended.at,
                                                    ended.fields)
    return landed


def _in_one_statement(connection: Any, batch: list[Ended]) -> list[bool]:
    """PostgreSQL: one ``UPDATE ... FROM (VALUES ...) RETURNING``, fenced on every row's
    ``(id, claim_id)`` and ``running``, as each single write is."""
    meta = Job._meta
    quote = connection.ops.quote_name
    names = ["id", "claim_id", *batch[0].fields]
    fields = [meta.get_field(name) for name in names]
    # A run never ends before it began (see models.querysets.not_before_start): its end is
    # written as its host saw it, or as its start if that is later by the database's clock.
    sets = []
    for field in fields[2:]:
        column = quote(field.column)
        if field.name == "finished_at":
            sets.append(f"{column} = GREATEST(v.{column}, COALESCE(j.{quote('started_at')}, "
                        f"v.{column}))")
        else:
            sets.append(f"{column} = v.{column}")
    casts = ", ".join(f"%s::{field.db_type(connection)}" for field in fields)
    rows = ", ".join(f"({casts})" for _ in batch)
    params: list[Any] = []
    for ended in batch:
        execution = ended.execution
        values = {"id": execution.job.pk, "claim_id": execution.claim_id, **ended.fields,
                  "finished_at": ended.at}
        params += [field.get_db_prep_save(values[field.name], connection) for field in fields]
    table = quote(meta.db_table)
    sql = (
        f"UPDATE {table} AS j SET {', '.join(sets)} "
        f"FROM (VALUES {rows}) AS v({', '.join(quote(f.column) for f in fields)}) "
        f"WHERE j.{quote('id')} = v.{quote('id')} "
        f"AND j.{quote('claim_id')} = v.{quote('claim_id')} "
        f"AND j.{quote('status')} = %s RETURNING j.{quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, JobStatus.RUNNING])
        written = {row[0] for row in cursor.fetchall()}
    return [ended.execution.job.pk in written for ended in batch]


__all__ = ["OutcomeWriter", "write_together", "writes_together"]
