"""Many worker processes racing for the same rows: every job exactly once, locks never shared."""

from __future__ import annotations

import time

import pytest
from django.db.models import Count

from django_jobs import registry
from django_jobs.models import Job, JobTypeLock
from tests.jobsapp.models import Execution, Interval

from .conftest import logs, stop_all, vendor, wait_or_explain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def _run_until_drained(workers, name: str, timeout: float) -> float:
    started = time.monotonic()
    wait_or_explain(
        lambda: not Job.objects.for_name(name).pending().exists(), timeout, *workers,
        what=f"{name} jobs still pending",
    )
    return time.monotonic() - started


def _assert_clean_exit(workers) -> None:
    statuses = stop_all(*workers)
    assert statuses == [0] * len(workers), logs(*workers)
    for w in workers:
        assert "Traceback" not in w.output(), w.output()


def test_every_job_runs_exactly_once_across_racing_worker_processes(worker):
    total = 300 if vendor() == "sqlite" else 2000
    workers = [worker("--concurrency", "2") for _ in range(4)]
    registry.get("jobsapp.record").enqueue_many([{"token": f"t{i}"} for i in range(total)])
    elapsed = _run_until_drained(workers, "jobsapp.record", timeout=150)

    jobs = Job.objects.for_name("jobsapp.record")
    statuses = dict(jobs.values_list("status").order_by().annotate(n=Count("pk")))
    assert statuses == {"succeeded": total}, (statuses, logs(*workers))
    assert Execution.objects.count() == total
    assert Execution.objects.values("token").distinct().count() == total
    # Each execution belongs to the job row that claimed it, and to that row's worker.
    ran_by = dict(jobs.values_list("pk", "worker"))
    for job_id, who in Execution.objects.values_list("job_id", "worker"):
        assert ran_by[job_id] == who
    share = dict(jobs.values_list("worker").order_by().annotate(n=Count("pk")))
    print(f"\n{vendor()}: {total} jobs by 4 workers x 2 threads in {elapsed:.1f}s "
          f"({total / elapsed:.0f} jobs/s); share per worker: {sorted(share.values())}")
    assert len(share) >= 2, share
    _assert_clean_exit(workers)


def _assert_no_overlap(intervals) -> None:
    rows = sorted(intervals, key=lambda r: r.started)
    for before, after in zip(rows, rows[1:], strict=False):
        assert before.ended is not None, before.__dict__
        assert after.started >= before.ended, (
            f"runs overlap: {before.job_id} ran {before.started:.3f}-{before.ended:.3f}, "
            f"{after.job_id} started {after.started:.3f}"
        )


def test_per_type_lock_never_lets_two_runs_overlap_across_workers(worker):
    workers = [worker("--concurrency", "2") for _ in range(3)]
    registry.get("jobsapp.locked_sleep").enqueue_many([{"seconds": 0.1}] * 15)
    _run_until_drained(workers, "jobsapp.locked_sleep", timeout=60)

    jobs = Job.objects.for_name("jobsapp.locked_sleep")
    assert list(jobs.values_list("status", flat=True)) == ["succeeded"] * 15, logs(*workers)
    intervals = list(Interval.objects.filter(key="locked_sleep"))
    assert len(intervals) == 15
    _assert_no_overlap(intervals)
    # The database agrees: no run started while another one of the type had not ended.
    for row in intervals:
        assert not Interval.objects.filter(
            key="locked_sleep", started__lt=row.ended, ended__gt=row.started
        ).exclude(pk=row.pk).exists()
    assert not JobTypeLock.objects.exists()
    # (Which worker runs them is not asserted: the one that frees the lock usually claims the
    # next at once, while the others keep polling against the held lock.)
    _assert_clean_exit(workers)


def test_sqlite_database_is_locked_neither_crashes_a_worker_nor_runs_a_job_twice(worker):
    if vendor() != "sqlite":
        pytest.skip("SQLite only: its single writer lock is what this test contends for")
    workers = [worker("--concurrency", "2") for _ in range(4)]
    record = registry.get("jobsapp.record")
    # Enqueue while the workers claim, one row at a time and in batches: the test process is
    # a fifth writer fighting for the same lock.
    total = 0
    for batch in range(10):
        record.enqueue_many([{"token": f"b{batch}-{i}"} for i in range(20)])
        for i in range(10):
            record.enqueue(token=f"s{batch}-{i}")
        total += 30
    _run_until_drained(workers, "jobsapp.record", timeout=90)

    jobs = Job.objects.for_name("jobsapp.record")
    statuses = dict(jobs.values_list("status").order_by().annotate(n=Count("pk")))
    assert statuses == {"succeeded": total}, (statuses, logs(*workers))
    assert Execution.objects.count() == total
    assert all(w.proc.poll() is None for w in workers), logs(*workers)
    _assert_clean_exit(workers)
