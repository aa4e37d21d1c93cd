"""Endings written together (django_jobs.outcomes): fewer commits, the same guarantees.

The process tests of the same promise (a worker killed between a run's end and the write of
its outcome) are in tests/concurrency/test_outcomes.py.
"""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_jobs import registry, signals
from django_jobs.execution import Execution, Outcome, record_outcome
from django_jobs.models import Job, JobStatus
from django_jobs.outcomes import Ended, OutcomeWriter, write_together
from django_jobs.worker.claim import claim

from .worker_helpers import run_burst

pytestmark = pytest.mark.django_db(transaction=True)

#: On SQLite each run writes its own ending (one writer at a time: a writer thread only waits).
together = pytest.mark.skipif("connection.vendor == 'sqlite'",
                              reason="SQLite: each run writes its own ending")


@pytest.fixture
def lingering(monkeypatch):
    """Writers that wait long enough for every ending of a short drain to share a commit."""
    monkeypatch.setattr("django_jobs.outcomes.LINGER", 0.05)


def _ended(job: Job) -> Job:
    row = Job.objects.get(pk=job.pk)
    assert row.status != JobStatus.RUNNING, f"{row.pk} left running"
    return row


@together
def test_a_drain_writes_its_outcomes_in_fewer_commits_than_runs(lingering):
    jobs = registry.get("jobsapp.noop").enqueue_many([{"n": n} for n in range(60)])
    worker = run_burst(concurrency=2)
    assert worker.outcomes.written == 60
    assert worker.outcomes.batches < 30, worker.outcomes.batches
    for job in jobs:
        row = _ended(job)
        assert row.status == "succeeded" and row.progress == 1.0
        assert row.finished_at >= row.started_at
    if connection.vendor == "postgresql":
        # The database's own word: rows written by one transaction share its id (xmin).
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(DISTINCT xmin::text) FROM django_jobs_job")
            [(transactions,)] = cursor.fetchall()
        assert transactions < 30, transactions


def test_a_value_the_database_refuses_fails_its_own_run_only(lingering, replace_func):
    returns = registry.get("jobsapp.returns")
    bad = returns.enqueue()
    good = [registry.get("jobsapp.echo").enqueue(n=n) for n in range(5)]
    replace_func(returns, lambda ctx, **data: "a\x00b")
    run_burst()
    for job in good:
        assert _ended(job).status == "succeeded"
    row = _ended(bad)
    if connection.vendor == "postgresql":  # jsonb stores no NUL
        assert row.status == "failed" and "could not be written" in row.error, row.error
    else:
        assert row.status == "succeeded" and row.result == "a\x00b"


def test_job_finished_is_sent_once_the_outcome_is_in_the_database(lingering):
    seen = []

    def finished(sender, job, status, **kwargs):
        seen.append((job.pk, status, Job.objects.get(pk=job.pk).status))

    signals.job_finished.connect(finished, weak=False)
    try:
        jobs = [registry.get("jobsapp.echo").enqueue(n=n) for n in range(10)]
        run_burst()
    finally:
        signals.job_finished.disconnect(finished)
    assert sorted(seen) == sorted((job.pk, "succeeded", "succeeded") for job in jobs)


def test_a_receiver_that_raises_base_exception_stops_no_write(lingering, caplog):
    def broken(sender, job, **kwargs):
        raise SystemExit("a receiver that exits")

    signals.job_finished.connect(broken, weak=False)
    try:
        jobs = [registry.get("jobsapp.echo").enqueue(n=n) for n in range(20)]
        with caplog.at_level(logging.ERROR, logger="django_jobs"):
            worker = run_burst()
    finally:
        signals.job_finished.disconnect(broken)
    assert [_ended(job).status for job in jobs] == ["succeeded"] * 20
    if connection.vendor != "sqlite":
        assert worker.outcomes.written == 20
    # Logged by whichever thread announced the end (the writer, or on SQLite the run's own).
    assert "SystemExit: a receiver that exits" in caplog.text


def test_endings_that_write_more_are_not_handed_over(lingering):
    flaky = registry.get("jobsapp.flaky").enqueue(fail_times=1)
    locked = registry.get("jobsapp.locked_raise").enqueue(kind="error")
    worker = run_burst()
    assert worker.outcomes.written == 0  # a retry to schedule, a lock key to free
    assert _ended(locked).status == "failed"
    first = _ended(flaky)
    assert first.status == "failed" and Job.objects.filter(rescheduled_from=first.pk).exists()


def _claimed_run(name: str = "jobsapp.echo") -> Execution:
    registry.get(name).enqueue(n=1)
    [row] = claim("test:1", 1)
    execution = Execution(row, registry.get(row.name), worker="test:1", owner=None)
    assert execution.begin()
    return execution


def test_an_ending_whose_claim_was_taken_meanwhile_is_fenced_off(caplog):
    execution = _claimed_run()
    writer = OutcomeWriter(linger=10.0)  # nothing is written before close()
    writer.start()
    outcome = Outcome(JobStatus.SUCCEEDED, result=1)
    at = execution.job.started_at
    assert writer.offer(execution, outcome, None, at)
    # A peer wrote the process off and recovered the run before the batch was written.
    Job.objects.filter(pk=execution.job.pk).update(status="failed", error="worker lost",
                                                   claim_id=uuid.uuid4())
    with caplog.at_level(logging.WARNING, logger="django_jobs"):
        writer.close()
    row = Job.objects.get(pk=execution.job.pk)
    assert (row.status, row.error) == ("failed", "worker lost")
    assert writer.written == 0 and execution.lost
    assert "is no longer ours" in caplog.text


def test_write_together_reports_each_row():
    mine, taken = _claimed_run(), _claimed_run()
    Job.objects.filter(pk=taken.job.pk).update(claim_id=uuid.uuid4())
    outcome = Outcome(JobStatus.SUCCEEDED, result="ok")
    at = mine.job.started_at
    landed = write_together([Ended(mine, outcome, None, at), Ended(taken, outcome, None, at)])
    assert landed == [True, False]
    assert Job.objects.get(pk=mine.job.pk).status == "succeeded"
    assert Job.objects.get(pk=taken.job.pk).status == "running"


def test_a_closed_writer_takes_nothing_and_the_run_writes_its_own_ending():
    execution = _claimed_run()
    writer = OutcomeWriter()
    writer.start()
    writer.close()
    execution.outcomes = writer
    execution.owner = uuid.uuid4()  # as under a worker (the writer serves worker runs only)
    assert execution.finish(Outcome(JobStatus.SUCCEEDED, result=2))
    assert Job.objects.get(pk=execution.job.pk).status == "succeeded"
    assert writer.written == 0


ENDINGS = [
    (Outcome(JobStatus.SUCCEEDED, result={"a": [1, 2.5, "é", None]}), None),
    (Outcome(JobStatus.SUCCEEDED, result=None), None),
    (Outcome(JobStatus.SUCCEEDED, result="text"), {"progress": 0.4, "progress_message": "m"}),
    (Outcome.failed("it broke\n\ntraceback", retry=False), None),
    (Outcome.failed("broke again", retry=False), {"progress": 0.5, "progress_message": "half",
                                                  "eta": None}),
    (Outcome(JobStatus.SKIPPED, result={"skipped": "already done"}), None),
    (Outcome(JobStatus.CANCELLED, error="cancelled by an operator"), None),
    # What an array literal has to escape: the rows travel as one array per column.
    (Outcome(JobStatus.SUCCEEDED, result='{"a", b}\\ NULL \'q\' "'), None),
    (Outcome(JobStatus.SUCCEEDED, result=["NULL", "", "{}", "\\\"", {"k": "v,w"}]), None),
    (Outcome(JobStatus.SUCCEEDED, result=""), {"progress": 0.25, "progress_message": 'a,"b"}'}),
    (Outcome.failed('quote " backslash \\ brace } comma , NULL', retry=False), None),
]

COLUMNS = ("status", "result", "error", "progress", "progress_message", "eta", "locked_until")


@pytest.mark.parametrize("outcome,extra", ENDINGS)
def test_an_ending_written_together_stores_what_a_single_write_stores(outcome, extra):
    alone, together, neighbour = _claimed_run(), _claimed_run(), _claimed_run()
    assert record_outcome(alone.job, alone.claim_id, outcome, extra=extra)
    at = together.job.started_at
    # Written together with an ending of the same shape: on PostgreSQL one statement.
    with CaptureQueriesContext(connection) as queries:
        landed = write_together([
            Ended(together, outcome, extra, at),
            Ended(neighbour, outcome, extra, at),
        ])
    assert landed == [True, True]
    if connection.vendor == "postgresql":
        assert len(queries) == 1, [q["sql"] for q in queries]
    rows = {row["id"]: row for row in Job.objects.filter(
        pk__in=[alone.job.pk, together.job.pk]).values("id", "finished_at", "started_at",
                                                        *COLUMNS)}
    one, other = rows[alone.job.pk], rows[together.job.pk]
    assert {c: one[c] for c in COLUMNS} == {c: other[c] for c in COLUMNS}
    assert other["finished_at"] >= other["started_at"]


def test_closing_does_not_wait_forever_for_a_write_held_by_a_row_lock(caplog):
    if connection.vendor == "sqlite":
        pytest.skip("no row locks")
    execution = _claimed_run()
    writer = OutcomeWriter(linger=0)
    writer.start()
    outcome = Outcome(JobStatus.SUCCEEDED, result=3)
    at = execution.job.started_at
    with transaction.atomic():
        # Another transaction (a job's own, say) holds the row the ending is written to.
        Job.objects.select_for_update().get(pk=execution.job.pk)
        assert writer.offer(execution, outcome, None, at)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="django_jobs"):
            assert writer.close(patience=0.5) is False
        assert time.monotonic() - started < 5
    assert "still waiting for the database" in caplog.text
    writer.join(timeout=10)  # the lock is gone: the write lands after all, fenced as ever
    assert Job.objects.get(pk=execution.job.pk).status == "succeeded"


def test_on_sqlite_each_run_writes_its_own_ending():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    jobs = registry.get("jobsapp.noop").enqueue_many([{"n": n} for n in range(10)])
    worker = run_burst()
    assert not worker.outcomes.is_alive() and worker.outcomes.written == 0
    assert [_ended(job).status for job in jobs] == ["succeeded"] * 10


@together
def test_the_writer_wakes_for_a_first_ending_and_for_a_full_batch_without_being_closed():
    """Only the first ending of a batch and a full batch wake the writer: each lands on its
    own, long before a close would write it."""
    first, second, third = _claimed_run(), _claimed_run(), _claimed_run()
    writer = OutcomeWriter(linger=0.0, batch_size=2)
    writer.start()
    try:
        outcome = Outcome(JobStatus.SUCCEEDED, result=1)
        at = first.job.started_at

        def lands(*executions: Execution) -> None:
            deadline = time.monotonic() + 5
            while Job.objects.filter(pk__in=[e.job.pk for e in executions],
                                     status=JobStatus.RUNNING).exists():
                assert time.monotonic() < deadline, "an ending waited for the close"
                time.sleep(0.01)

        assert writer.offer(first, outcome, None, at)  # a first ending: written at once
        lands(first)
        slow = OutcomeWriter(linger=30.0, batch_size=2)  # lingers for a full batch of two
        slow.start()
        try:
            assert slow.offer(second, outcome, None, at)
            time.sleep(0.3)  # the writer has taken it and lingers for company
            assert Job.objects.get(pk=second.job.pk).status == JobStatus.RUNNING
            assert slow.offer(third, outcome, None, at)  # the batch is full: written now
            lands(second, third)
        finally:
            slow.close()
    finally:
        writer.close()
