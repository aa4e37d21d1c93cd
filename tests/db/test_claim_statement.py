"""The claim of a worker process on PostgreSQL: one statement, with the same promises as the
claim transaction (heartbeat, written-off processes, lock keys and limits in their turn)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_jobs import clock, registry
from django_jobs.models import Job, JobTypeLock, Worker
from django_jobs.worker.claim import WrittenOff, claim

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'",
                       reason="UPDATE ... FROM (SELECT ... SKIP LOCKED) RETURNING: PostgreSQL"),
]


@pytest.fixture
def process():
    now = clock.now()
    return Worker.objects.create(
        kind="worker", host="test", pid=1, queues=[], concurrency=4, version="test",
        names=[], disabled=[], started_at=now, heartbeat_at=now,
    )


def names():
    return registry.names()


def warm_up(process, limit: int) -> None:
    """A first claim compiles the statement (once per filters); the claims after it are
    measured."""
    claim("test:1", limit, owner=process.pk, names=names())


def test_a_claim_of_rows_without_keys_is_one_statement_that_adds_no_worker_row_version(
    process
):
    warm_up(process, 3)
    registry.get("jobsapp.noop").enqueue_many([{"n": n} for n in range(5)])
    Worker.objects.filter(pk=process.pk).update(heartbeat_at=clock.sql_now(-60))
    before = Worker.objects.get(pk=process.pk).heartbeat_at
    with CaptureQueriesContext(connection) as queries:
        rows = claim("test:1", 3, owner=process.pk, names=names())
    assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries]
    assert [row.status for row in rows] == ["running"] * 3
    assert len({row.claim_id for row in rows}) == 1
    assert {row.owner_id for row in rows} == {process.pk}
    stored = Job.objects.filter(status="running")
    assert set(stored.values_list("pk", flat=True)) == {row.pk for row in rows}
    assert set(stored.values_list("started_at", flat=True)) == {None}
    # The process's row is only locked by the claim (a busy worker's claims would otherwise
    # make it the hottest row of the database): its heartbeat is the monitor's.
    assert Worker.objects.get(pk=process.pk).heartbeat_at == before


def test_a_written_off_process_claims_nothing(process):
    registry.get("jobsapp.noop").enqueue(n=1)
    Worker.objects.filter(pk=process.pk).update(state="lost")
    with pytest.raises(WrittenOff):
        claim("test:1", 3, owner=process.pk, names=names())
    assert Job.objects.get().status == "scheduled"


def test_rows_with_lock_keys_are_claimed_in_their_turn_by_the_claim_transaction(process):
    locked = registry.get("jobsapp.per_customer").enqueue(customer=7)
    plain = registry.get("jobsapp.noop").enqueue(n=1)
    twin = registry.get("jobsapp.per_customer").enqueue(customer=7)
    rows = claim("test:1", 3, owner=process.pk, names=names())
    # The first due row holds a key: it is not skipped for the later rows, and its twin
    # (the same key) waits.
    assert {row.pk for row in rows} == {locked.pk, plain.pk}
    assert JobTypeLock.objects.get(key=locked.lock_key).job_id == locked.pk
    assert Job.objects.get(pk=twin.pk).status == "scheduled"


def test_an_idle_claim_is_one_statement_too(process):
    warm_up(process, 4)
    with CaptureQueriesContext(connection) as queries:
        assert claim("test:1", 4, owner=process.pk, names=names()) == []
    assert len(queries.captured_queries) == 1


@pytest.mark.django_db(transaction=True)
def test_a_write_off_waits_for_a_claim_holding_the_row_and_recovers_what_it_claimed(process):
    """The claim locks its process's row without writing it: a peer's write-off of that
    process waits for the claim's transaction, then finds the claimed run and recovers it."""
    import threading
    import time

    from django.db import connections, transaction

    from django_jobs.worker.rescue import write_off

    job = registry.get("jobsapp.noop").enqueue(n=1)
    Worker.objects.filter(pk=process.pk).update(heartbeat_at=clock.sql_now(-3600))
    locked, results = threading.Event(), {}

    def claimer():
        with transaction.atomic():
            assert Worker.objects.hold_if_live(process.pk)
            locked.set()
            time.sleep(1.0)
            Job.objects.filter(pk=job.pk).update(status="running", owner=process.pk,
                                                 started_at=clock.now())
        connections.close_all()

    thread = threading.Thread(target=claimer)
    thread.start()
    assert locked.wait(10)
    started = time.monotonic()
    results["recovered"] = write_off(process.pk, 30.0)
    waited = time.monotonic() - started
    thread.join(10)
    assert waited >= 0.5, waited  # it waited for the claim's transaction
    assert [row.pk for row in results["recovered"]] == [job.pk]
    assert Job.objects.get(pk=job.pk).status == "failed"
    assert Worker.objects.get(pk=process.pk).state == "lost"
