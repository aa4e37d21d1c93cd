"""``django_jobs.testing``: run_due_jobs(), frozen_clock() and eager(), as a user's test suite
uses them — with pytest (transactional) and inside a ``django.test.TestCase``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase, override_settings

from django_jobs import clock, registry
from django_jobs.jobtypes import build_job_type
from django_jobs.models import Job, JobTypeLock
from django_jobs.testing import TestClock, eager, frozen_clock, run_due_jobs
from django_jobs.worker.claim import claim

T0 = datetime(2026, 3, 2, 1, 59, 30, tzinfo=UTC)


@pytest.fixture
def define():
    names: list[str] = []

    def define(name: str, func, **options):
        registry.register(build_job_type(func, {"name": name, **options}))
        names.append(name)

    yield define
    for name in names:
        registry.unregister(name)


def _stamp(ctx, **data):
    return ctx.job.run_at.isoformat()


@pytest.mark.django_db(transaction=True)
class TestRunDueJobs:
    def test_runs_every_due_job_in_this_process_and_leaves_later_ones(self):
        due = [registry.enqueue("jobsapp.echo", n=n) for n in range(3)]
        later = registry.enqueue("jobsapp.echo", delay=timedelta(minutes=5))
        ran = run_due_jobs(schedule=False)
        assert [job.pk for job in ran] == [job.pk for job in due]
        assert [job.status for job in ran] == ["succeeded"] * 3
        assert ran[0].result == {"data": {"n": 0}, "attempt": 1}
        assert Job.objects.get(pk=later.pk).status == "scheduled"

    def test_failures_are_recorded_and_due_retries_run_in_the_same_call(self):
        job = registry.enqueue("jobsapp.flaky", fail_times=1)
        with frozen_clock() as test_clock:
            ran = run_due_jobs(schedule=False)
            assert [r.status for r in ran] == ["failed"]  # the retry waits 200 ms
            test_clock.advance(seconds=1)
            ran = run_due_jobs(schedule=False)
        assert [(r.status, r.attempt, r.rescheduled_from_id) for r in ran] == [
            ("succeeded", 2, job.pk)
        ]

    def test_honours_locks_held_by_running_jobs(self):
        held = registry.enqueue("jobsapp.locked_sleep")
        claim("elsewhere:1", 1, ids=[held.pk])
        waiting = registry.enqueue("jobsapp.locked_sleep", seconds=0)
        assert run_due_jobs(schedule=False) == []
        assert Job.objects.get(pk=waiting.pk).status == "scheduled"
        JobTypeLock.objects.all().delete()
        assert [r.pk for r in run_due_jobs(schedule=False)] == [waiting.pk]

    def test_skips_disabled_jobs_and_paused_queues_and_filters_by_name_and_queue(self):
        disabled = registry.enqueue("jobsapp.disabled_job")
        paused = registry.enqueue("jobsapp.echo", queue="mail")
        registry.pause_queue("mail")
        noop = registry.enqueue("jobsapp.noop")
        echo = registry.enqueue("jobsapp.echo")
        assert [r.pk for r in run_due_jobs(names=["jobsapp.echo"], schedule=False)] == [echo.pk]
        assert [r.pk for r in run_due_jobs(schedule=False)] == [noop.pk]
        assert Job.objects.get(pk=disabled.pk).status == "scheduled"
        assert Job.objects.get(pk=paused.pk).status == "scheduled"

    def test_recurring_job_comes_due_when_the_clock_moves(self, define):
        define("testing.nightly", _stamp, cron="0 2 * * *")
        with frozen_clock(T0) as test_clock:
            assert run_due_jobs(names=["testing.nightly"]) == []
            test_clock.advance(seconds=30)
            ran = run_due_jobs(names=["testing.nightly"])
            assert [r.result for r in ran] == ["2026-03-02T02:00:00+00:00"]
            test_clock.advance(days=1)
            ran = run_due_jobs(names=["testing.nightly"])
            assert [r.result for r in ran] == ["2026-03-03T02:00:00+00:00"]
            assert run_due_jobs(names=["testing.nightly"]) == []

    def test_a_job_that_keeps_enqueueing_itself_is_stopped_at_max_runs(self, define):
        def again(ctx):
            registry.enqueue("testing.again")

        define("testing.again", again)
        registry.enqueue("testing.again")
        with pytest.raises(RuntimeError, match="max_runs"):
            run_due_jobs(schedule=False, max_runs=5)


@pytest.mark.django_db(transaction=True)
class TestFrozenClock:
    def test_stamps_what_django_jobs_writes_and_moves_only_when_told(self):
        with frozen_clock(T0) as test_clock:
            assert clock.now() == T0
            job = registry.enqueue("jobsapp.echo", delay=timedelta(minutes=1))
            assert (job.created_at, job.run_at) == (T0, T0 + timedelta(minutes=1))
            assert test_clock.advance(minutes=1) == T0 + timedelta(minutes=1)
            assert [r.started_at for r in run_due_jobs(schedule=False)] == [
                T0 + timedelta(minutes=1)
            ]
        assert clock.now() > T0  # real time again

    def test_rejects_naive_datetimes_and_moving_backwards(self):
        with pytest.raises(ValueError):
            TestClock(datetime(2026, 1, 1))
        with frozen_clock(T0) as test_clock:
            with pytest.raises(ValueError, match="forward"):
                test_clock.advance(seconds=-1)
            assert test_clock.set(T0 - timedelta(days=1)) == T0 - timedelta(days=1)


@pytest.mark.django_db(transaction=True)
class TestEager:
    def test_enqueue_runs_the_job_at_once_and_returns_the_finished_row(self):
        with eager():
            job = registry.enqueue("jobsapp.echo", n=1, delay=timedelta(hours=1))
            failed = registry.enqueue("jobsapp.explode")
        assert (job.status, job.result) == ("succeeded", {"data": {"n": 1}, "attempt": 1})
        assert failed.status == "failed" and "boom" in failed.error
        assert registry.enqueue("jobsapp.echo").status == "scheduled"  # off again

    def test_propagate_raises_the_job_exception_from_enqueue(self):
        with eager(propagate=True), pytest.raises(RuntimeError, match="kaput"):
            registry.enqueue("jobsapp.explode", message="kaput")
        assert Job.objects.get().status == "failed"

    def test_enqueue_many_runs_every_row(self):
        echo = registry.get("jobsapp.echo")
        with eager():
            rows = echo.enqueue_many([{"n": 1}, {"n": 2}])
        assert [r.status for r in rows] == ["succeeded", "succeeded"]

    def test_disabled_job_is_left_scheduled(self):
        with eager():
            job = registry.enqueue("jobsapp.disabled_job")
        assert job.status == "scheduled"

    def test_eager_setting_switches_it_on_for_a_whole_settings_module(self):
        from django.conf import settings

        with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "EAGER": True}):
            job = registry.enqueue("jobsapp.echo", n=3)
        assert job.status == "succeeded"


class EagerAndClockInATestCase(TestCase):
    """The same helpers inside ``django.test.TestCase`` (one transaction per test)."""

    def test_eager_enqueue_inside_a_test_transaction(self):
        with eager():
            job = registry.enqueue("jobsapp.echo", n=9)
        self.assertEqual(job.status, "succeeded")
        self.assertEqual(Job.objects.get(pk=job.pk).result, {"data": {"n": 9}, "attempt": 1})

    def test_run_due_jobs_with_a_moving_clock_inside_a_test_transaction(self):
        with frozen_clock(T0) as test_clock:
            job = registry.enqueue("jobsapp.echo", delay=timedelta(minutes=10))
            self.assertEqual(run_due_jobs(schedule=False), [])
            test_clock.advance(minutes=10)
            ran = run_due_jobs(schedule=False)
        self.assertEqual([(r.pk, r.status) for r in ran], [(job.pk, "succeeded")])
