"""Time and liveness with real worker processes: the database's clock decides, a dead worker's
runs are recovered within WORKER_LOST_AFTER + RESCUE_INTERVAL whatever their timeout, a job's
own transaction delays no heartbeat, a hung thread ends its process, and a deploy with old and
new code side by side loses nothing."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from django_jobs import clock, registry
from django_jobs.models import Job, JobTypeLock
from django_jobs.models import Worker as WorkerRow
from django_jobs.worker.loop import EXIT_HUNG, EXIT_RELEASED
from tests.jobsapp.models import Execution, OccurrenceRun

from .conftest import logs, stop_all, wait_or_explain, worker_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

LOST_AFTER = settings.DJANGO_JOBS["WORKER_LOST_AFTER"]
RESCUE_INTERVAL = settings.DJANGO_JOBS["RESCUE_INTERVAL"]
HEARTBEAT = settings.DJANGO_JOBS["HEARTBEAT_INTERVAL"]
HUNG_AFTER = settings.DJANGO_JOBS["HUNG_AFTER"]

SQLITE = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")

needs_row_locks = pytest.mark.skipif(
    SQLITE,
    reason="one host, one clock and one writer: SQLite proves nothing here",
)


def _row(job) -> Job:
    return Job.objects.get(pk=job.pk)


@needs_row_locks
def test_workers_whose_clocks_differ_by_two_minutes_never_double_a_run_and_wait_for_db_time(
    worker,
):
    behind = worker("--concurrency", "2", env={"DJANGO_JOBS_CLOCK_SKEW": "-60"})
    ahead = worker("--concurrency", "2", env={"DJANGO_JOBS_CLOCK_SKEW": "60"})
    timed_record = registry.get("jobsapp.timed_record")
    # Long runs (timeout 20 s, two attempts): a rescuer reading its own clock against a lease
    # written with the other's would write them off while they run.
    longs = [timed_record.enqueue(token=f"long-{n}", seconds=5) for n in range(2)]
    # Due in 3 s of database time: the host ahead would start them at once, the one behind a
    # minute late.
    delayed = [timed_record.enqueue(token=f"delayed-{n}", delay=3) for n in range(2)]
    wait_or_explain(lambda: Execution.objects.count() == 4, 30, behind, ahead,
                    what="not every run recorded itself")
    time.sleep(LOST_AFTER + 2 * RESCUE_INTERVAL)  # any late rescue would show by now

    assert sorted(Execution.objects.values_list("token", flat=True)) == [
        "delayed-0", "delayed-1", "long-0", "long-1"
    ]
    assert Job.objects.count() == 4, logs(behind, ahead)
    for job in longs + delayed:
        row = _row(job)
        assert (row.status, row.attempt) == ("succeeded", 1), (row.error, logs(behind, ahead))
    for job in delayed:
        started = Execution.objects.get(job_id=job.pk).started
        due = _row(job).run_at.timestamp()
        assert due - 0.05 <= started <= due + 2.0, (started - due, logs(behind, ahead))
    assert "worker lost" not in logs(behind, ahead)
    assert stop_all(behind, ahead) == [0, 0], logs(behind, ahead)


def test_sigkill_of_a_worker_running_a_six_hour_job_is_recovered_within_lost_after(
    worker, marker_dir
):
    a = worker()
    job = registry.get("jobsapp.six_hours").enqueue(token="six-hours")
    wait_or_explain((marker_dir / f"{job.pk}.1").exists, 15, a, what="the job never started")
    b = worker()
    killed = time.monotonic()
    a.proc.kill()
    a.wait(timeout=10)

    def recovered():
        return _row(job).status == "failed"

    wait_or_explain(recovered, LOST_AFTER + RESCUE_INTERVAL + 10, a, b, what="not recovered")
    took = time.monotonic() - killed
    print(f"\nSIGKILL -> recovered in {took:.2f} s (WORKER_LOST_AFTER {LOST_AFTER:g} s + "
          f"RESCUE_INTERVAL {RESCUE_INTERVAL:g} s; the job's timeout is 6 h)")
    # Up to one heartbeat may have been due just before the kill; a sweep runs every interval.
    assert took <= LOST_AFTER + RESCUE_INTERVAL + HEARTBEAT + 1.0, took
    row = _row(job)
    assert row.error.startswith("worker lost"), row.error
    retry = wait_or_explain(
        lambda: Job.objects.filter(rescheduled_from=job.pk, status="succeeded").first(), 15, b,
        what="the retry did not run",
    )
    assert retry.worker == worker_name(b)
    assert list(Execution.objects.values_list("token", flat=True)) == ["six-hours"]
    assert stop_all(b) == [0], b.output()


def test_a_peer_sigkilled_just_after_an_idle_workers_heartbeat_is_recovered_as_fast(
    worker, marker_dir
):
    # The worker that must recover it polls at its default (10 s while LISTEN works, on
    # PostgreSQL), and skips its sweep while the look sent with its heartbeat finds nothing:
    # only the next look, which finds the peer overdue, can wake it in time.
    a = worker()
    job = registry.get("jobsapp.six_hours").enqueue(token="six-hours")
    wait_or_explain((marker_dir / f"{job.pk}.1").exists, 15, a, what="the job never started")
    b = worker(env={"DJANGO_JOBS_TEST_DEFAULT_POLL": "1"})
    b_row = wait_or_explain(lambda: WorkerRow.objects.filter(pid=b.pid).first(), 10, b,
                            what="no worker row")
    time.sleep(1.0)  # b listens, and sleeps its long poll
    beat = WorkerRow.objects.get(pk=b_row.pk).heartbeat_at
    wait_or_explain(lambda: WorkerRow.objects.get(pk=b_row.pk).heartbeat_at != beat, 5, b,
                    what="b stopped beating")
    killed = time.monotonic()  # just after b's look found nothing
    a.proc.kill()
    a.wait(timeout=10)

    wait_or_explain(lambda: _row(job).status == "failed", LOST_AFTER + RESCUE_INTERVAL + 15,
                    a, b, what="not recovered")
    took = time.monotonic() - killed
    print(f"\nSIGKILL just after the idle peer's heartbeat -> recovered in {took:.2f} s")
    assert took <= LOST_AFTER + RESCUE_INTERVAL + HEARTBEAT + 1.0, (took, b.output())
    assert _row(job).error.startswith("worker lost"), _row(job).error
    wait_or_explain(
        lambda: Job.objects.filter(rescheduled_from=job.pk, status="succeeded").exists(), 15, b,
        what="the retry did not run",
    )
    assert stop_all(b) == [0], b.output()


@needs_row_locks
def test_a_job_holding_a_transaction_for_20_s_while_reporting_progress_delays_no_heartbeat(
    worker, marker_dir
):
    w = worker("--concurrency", "3")
    holder = registry.get("jobsapp.holds_transaction").enqueue(seconds=20, steps=40)
    wait_or_explain((marker_dir / f"{holder.pk}.1").exists, 15, w, what="holder never started")
    # A second job on the same worker that ignores its 1 s timeout: it must still be timed out
    # on time while the first holds its transaction.
    victim = registry.get("jobsapp.ignores_timeout").enqueue(seconds=2.5)
    process = WorkerRow.objects.get(pid=w.pid, kind="worker")
    oldest = 0.0
    while _row(holder).status == "running":
        age = (clock.now() - WorkerRow.objects.get(pk=process.pk).heartbeat_at).total_seconds()
        oldest = max(oldest, age)
        time.sleep(0.1)
    print(f"\nlongest time without a heartbeat while a job held its transaction: {oldest:.2f} s")
    assert oldest < 2 * HEARTBEAT + 1.0, (oldest, w.output())

    row = _row(victim)
    assert row.status == "failed" and row.error.startswith("timed out"), row.error
    overrun = (row.finished_at - row.started_at).total_seconds() - 1.0
    assert overrun < 1.5, (overrun, w.output())
    held = _row(holder)
    assert held.status == "succeeded", (held.error, w.output())
    assert (held.progress, held.progress_message) == (1.0, "step 40 of 40")
    assert "worker lost" not in w.output() and "written off" not in w.output()
    assert stop_all(w) == [0], w.output()


def test_a_hung_thread_makes_its_worker_exit_freeing_the_lock_for_the_next_run(
    worker, marker_dir
):
    a = worker("--concurrency", "2")
    hang = registry.get("jobsapp.hangs").enqueue()
    wait_or_explain((marker_dir / f"{hang.pk}.1").exists, 15, a, what="never started")
    # Meanwhile the worker's other thread still works.
    meanwhile = registry.get("jobsapp.hangs_then_next").enqueue(token="meanwhile")
    started = time.monotonic()
    status = a.wait(timeout=1.0 + HUNG_AFTER + 15)
    took = time.monotonic() - started
    assert status == EXIT_HUNG == 70, a.output()
    assert took <= 1.0 + HUNG_AFTER + 5, took
    out = a.output()
    assert "HUNG_AFTER" in out and "hung thread's stack" in out and "in hangs" in out, out
    assert _row(meanwhile).status == "succeeded", out
    row = _row(hang)
    assert row.status == "failed" and row.error.startswith("timed out"), row.error
    assert not JobTypeLock.objects.filter(key="jobsapp.hangs").exists(), out
    assert not WorkerRow.objects.filter(pid=a.pid).exists(), "the exit leaves its row behind"

    # The supervisor starts a fresh process; the next run of the key goes through.
    b = worker()
    following = registry.get("jobsapp.hangs").enqueue(seconds=0.1)
    wait_or_explain(lambda: _row(following).status == "succeeded", 15, b,
                    what="the next run of the key did not run")
    assert stop_all(b) == [0], b.output()


def test_old_and_new_code_side_by_side_lose_no_occurrence_and_fail_no_new_job(worker):
    # The old code does not define the new jobs, and has the every-second job switched off on
    # its host; the new code defines them and has it on.
    old = worker("--concurrency", "2")
    new = worker("--concurrency", "2", env={"DJANGO_JOBS_TEST_NEW_CODE": "1",
                                            "JOBS_JOBSAPP_SCHEDULING_TICK_ENABLED": "true"})
    rows = [Job.objects.create(name="jobsapp.new_job", data={"token": f"new-{n}"})
            for n in range(10)]
    wait_or_explain(
        lambda: Job.objects.filter(pk__in=[r.pk for r in rows], status="succeeded").count() == 10,
        20, old, new, what="rows of the new job did not all run",
    )
    # A few seconds of both schedulers ticking side by side.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.5)
    # A worker stopped while occurrences keep coming may give back rows it had prefetched
    # and not started (status 75); no run that had started is cut off.
    statuses = stop_all(old, new)
    assert set(statuses) <= {0, EXIT_RELEASED}, logs(old, new)
    assert "released back to the queue" not in logs(old, new)

    assert {row.worker for row in Job.objects.filter(name="jobsapp.new_job")} == {
        worker_name(new)
    }
    for name in ("jobsapp.new_every_second", "jobsapp.scheduling_tick"):
        occurrences = Job.objects.filter(name=name, occurrence__isnull=False)
        assert occurrences.count() >= 3, (name, logs(old, new))
        assert not occurrences.filter(status="cancelled").exists(), (
            list(occurrences.filter(status="cancelled").values_list("error", flat=True))
        )
        assert not occurrences.filter(status="failed").exists()
    assert OccurrenceRun.objects.count() >= 3
    assert Execution.objects.filter(token__startswith="every:").count() >= 3
    assert not Job.objects.filter(status="failed").exists(), list(
        Job.objects.filter(status="failed").values_list("name", "error")
    )
