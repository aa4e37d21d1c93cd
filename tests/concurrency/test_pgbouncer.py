"""PostgreSQL behind PgBouncer in transaction mode: worker processes (and the enqueuing
process) reach the database through the pooler on 127.0.0.1:6432, which hands each transaction
whichever server connection is free.

``scripts/test`` starts that PgBouncer (``start_pgbouncer`` in scripts/_common.sh); without one
these tests are skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection, transaction
from django.db.models import Count

from django_jobs import clock, registry
from django_jobs.models import Job, Worker
from tests.conftest import ROOT
from tests.jobsapp.models import Execution

from .conftest import logs, stop_all, vendor, wait_or_explain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

PGBOUNCER = ("127.0.0.1", 6432)
#: Server connections per database and user (``default_pool_size`` of start_pgbouncer).
POOL_SIZE = 20
#: What the listener logs when its LISTEN connection hears nothing.
DEAF = "receives no notifications"


def _url(host: str, port: int | str) -> str:
    """A DATABASE_URL for the test database at ``host:port``."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"postgres://{quote(db['USER'], safe='')}{password}@{host}:{port}/{db['NAME']}"


def _reachable() -> str | None:
    """Why PgBouncer cannot serve the test database, or ``None`` when it can."""
    try:
        with psycopg.connect(_url(*PGBOUNCER), connect_timeout=3) as probe:
            probe.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PgBouncer is not reachable on {PGBOUNCER[0]}:{PGBOUNCER[1]} ({exc})"
    return None


@pytest.fixture(autouse=True)
def pooled(transactional_db) -> Iterator[dict[str, str]]:
    """The environment of processes that go through PgBouncer.

    Afterwards PgBouncer's server connections to the test database are ended (from the
    PostgreSQL side), or the run could not drop that database at the end.
    """
    if vendor() != "postgresql":
        pytest.skip("PostgreSQL only: PgBouncer pools PostgreSQL connections")
    why = _reachable()
    if why:
        pytest.skip(f"{why}; scripts/test starts one (start_pgbouncer in scripts/_common.sh)")
    yield {"DATABASE_URL": _url(*PGBOUNCER)}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def _lock_timeouts_left_on_the_pool() -> set[str]:
    """``lock_timeout`` of every idle server connection of the pool: as many clients as
    PgBouncer has server connections (``default_pool_size``) each open a transaction at once,
    so each is lent a different one."""
    clients = [psycopg.connect(_url(*PGBOUNCER)) for _ in range(POOL_SIZE)]
    try:
        return {client.execute("SHOW lock_timeout").fetchone()[0] for client in clients}
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def enqueue(worker_env, pooled):
    """Run enqueuing code in a process of its own whose connection goes through PgBouncer."""

    def run(code: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "django", "shell", "-c",
             f"from django_jobs import registry\n{code}"],
            cwd=ROOT, env={**worker_env, **pooled}, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    return run


def _pickup(enqueue, w, timeout: float) -> float:
    """Enqueue one job through PgBouncer; seconds from its row's creation to its start."""
    before = set(Job.objects.for_name("jobsapp.noop").values_list("pk", flat=True))
    enqueue("registry.get('jobsapp.noop').enqueue()")
    row = wait_or_explain(
        lambda: Job.objects.for_name("jobsapp.noop").exclude(pk__in=before)
        .filter(status="succeeded").first(), timeout, w, what="the job did not run",
    )
    return (row.started_at - row.created_at).total_seconds()


def test_two_workers_drain_500_jobs_through_pgbouncer_each_exactly_once(worker, pooled, enqueue):
    total = 500
    workers = [worker("--concurrency", "4", env=pooled) for _ in range(2)]
    enqueue(f"registry.get('jobsapp.record').enqueue_many("
            f"[{{'token': f't{{i}}'}} for i in range({total})])")
    started = time.monotonic()
    wait_or_explain(lambda: not Job.objects.for_name("jobsapp.record").pending().exists(), 90,
                    *workers, what="record jobs still pending")
    elapsed = time.monotonic() - started

    jobs = Job.objects.for_name("jobsapp.record")
    statuses = dict(jobs.values_list("status").order_by().annotate(n=Count("pk")))
    assert statuses == {"succeeded": total}, (statuses, logs(*workers))
    assert Execution.objects.count() == total
    assert Execution.objects.values("token").distinct().count() == total
    ran_by = dict(jobs.values_list("pk", "worker"))
    for job_id, who in Execution.objects.values_list("job_id", "worker"):
        assert ran_by[job_id] == who
    print(f"\n{total} jobs by 2 workers x 4 threads through PgBouncer in {elapsed:.1f}s")
    assert stop_all(*workers) == [0, 0], logs(*workers)
    for w in workers:
        # Hundreds of runs of each statement, on whichever server connection PgBouncer lends:
        # a prepared statement or session state would have failed some of them.
        assert "Traceback" not in w.output() and "prepared statement" not in w.output(), logs(w)
    # Nothing django-jobs set stays on the server connections, for the next client to get.
    assert _lock_timeouts_left_on_the_pool() == {"0"}


def test_without_listen_database_the_worker_warns_once_and_polls(worker, pooled, enqueue):
    # POLL_INTERVAL at its default (1 s): a worker that thought it was listening would poll
    # every 10 s only.
    w = worker(env={**pooled, "DJANGO_JOBS_TEST_DEFAULT_POLL": "1"})
    wait_or_explain(lambda: DEAF in w.output(), 20, w, what="no warning about LISTEN")
    latencies = [_pickup(enqueue, w, timeout=20) for _ in range(3)]
    print(f"\npick-up while polling behind PgBouncer: {[round(s, 2) for s in latencies]} s")
    assert max(latencies) < 5.0, (latencies, w.output())
    assert w.output().count(DEAF) == 1, w.output()
    assert "LISTEN_DATABASE" in w.output()
    assert stop_all(w) == [0], w.output()


def test_with_listen_database_a_notify_sent_through_pgbouncer_wakes_the_worker(
    worker, pooled, enqueue
):
    direct = _url(connection.settings_dict["HOST"] or "127.0.0.1",
                  connection.settings_dict["PORT"] or 5432)
    # Polling every 30 s: a pick-up within seconds can only come from the notification.
    w = worker("--poll-interval", "30", env={**pooled, "DJANGO_JOBS_TEST_LISTEN_URL": direct})
    wait_or_explain(_listening, 20, w, what="the worker never LISTENed on the direct connection")
    latencies = [_pickup(enqueue, w, timeout=20) for _ in range(2)]
    print(f"\nwake-up through PgBouncer with LISTEN_DATABASE: {[round(s, 3) for s in latencies]} s")
    assert max(latencies) < 3.0, (latencies, w.output())
    assert DEAF not in w.output(), w.output()
    assert stop_all(w) == [0], w.output()


def _listening() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = 'LISTEN django_jobs' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def test_a_job_holding_its_row_locked_does_not_hold_up_the_monitor(worker, pooled, marker_dir):
    # The monitor's progress write meets the row lock the job holds in its own transaction,
    # and must give up on it within LOCK_WAIT_SECONDS: the bound is set per transaction
    # (SET LOCAL), since a session setting would stay on one server connection while the
    # monitor's next write runs on another. Unbounded, the monitor would wait out the whole
    # transaction, and hear of the other run's cancellation only then.
    w = worker("--concurrency", "2", env=pooled)
    holder = registry.get("jobsapp.holds_transaction").enqueue(seconds=7, steps=14)
    wait_or_explain((marker_dir / f"{holder.pk}.1").exists, 15, w, what="holder never started")
    other = registry.get("jobsapp.cancellable").enqueue(seconds=30)
    wait_or_explain(lambda: Job.objects.get(pk=other.pk).status == "running", 15, w,
                    what="the other run never started")
    time.sleep(1.0)  # the holder has reported progress, and holds its row
    asked = time.monotonic()
    registry.cancel(other.pk)
    wait_or_explain(lambda: Job.objects.get(pk=other.pk).is_finished, 20, w,
                    what="the cancelled run never ended")
    took = time.monotonic() - asked
    print(f"\ncancellation heard in {took:.2f} s while a job held its row behind PgBouncer")
    assert Job.objects.get(pk=other.pk).status == "cancelled"
    assert took < 3.5, (took, w.output())
    assert Job.objects.get(pk=holder.pk).status == "running", "the holder ended too soon"
    wait_or_explain(lambda: Job.objects.get(pk=holder.pk).is_finished, 20, w,
                    what="the holder never ended")
    held = Job.objects.get(pk=holder.pk)
    assert held.status == "succeeded", (held.error, w.output())
    assert (held.progress, held.progress_message) == (1.0, "step 14 of 14")
    assert stop_all(w) == [0], w.output()


def _heartbeats_on_the_pool() -> int:
    """Server connections of the pool whose last statement was the one-statement heartbeat."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'SET LOCAL lock_timeout%%WITH beat AS (UPDATE%%' "
            "AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_the_one_statement_heartbeat_through_pgbouncer_looks_bounds_its_wait_leaves_nothing(
    worker, pooled
):
    # Polling every 30 s: only the look sent with a heartbeat can wake the worker for a sweep.
    w = worker("--poll-interval", "30", env=pooled)
    row = wait_or_explain(lambda: Worker.objects.filter(pid=w.pid).first(), 10, w,
                          what="no worker row")
    wait_or_explain(lambda: _heartbeats_on_the_pool() > 0, 10, w,
                    what="no one-statement heartbeat reached PostgreSQL through PgBouncer")
    time.sleep(3.5)  # WORKER_LOST_AFTER: from now on the worker may write off its peers

    # The look rides on the heartbeat through the pooler: a peer that stopped beating, with a
    # run, is written off within a heartbeat interval or two of becoming overdue.
    job = registry.get("jobsapp.noop").enqueue(delay=3600)
    silent_at = clock.now() - timedelta(seconds=2.9)
    peer = Worker.objects.create(host="gone", pid=1, started_at=silent_at, heartbeat_at=silent_at)
    Job.objects.filter(pk=job.pk).update(status="running", owner=peer.pk, claim_id=uuid.uuid4(),
                                         worker="gone:1", started_at=silent_at)
    overdue_at = time.monotonic() + 0.1
    wait_or_explain(lambda: Worker.objects.get(pk=peer.pk).state == "lost", 10, w,
                    what="the peer was never written off")
    took = time.monotonic() - overdue_at
    print(f"\noverdue peer written off {took:.2f} s after it became overdue, behind PgBouncer")
    assert took <= 2.0, (took, w.output())
    assert Job.objects.get(pk=job.pk).status == "failed"

    # SET LOCAL bounds the heartbeat's own transaction: with its row locked for 3 s, the
    # heartbeat gives up after LOCK_WAIT_SECONDS (unbounded, it would wait and succeed).
    with transaction.atomic():
        assert list(Worker.objects.select_for_update().filter(pk=row.pk).values_list("pk"))
        time.sleep(3.0)
    assert "lock timeout" in w.output(), w.output()

    # ... and nothing of it is left on any server connection, for the next client to get.
    time.sleep(1.0)  # heartbeats again, on whichever server connection is free
    assert _heartbeats_on_the_pool() > 0
    assert _lock_timeouts_left_on_the_pool() == {"0"}
    assert stop_all(w) == [0], w.output()
