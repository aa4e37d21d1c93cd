"""Defects found by fault drills, proven fixed with real worker processes: prefetched runs,
crashes, a database outage, a caller's open transaction, and a server without SKIP LOCKED."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.db import connection, connections, transaction

from django_jobs import registry
from django_jobs.models import Job, JobTypeLock
from tests.jobsapp.models import Execution, Interval

from .conftest import logs, stop_all, wait_or_explain
from .proxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

LOST_AFTER = settings.DJANGO_JOBS["WORKER_LOST_AFTER"]

needs_server = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="a database server: SQLite has no connections to cut",
)


def _row(job) -> Job:
    return Job.objects.get(pk=job.pk)


def _warm_up(w, count: int = 30) -> None:
    """Run short jobs first, so the worker turns its prefetch on (jobs under 50 ms)."""
    noop = registry.get("jobsapp.noop")
    jobs = noop.enqueue_many([{} for _ in range(count)])
    wait_or_explain(
        lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status="succeeded").count()
        == count, 20, w, what="warm-up jobs did not run",
    )


def _prefetched(w, quick: int):
    """A slow run, then ``quick`` runs of 1 s timeout claimed with it in one batch."""
    with transaction.atomic():
        slow = registry.get("jobsapp.slow_first").enqueue(seconds=2.5)
        quick_runs = [
            registry.get("jobsapp.quick_with_short_timeout").enqueue(token=f"q{n}")
            for n in range(quick)
        ]
    wait_or_explain(lambda: _row(slow).started_at is not None, 15, w, what="slow never started")
    return slow, quick_runs


def test_prefetched_runs_are_timed_out_only_from_their_real_start_and_run_once(worker):
    w = worker("--concurrency", "1")
    _warm_up(w)
    slow, quick = _prefetched(w, 3)
    assert all(_row(job).status == "running" for job in quick), "not claimed with the slow one"
    wait_or_explain(lambda: all(_row(j).status != "running" for j in [slow, *quick]), 20, w,
                    what="runs did not end")
    for job in quick:
        row = _row(job)
        assert (row.status, row.attempt) == ("succeeded", 1), (row.error, w.output())
    assert not Job.objects.filter(rescheduled_from__in=[j.pk for j in quick]).exists()
    assert sorted(Execution.objects.values_list("token", flat=True)) == ["q0", "q1", "q2"]
    assert stop_all(w) == [0], w.output()


def test_a_crash_puts_prefetched_runs_that_never_started_back_without_using_an_attempt(worker):
    a = worker("--concurrency", "1")
    _warm_up(a)
    slow, quick = _prefetched(a, 5)
    assert all(_row(job).status == "running" for job in quick), "not claimed with the slow one"
    a.proc.kill()
    a.wait(timeout=10)
    b = worker("--concurrency", "2")
    wait_or_explain(lambda: all(_row(j).status == "succeeded" for j in quick), 30, a, b,
                    what="the prefetched runs did not all run")
    for job in quick:
        row = _row(job)
        assert row.attempt == 1 and row.error == "", (row.attempt, row.error)
    assert not Job.objects.filter(rescheduled_from__in=[j.pk for j in quick]).exists()
    dead = _row(slow)
    assert dead.status == "failed" and dead.error.startswith("worker lost"), dead.error
    assert sorted(Execution.objects.values_list("token", flat=True)) == [
        f"q{n}" for n in range(5)
    ]
    assert stop_all(b) == [0], b.output()


@pytest.fixture
def proxy():
    settings_dict = connection.settings_dict
    through = TcpProxy(settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"]))
    scheme = "postgres" if connection.vendor == "postgresql" else "mysql"
    user = settings_dict["USER"]
    through.url = f"{scheme}://{user}@127.0.0.1:{through.port}/{settings_dict['NAME']}"
    yield through
    through.close()


@needs_server
def test_a_database_outage_longer_than_worker_lost_after_loses_no_run_and_reruns_nothing(
    worker, proxy
):
    env = {"DATABASE_URL": proxy.url}
    a = worker("--concurrency", "2", env=env)
    b = worker("--concurrency", "2", env=env)
    record = registry.get("jobsapp.record_then_sleep")
    jobs = [record.enqueue(token=f"t{n}", seconds=2.0) for n in range(4)]
    wait_or_explain(lambda: Execution.objects.count() == 4, 20, a, b,
                    what="the runs did not all start")
    proxy.cut()  # every run ends during the outage: its outcome must wait for the database
    time.sleep(max(10.0, 3 * LOST_AFTER))
    proxy.restore()
    wait_or_explain(lambda: all(_row(j).status == "succeeded" for j in jobs), 40, a, b,
                    what="the outcomes never landed")
    time.sleep(LOST_AFTER + 1)  # a late write-off would show by now
    for job in jobs:
        row = _row(job)
        assert (row.status, row.attempt) == ("succeeded", 1), (row.error, logs(a, b))
    assert Job.objects.count() == 4, logs(a, b)
    assert Execution.objects.count() == 4
    assert "worker lost" not in logs(a, b) and "written off" not in logs(a, b)
    assert stop_all(a, b) == [0, 0], logs(a, b)


@needs_server
def test_a_locked_run_inside_a_callers_open_transaction_makes_no_worker_wait(worker):
    w = worker("--concurrency", "2")
    echo = registry.get("jobsapp.echo")
    locked_sleep = registry.get("jobsapp.locked_sleep")
    with transaction.atomic():
        assert locked_sleep.run(seconds=0, token="inside") == "inside"
        # Work committed elsewhere meanwhile: unrelated jobs and the same lock key.
        others = []

        def enqueue_elsewhere():
            try:
                others.extend(echo.enqueue(n=n) for n in range(5))
                others.append(locked_sleep.enqueue(seconds=0, token="after"))
            finally:
                connections.close_all()

        thread = threading.Thread(target=enqueue_elsewhere)
        thread.start()
        thread.join()
        started = time.monotonic()
        wait_or_explain(
            lambda: Job.objects.filter(pk__in=[j.pk for j in others], status="succeeded").count()
            == 6, 10, w, what="workers waited on the caller's transaction",
        )
        took = time.monotonic() - started
        time.sleep(1.0)  # the caller keeps its transaction open a while longer
    assert took < 5.0, took
    assert stop_all(w) == [0], w.output()


@needs_server
def test_without_skip_locked_a_lost_race_for_a_lock_key_leaks_nothing(worker):
    env = {"DJANGO_JOBS_TEST_NO_SKIP_LOCKED": "1"}
    workers = [worker("--concurrency", "2", env=env) for _ in range(3)]
    per_customer = registry.get("jobsapp.per_customer")
    jobs = per_customer.enqueue_many(
        [{"customer": n % 4, "seconds": 0.02} for n in range(60)]
    )
    wait_or_explain(
        lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status="succeeded").count()
        == 60, 30, *workers, what="runs waited on leaked locks",
    )
    assert not JobTypeLock.objects.exists()
    by_key: dict[str, list[Interval]] = {}
    for interval in Interval.objects.all():
        by_key.setdefault(interval.key, []).append(interval)
    for runs in by_key.values():
        runs.sort(key=lambda r: r.started)
        for first, second in zip(runs, runs[1:], strict=False):
            assert second.started >= first.ended, "two runs of one key overlapped"
    assert stop_all(*workers) == [0, 0, 0], logs(*workers)
