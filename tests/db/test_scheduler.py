"""The scheduler against a real database: one row per occurrence whoever ticks, catch-up,
disable/pause/resume, paused queues, jobs removed from code, locks, precheck and pruning.

Every tick gets its ``now`` from the test, so nothing here waits for a clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_jobs import registry
from django_jobs.jobtypes import build_job_type
from django_jobs.models import Job, JobSchedule, JobStatus, JobTypeLock
from django_jobs.pruning import prune
from django_jobs.worker import scheduler as scheduler_module
from django_jobs.worker.claim import claim
from django_jobs.worker.loop import Worker
from django_jobs.worker.scheduler import Scheduler

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)  # half a minute past 12:00


def minute(n: int) -> datetime:
    """The every-minute occurrence ``n`` minutes after 12:00."""
    return datetime(2026, 5, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=n)


def _noop(ctx, **data):
    return "ran"


@pytest.fixture
def define():
    """Register recurring job types for one test; unregistered at the end."""
    names: list[str] = []

    def define(name: str, func=_noop, **options):
        options.setdefault("every", timedelta(minutes=1))
        job_type = build_job_type(func, {"name": name, **options})
        registry.register(job_type)
        names.append(name)
        return job_type

    yield define
    for name in names:
        registry.unregister(name)


def rows(name: str):
    return Job.objects.for_name(name).order_by("occurrence")


def occurrences(name: str, status: str | None = None) -> list[datetime]:
    qs = rows(name)
    if status:
        qs = qs.filter(status=status)
    return list(qs.values_list("occurrence", flat=True))


def finish(name: str, occurrence: datetime, status: str = JobStatus.SUCCEEDED) -> None:
    Job.objects.for_name(name).filter(occurrence=occurrence).update(
        status=status, started_at=occurrence, finished_at=occurrence + timedelta(seconds=1)
    )


# -- one row per occurrence ----------------------------------------------------------------------


def test_first_tick_creates_the_next_occurrence_ahead_of_time(define):
    jt = define("sched.first", queue="reports", priority=5)
    assert Scheduler().tick(T0) >= 1
    (row,) = rows(jt.name)
    assert row.status == JobStatus.SCHEDULED
    assert row.occurrence == row.run_at == minute(1)
    assert (row.queue, row.priority, row.lock_key, row.data) == ("reports", 5, jt.name, {})
    assert JobSchedule.objects.get(name=jt.name).last_occurrence == minute(1)


def test_two_schedulers_at_the_same_moment_create_one_row(define):
    jt = define("sched.same")
    a, b = Scheduler(), Scheduler()
    a.tick(T0)
    b.tick(T0)
    a.tick(T0)
    assert occurrences(jt.name) == [minute(1)]


def test_two_schedulers_at_different_moments_create_one_row_per_occurrence(define):
    jt = define("sched.different", overlap=10)  # no row runs here: let them queue
    a, b = Scheduler(), Scheduler()
    for seconds in range(0, 5 * 60, 13):  # both tick, a few seconds apart, for five minutes
        a.tick(T0 + timedelta(seconds=seconds))
        b.tick(T0 + timedelta(seconds=seconds + 7))
    got = occurrences(jt.name)
    assert got == [minute(n) for n in range(1, 7)]
    dupes = (Job.objects.for_name(jt.name).values("occurrence").annotate(n=Count("pk"))
             .filter(n__gt=1))
    assert not dupes.exists()


def test_a_scheduler_with_a_stale_view_still_cannot_create_an_occurrence_twice(define):
    """Both schedulers read ``last_occurrence`` before either wrote: the constraint decides."""
    jt = define("sched.stale")
    assert scheduler_module._create_occurrence(jt, minute(1), T0) == 1
    assert scheduler_module._create_occurrence(jt, minute(1), T0) == 0
    assert occurrences(jt.name) == [minute(1)]


@pytest.mark.skipif("connection.vendor == 'sqlite'", reason="threads need row locks to race")
def test_schedulers_racing_on_threads_create_one_row_per_occurrence(define):
    # No row runs here: let them queue, as many as catch_up="all" makes.
    jt = define("sched.threads", overlap=100)
    burst = define("sched.threads-all", catch_up="all", overlap=100)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run(index: int):
        try:
            barrier.wait(5)
            scheduler = Scheduler()
            for seconds in range(0, 150, 10):
                scheduler.tick(T0 + timedelta(seconds=seconds + index))
            # A long gap: catch_up="all" creates many rows at once, on every thread.
            scheduler.tick(T0 + timedelta(minutes=30))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(30), minute(31)]
    assert occurrences(burst.name) == [minute(n) for n in range(1, 32)]


def test_the_unique_constraint_rejects_a_second_row_for_an_occurrence():
    Job.objects.create(name="sched.raw", occurrence=minute(1), run_at=minute(1))
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(name="sched.raw", occurrence=minute(1), run_at=minute(1))
    # Another name, or another occurrence, or no occurrence at all is fine.
    Job.objects.create(name="sched.other", occurrence=minute(1), run_at=minute(1))
    Job.objects.create(name="sched.raw", occurrence=minute(2), run_at=minute(2))
    Job.objects.create(name="sched.raw", run_at=minute(1))
    Job.objects.create(name="sched.raw", run_at=minute(1))
    assert Job.objects.for_name("sched.raw").count() == 4


def test_dedup_survives_pruning(define):
    jt = define("sched.pruned", keep=timedelta(minutes=5))
    scheduler = Scheduler()
    scheduler.tick(T0)
    finish(jt.name, minute(1))
    later = minute(1) + timedelta(seconds=10)
    scheduler.tick(later)
    assert occurrences(jt.name) == [minute(1), minute(2)]

    assert prune(now=minute(1) + timedelta(hours=1)) == 1  # only the finished occurrence
    assert occurrences(jt.name) == [minute(2)]

    # Ticking again at the same moments, on this scheduler or a fresh one, brings nothing back.
    for s in (scheduler, Scheduler()):
        assert s.tick(later) == 0
        assert s.tick(T0) == 0
    assert occurrences(jt.name) == [minute(2)]


# -- catch-up ------------------------------------------------------------------------------------


def _downtime(define, policy: str, **options):
    jt = define(f"sched.catchup-{policy}", catch_up=policy, **options)
    Scheduler().tick(T0)  # occurrence 12:01 created, then every worker stops for an hour
    created = Scheduler().tick(minute(61) + timedelta(seconds=30))
    return jt, created


def test_catch_up_latest_runs_the_latest_missed_once_and_supersedes_the_rest(define):
    jt, _ = _downtime(define, "latest")
    # 12:62 is not created while 12:61 waits (overlap=False).
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(61)]
    (old,) = rows(jt.name).filter(status=JobStatus.CANCELLED)
    assert old.occurrence == minute(1)
    assert "superseded" in old.error and "latest" in old.error
    assert old.finished_at is not None
    assert rows(jt.name).count() == 2  # not 60


def test_catch_up_latest_with_overlap_also_creates_the_next_occurrence_ahead(define):
    jt, _ = _downtime(define, "latest", overlap=2)
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(61), minute(62)]
    assert occurrences(jt.name, JobStatus.CANCELLED) == [minute(1)]


def test_catch_up_skip_waits_for_the_next(define):
    jt, _ = _downtime(define, "skip")
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(62)]
    assert occurrences(jt.name, JobStatus.CANCELLED) == [minute(1)]
    assert "superseded" in rows(jt.name).get(occurrence=minute(1)).error


def test_catch_up_all_runs_each_missed_occurrence(define):
    jt, _ = _downtime(define, "all", overlap=100)
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(n) for n in range(1, 63)]
    assert not rows(jt.name).filter(status=JobStatus.CANCELLED).exists()


def test_catch_up_latest_leaves_finished_rows_alone(define):
    jt = define("sched.catchup-finished")
    Scheduler().tick(T0)
    finish(jt.name, minute(1))
    Scheduler().tick(minute(30) + timedelta(seconds=1))
    assert rows(jt.name).get(occurrence=minute(1)).status == JobStatus.SUCCEEDED
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(30)]


def test_catch_up_all_runs_the_missed_occurrences_one_at_a_time_without_overlap(define):
    jt, created = _downtime(define, "all")
    assert created == 0  # 12:01 still waits: nothing is added to it
    assert occurrences(jt.name) == [minute(1)]
    finish(jt.name, minute(1))
    Scheduler().tick(minute(61) + timedelta(seconds=40))
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(2)]  # the next missed one


# -- overlap -------------------------------------------------------------------------------------


def _simulate(jt, start: datetime, until: datetime, body: timedelta) -> int:
    """Tick every half second from ``start`` to ``until`` while one worker runs each due row of
    ``jt`` for ``body``, one at a time; return the most rows pending at once."""
    running: tuple[Job, datetime] | None = None
    most = 0
    now = start
    scheduler = Scheduler()
    while now <= until:
        if running is not None and now >= running[1]:
            finish(jt.name, running[0].occurrence)
            running = None
        scheduler.tick(now)
        if running is None:
            due = rows(jt.name).filter(status=JobStatus.SCHEDULED, run_at__lte=now).first()
            if due is not None:
                Job.objects.filter(pk=due.pk).update(status=JobStatus.RUNNING, started_at=now)
                running = (due, now + body)
        most = max(most, Job.objects.for_name(jt.name).pending().count())
        now += timedelta(milliseconds=500)
    return most


def test_a_recurring_job_slower_than_its_interval_never_piles_up_occurrences(define):
    second = timedelta(seconds=1)
    jt = define("sched.slow", every=second)
    most = _simulate(jt, T0, T0 + timedelta(seconds=12), body=3 * second)
    assert most == 1  # never a second row while one is scheduled or running
    # Each run starts at the occurrence due when the previous one ends.
    assert occurrences(jt.name) == [T0 + n * second for n in (1, 4, 7, 10)]


def test_overlap_n_lets_at_most_n_occurrences_be_pending_or_running(define):
    second = timedelta(seconds=1)
    jt = define("sched.slow-3", every=second, overlap=3)
    most = _simulate(jt, T0, T0 + timedelta(seconds=12), body=3 * second)
    assert most == 3
    assert Job.objects.for_name(jt.name).pending().count() <= 3


def test_a_quick_recurring_job_still_runs_every_occurrence(define):
    jt = define("sched.quick", every=timedelta(seconds=1))
    end = T0 + timedelta(seconds=6)
    _simulate(jt, T0, end, body=timedelta(milliseconds=200))
    ran = occurrences(jt.name, JobStatus.SUCCEEDED) + occurrences(jt.name, JobStatus.RUNNING)
    assert sorted(ran) == [T0 + timedelta(seconds=n) for n in range(1, 7)]


def test_overlap_counts_occurrences_only_not_runs_enqueued_by_hand(define):
    jt = define("sched.by-hand")
    jt.enqueue()  # a run started by hand, besides the schedule
    Scheduler().tick(T0)
    assert rows(jt.name).filter(occurrence=minute(1), status=JobStatus.SCHEDULED).exists()
    assert rows(jt.name).count() == 2


# -- disabled, paused, removed --------------------------------------------------------------------


def test_a_disabled_job_is_not_scheduled(define, monkeypatch):
    jt = define("sched.off")
    monkeypatch.setenv(jt.env_flag, "false")
    Scheduler().tick(T0)
    assert not rows(jt.name).exists()
    jt2 = define("sched.off-by-option", enabled=False)
    Scheduler().tick(T0)
    assert not rows(jt2.name).exists()


def test_disabling_on_one_host_schedules_nothing_there_and_cancels_nothing_of_other_hosts(
    define, monkeypatch
):
    jt = define("sched.toggle")
    Scheduler().tick(T0)
    pending = rows(jt.name).get()
    monkeypatch.setenv(jt.env_flag, "false")
    for n in range(1, 40):  # this host's scheduler keeps ticking: it creates nothing...
        Scheduler().tick(minute(n))
    # ...and cancels nothing: on hosts where the job is enabled it still runs.
    assert list(rows(jt.name).values_list("pk", "status")) == [(pending.pk, "scheduled")]


def test_pause_cancels_pending_and_stops_scheduling_resume_starts_from_the_next(define):
    jt = define("sched.paused")
    Scheduler().tick(T0)
    registry.pause(jt.name)
    row = rows(jt.name).get()
    assert row.status == JobStatus.CANCELLED and row.error == "not run: paused"
    assert JobSchedule.objects.get(name=jt.name).paused
    for n in range(1, 20):
        assert Scheduler().tick(minute(n)) == 0 or not rows(jt.name).filter(
            status=JobStatus.SCHEDULED).exists()
    assert not rows(jt.name).filter(status=JobStatus.SCHEDULED).exists()

    registry.resume(jt.name)
    Scheduler().tick(minute(20) + timedelta(seconds=30))
    assert occurrences(jt.name, JobStatus.SCHEDULED) == [minute(21)]


def test_pause_and_resume_within_one_interval_still_runs_the_next_occurrence(define):
    """The occurrence cancelled by the pause is the one due next after the resume: it must not
    be lost to the unique constraint."""
    jt = define("sched.quick-pause", every=timedelta(hours=1))
    Scheduler().tick(T0)
    registry.pause(jt.name)
    registry.resume(jt.name)
    Scheduler().tick(T0 + timedelta(minutes=1))
    assert rows(jt.name).filter(status=JobStatus.SCHEDULED).count() == 1
    assert rows(jt.name).get(status=JobStatus.SCHEDULED).run_at == datetime(
        2026, 5, 1, 13, tzinfo=UTC
    )


def test_pausing_a_job_that_is_not_recurring_is_refused():
    with pytest.raises(ValueError, match="not recurring"):
        registry.pause("jobsapp.noop")


def test_a_recurring_job_removed_from_the_code_has_its_future_rows_cancelled(define):
    jt = define("sched.removed")
    Scheduler().tick(T0)
    finish(jt.name, minute(1))
    Scheduler().tick(minute(1) + timedelta(seconds=1))
    registry.unregister(jt.name)
    Scheduler().tick(minute(1) + timedelta(seconds=2))
    past = rows(jt.name).get(occurrence=minute(1))
    future = rows(jt.name).get(occurrence=minute(2))
    assert past.status == JobStatus.SUCCEEDED  # history is left alone
    assert future.status == JobStatus.CANCELLED
    assert "no longer defined" in future.error
    # Nothing more is created for it.
    Scheduler().tick(minute(10))
    assert rows(jt.name).count() == 2


# -- paused queues, locks, precheck: with a worker ------------------------------------------------


def _burst(**options) -> Worker:
    worker = Worker(burst=True, install_signals=False, scheduler=False, **options)
    assert worker.run() == 0
    return worker


def test_a_paused_queue_keeps_its_recurring_jobs_scheduled_until_resumed(define):
    jt = define("sched.in-q", queue="q", overlap=2)
    other = define("sched.in-default")
    past = timezone.now() - timedelta(minutes=3)
    Scheduler().tick(past)  # the first occurrences (within the last three minutes) are due
    registry.pause_queue("q")
    assert registry.paused_queues() == ["q"]

    _burst()  # a fresh worker, so it reads the paused queues at once
    assert rows(other.name).get().status == JobStatus.SUCCEEDED
    assert rows(jt.name).get().status == JobStatus.SCHEDULED
    # The scheduler still creates the queue's occurrences while it is paused.
    Scheduler().tick(past + timedelta(minutes=1))
    assert rows(jt.name).filter(status=JobStatus.SCHEDULED).count() == 2

    registry.resume_queue("q")
    _burst()
    assert set(rows(jt.name).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}


def test_locked_recurring_job_waits_while_the_previous_run_holds_the_lock(define):
    jt = define("sched.locked", overlap=2)  # the next one may wait while one runs
    assert jt.uses_lock  # recurring jobs are locked by default
    now = timezone.now()
    base = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    Scheduler().tick(base + timedelta(seconds=30))
    first = rows(jt.name).get()
    assert first.occurrence == base + timedelta(minutes=1)
    # The first occurrence is running on some worker, holding the type's lock.
    Job.objects.filter(pk=first.pk).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker="elsewhere:1",
        locked_until=now + timedelta(minutes=5),
    )
    JobTypeLock.objects.create(
        key=jt.name, job_id=first.pk, worker="elsewhere:1", locked_until=now + timedelta(minutes=5)
    )
    Scheduler().tick(base + timedelta(minutes=1, seconds=30))  # the next one, due by now
    second = rows(jt.name).get(status=JobStatus.SCHEDULED)
    assert second.occurrence == base + timedelta(minutes=2) <= now

    assert claim("test:1", 5, now=now) == []
    _burst()
    second.refresh_from_db()
    assert second.status == JobStatus.SCHEDULED  # waited

    JobTypeLock.objects.filter(key=jt.name).delete()  # the previous run ended
    _burst()
    second.refresh_from_db()
    assert second.status == JobStatus.SUCCEEDED


def test_precheck_skips_a_run_with_its_reason():
    done = registry.get("jobsapp.prechecked").enqueue(done=True)
    todo = registry.get("jobsapp.prechecked").enqueue(done=False)
    _burst()
    done.refresh_from_db()
    todo.refresh_from_db()
    assert done.status == JobStatus.SKIPPED
    assert done.result == {"skipped": "already done"}
    assert todo.status == JobStatus.SUCCEEDED and todo.result == "ran"


def test_precheck_of_a_recurring_job_skips_that_occurrence(define):
    jt = define("sched.prechecked", precheck=lambda ctx: f"{ctx.job.occurrence:%H:%M} done")
    Scheduler().tick(timezone.now() - timedelta(minutes=2))
    _burst()
    row = rows(jt.name).get()
    assert row.status == JobStatus.SKIPPED
    assert row.result == {"skipped": f"{row.occurrence:%H:%M} done"}


# -- pruning --------------------------------------------------------------------------------------


def _make(name: str, status: str, finished_ago: timedelta | None, now: datetime) -> Job:
    return Job.objects.create(
        name=name, status=status, run_at=now - timedelta(days=30),
        finished_at=None if finished_ago is None else now - finished_ago,
    )


def test_prune_deletes_only_finished_rows_older_than_keep(define):
    jt = define("sched.keep", keep=timedelta(hours=1))
    forever = define("sched.forever", keep=None)
    now = timezone.now()
    old = [_make(jt.name, s, timedelta(hours=2), now)
           for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SKIPPED)]
    recent = _make(jt.name, JobStatus.SUCCEEDED, timedelta(minutes=30), now)
    scheduled = _make(jt.name, JobStatus.SCHEDULED, None, now)
    running = _make(jt.name, JobStatus.RUNNING, None, now)
    kept_forever = _make(forever.name, JobStatus.SUCCEEDED, timedelta(days=365), now)
    unregistered_old = _make("sched.gone", JobStatus.SUCCEEDED, timedelta(days=8), now)
    unregistered_recent = _make("sched.gone", JobStatus.SUCCEEDED, timedelta(days=6), now)

    assert prune(now=now) == len(old) + 1
    left = set(Job.objects.values_list("pk", flat=True))
    assert left == {recent.pk, scheduled.pk, running.pk, kept_forever.pk, unregistered_recent.pk}
    assert not left & {r.pk for r in old} and unregistered_old.pk not in left

    # Far in the future: still never a scheduled or running row, nor a keep=None one.
    prune(now=now + timedelta(days=3650))
    assert set(Job.objects.values_list("pk", flat=True)) == {scheduled.pk, running.pk,
                                                             kept_forever.pk}


def test_prune_works_in_batches(define):
    jt = define("sched.batches", keep=timedelta(hours=1))
    now = timezone.now()
    Job.objects.bulk_create([
        Job(name=jt.name, status=JobStatus.SUCCEEDED, run_at=now - timedelta(days=1),
            finished_at=now - timedelta(hours=2, minutes=i))
        for i in range(7)
    ])
    assert prune(now=now, batch=3, max_batches=1) == 3
    assert Job.objects.for_name(jt.name).count() == 4
    with CaptureQueriesContext(connection) as queries:
        assert prune(now=now, batch=3) == 4
    deletes = [q for q in queries.captured_queries
               if q["sql"].upper().startswith("DELETE") and "django_jobs_job" in q["sql"]]
    assert len(deletes) == 2  # 3 + 1 rows: two batches, each its own DELETE
    assert not Job.objects.for_name(jt.name).exists()


def test_prune_deletes_the_oldest_first(define):
    jt = define("sched.oldest", keep=timedelta(hours=1))
    now = timezone.now()
    made = [_make(jt.name, JobStatus.SUCCEEDED, timedelta(hours=h), now) for h in (2, 5, 3)]
    prune(now=now, batch=1, max_batches=1)
    assert set(Job.objects.values_list("pk", flat=True)) == {made[0].pk, made[2].pk}
