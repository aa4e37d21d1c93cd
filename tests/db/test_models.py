"""Models, migrations, the QuerySet vocabulary, autodiscovery and the jobs database alias."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_jobs import registry
from django_jobs.conf import jobs_settings
from django_jobs.models import Job, JobTypeLock
from django_jobs.routers import JobsRouter

pytestmark = pytest.mark.django_db

ALIASES = ["default", "jobs"]


def make(name: str = "jobsapp.echo", **fields) -> Job:
    return Job.objects.create(name=name, **fields)


# -- migrations ---------------------------------------------------------------------------------


# Transactional: makemigrations reads the migration history of every alias, and on SQLite the
# "jobs" alias would wait for the write lock of the test transaction held by "default".
@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_models_and_migrations_agree():
    out = StringIO()
    # Exits with status 1 (SystemExit) if any model change lacks a migration.
    call_command("makemigrations", "django_jobs", "jobsapp", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()


def test_every_migration_of_the_app_is_applied_to_the_test_database():
    connection = connections[jobs_settings.DATABASE]
    applied = MigrationRecorder(connection).applied_migrations()
    assert ("django_jobs", "0001_initial") in applied
    assert ("django_jobs", "0002_postgresql_notify_trigger") in applied
    executor = MigrationExecutor(connection)
    leaves = [node for node in executor.loader.graph.leaf_nodes() if node[0] == "django_jobs"]
    assert executor.migration_plan(leaves) == []
    tables = connection.introspection.table_names()
    assert {"django_jobs_job", "django_jobs_jobtypelock"} <= set(tables)


def test_job_row_round_trips_every_field():
    user = get_user_model().objects.create(username="carol")
    now = timezone.now()
    parent = make()
    job = make(
        data={"a": [1, {"b": None}]}, status="running", queue="q", priority=-5, run_at=now,
        started_at=now, attempt=2, max_attempts=4, progress=0.25, progress_message="half-way",
        eta=now + timedelta(minutes=1), result={"r": 1}, error="e", worker="host:1",
        heartbeat_at=now, locked_until=now + timedelta(minutes=5), unique_key="u",
        lock_key="l", rescheduled_from=parent, created_by=user, meta={"m": True},
    )
    row = Job.objects.get(pk=job.pk)
    for field in ("data", "status", "queue", "priority", "run_at", "started_at", "attempt",
                  "max_attempts", "progress", "progress_message", "eta", "result", "error",
                  "worker", "heartbeat_at", "locked_until", "unique_key", "lock_key", "meta"):
        assert getattr(row, field) == getattr(job, field), field
    assert row.rescheduled_from == parent
    assert list(parent.rescheduled_runs.all()) == [row]
    assert row.created_by == user
    assert row.deleted_at is None


def test_progress_outside_zero_to_one_is_refused_by_the_database():
    job = make()
    with pytest.raises(IntegrityError):
        with transaction.atomic(using=jobs_settings.DATABASE):
            Job.objects.filter(pk=job.pk).update(progress=1.5)
    assert Job.objects.get(pk=job.pk).progress == 0.0


def test_two_pending_jobs_cannot_share_a_unique_slot():
    make(unique_slot="k")
    with pytest.raises(IntegrityError):
        with transaction.atomic(using=jobs_settings.DATABASE):
            make(unique_slot="k")
    make(unique_slot=None)
    make(unique_slot=None)  # NULL slots (finished rows) never collide
    assert Job.objects.count() == 3


def test_a_lock_key_has_at_most_one_holder():
    until = timezone.now() + timedelta(minutes=1)
    JobTypeLock.objects.create(key="k", worker="a:1", locked_until=until)
    with pytest.raises(IntegrityError):
        with transaction.atomic(using=jobs_settings.DATABASE):
            JobTypeLock.objects.create(key="k", worker="b:2", locked_until=until)
    assert list(JobTypeLock.objects.values_list("worker", flat=True)) == ["a:1"]


def test_job_helpers_describe_the_row():
    job = make()
    assert str(job) == f"jobsapp.echo (scheduled) {job.pk}"
    assert not job.is_finished
    assert job.duration is None
    now = timezone.now()
    job.status, job.started_at, job.finished_at = "succeeded", now, now + timedelta(seconds=3)
    assert job.is_finished
    assert job.duration == timedelta(seconds=3)


# -- the query vocabulary -----------------------------------------------------------------------


def test_due_returns_only_scheduled_rows_whose_time_has_come():
    now = timezone.now()
    due = make(run_at=now - timedelta(seconds=1))
    make(run_at=now + timedelta(minutes=1))  # later
    for status in ("running", "succeeded", "failed", "cancelled", "skipped"):
        make(status=status, run_at=now - timedelta(minutes=1))
    assert list(Job.objects.due(now)) == [due]
    assert Job.objects.due(now + timedelta(minutes=2)).count() == 2


def test_due_is_ordered_by_priority_desc_then_run_at_then_created_at():
    now = timezone.now()
    ago = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    rows = {
        "low-old": make(priority=-3, run_at=ago(60), created_at=ago(60)),
        "p0-late-created": make(priority=0, run_at=ago(10), created_at=ago(1)),
        "p0-early-created": make(priority=0, run_at=ago(10), created_at=ago(2)),
        "p0-oldest": make(priority=0, run_at=ago(20), created_at=ago(1)),
        "high": make(priority=5, run_at=ago(1), created_at=ago(1)),
        "highest": make(priority=10, run_at=ago(0.5), created_at=ago(1)),
    }
    order = {job.pk: label for label, job in rows.items()}
    assert [order[job.pk] for job in Job.objects.due(now)] == [
        "highest", "high", "p0-oldest", "p0-early-created", "p0-late-created", "low-old",
    ]


def test_running_and_stale():
    now = timezone.now()
    alive = make(status="running", locked_until=now + timedelta(minutes=1))
    stale = make(status="running", locked_until=now - timedelta(seconds=1))
    make(status="scheduled", locked_until=now - timedelta(minutes=1))
    make(status="failed", locked_until=now - timedelta(minutes=1))
    assert set(Job.objects.running()) == {alive, stale}
    assert list(Job.objects.stale(now)) == [stale]
    assert set(Job.objects.stale(now + timedelta(minutes=2))) == {alive, stale}


def test_pending_finished_and_alive():
    scheduled, running = make(), make(status="running")
    finished = {make(status=s) for s in ("succeeded", "failed", "cancelled", "skipped")}
    deleted = make(status="failed", deleted_at=timezone.now())
    assert set(Job.objects.pending()) == {scheduled, running}
    assert set(Job.objects.finished()) == finished | {deleted}
    assert deleted not in set(Job.objects.alive())
    assert Job.objects.alive().count() == 6


def test_for_name_and_latest_for():
    now = timezone.now()
    make("jobsapp.noop", created_at=now - timedelta(minutes=3))
    latest = make("jobsapp.noop", created_at=now - timedelta(minutes=2))
    make("jobsapp.noop", created_at=now - timedelta(minutes=1), deleted_at=now)  # soft-deleted
    make("jobsapp.echo", created_at=now)
    assert Job.objects.for_name("jobsapp.noop").count() == 3
    assert set(Job.objects.for_name("jobsapp.echo").values_list("name", flat=True)) == {
        "jobsapp.echo"
    }
    assert Job.objects.latest_for("jobsapp.noop") == latest
    assert Job.objects.latest_for("jobsapp.nothing") is None
    assert registry.latest("jobsapp.noop") == latest


def test_in_queues_filters_only_when_queues_are_given():
    a, b = make(queue="mail"), make(queue="default")
    assert list(Job.objects.in_queues(["mail"])) == [a]
    assert set(Job.objects.in_queues(None)) == {a, b}


def test_claimable_excludes_rows_whose_lock_key_is_held():
    now = timezone.now()
    free = make(lock_key="free", run_at=now - timedelta(seconds=1))
    held = make(lock_key="held", run_at=now - timedelta(seconds=1))
    expired = make(lock_key="expired", run_at=now - timedelta(seconds=1))
    unlocked = make(run_at=now - timedelta(seconds=1))
    JobTypeLock.objects.create(key="held", worker="w:1", locked_until=now + timedelta(minutes=1))
    JobTypeLock.objects.create(key="expired", worker="w:1", locked_until=now - timedelta(minutes=1))
    assert set(Job.objects.claimable(now)) == {free, expired, unlocked}
    assert held not in set(Job.objects.claimable(now))


def test_cancel_cancels_scheduled_rows_and_asks_running_ones_to_stop():
    scheduled = make(unique_key="u", unique_slot="u")
    running = make(status="running")
    done = make(status="succeeded")
    assert Job.objects.all().cancel() == (1, 1)
    scheduled.refresh_from_db()
    running.refresh_from_db()
    done.refresh_from_db()
    assert scheduled.status == "cancelled"
    assert scheduled.finished_at is not None
    assert scheduled.unique_slot is None  # the key is free for a new pending job
    assert running.status == "running"  # it stops when it next checks ctx.cancelled
    assert running.cancel_requested_at is not None
    assert done.status == "succeeded" and done.cancel_requested_at is None
    # Asking again changes nothing.
    assert Job.objects.all().cancel() == (0, 0)


def test_registry_cancel_by_name_cancels_only_that_name():
    a, b = make("jobsapp.noop"), make("jobsapp.echo")
    assert registry.cancel("jobsapp.noop") == 1
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, b.status) == ("cancelled", "scheduled")


# -- autodiscovery ------------------------------------------------------------------------------


def test_autodiscovery_registered_the_jobs_module_of_the_test_app():
    assert "jobsapp.echo" in registry
    assert "billing:invoice-sync" in registry
    echo = registry.get("jobsapp.echo")
    assert echo.module == "tests.jobsapp.jobs"
    sync = registry.get("billing:invoice-sync")
    assert (sync.cron, sync.max_attempts, sync.module) == ("0 * * * *", 3, "tests.jobsapp.jobs")
    assert sync.uses_lock


# -- the jobs database alias --------------------------------------------------------------------


def test_the_suite_defines_a_second_alias_that_mirrors_the_test_database():
    assert settings.DATABASES["jobs"]["TEST"]["MIRROR"] == "default"
    assert jobs_settings.DATABASE == "default"


def test_managers_route_to_the_configured_alias():
    assert Job.objects.all().db == "default"
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "DATABASE": "jobs"}):
        assert Job.objects.all().db == "jobs"
        assert Job.objects.due().db == "jobs"
        assert JobTypeLock.objects.all().db == "jobs"
        # using() still wins.
        assert Job.objects.using("default").db == "default"
    assert Job.objects.all().db == "default"


def test_router_sends_only_the_job_tables_to_the_configured_alias():
    router = JobsRouter()
    User = get_user_model()
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "DATABASE": "jobs"}):
        assert router.db_for_read(Job) == "jobs"
        assert router.db_for_write(JobTypeLock) == "jobs"
        assert router.db_for_read(User) is None
        assert router.allow_migrate("jobs", "django_jobs") is True
        assert router.allow_migrate("default", "django_jobs") is False
        assert router.allow_migrate("default", "auth") is None
        assert router.allow_relation(Job(), User()) is True


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_enqueue_and_run_write_through_the_configured_alias_only():
    jobs_db, default_db = connections["jobs"], connections["default"]
    try:
        with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "DATABASE": "jobs"}):
            with CaptureQueriesContext(jobs_db) as on_jobs, \
                    CaptureQueriesContext(default_db) as on_default:
                queued = registry.get("jobsapp.echo").enqueue(n=1)
                result = registry.get("jobsapp.locked_sleep").run(seconds=0)
            assert result == ""
            assert queued._state.db == "jobs"
        job_sql = [q["sql"] for q in on_jobs.captured_queries]
        assert any(s.startswith("INSERT") and "django_jobs_job" in s for s in job_sql)
        assert any(s.startswith("INSERT") and "django_jobs_jobtypelock" in s for s in job_sql)
        assert not [q for q in on_default.captured_queries if "django_jobs" in q["sql"]]
        # Same database underneath (a mirror): both rows are there.
        assert dict(Job.objects.values_list("name", "status")) == {
            "jobsapp.echo": "scheduled", "jobsapp.locked_sleep": "succeeded",
        }
    finally:
        jobs_db.close()


@pytest.mark.django_db(transaction=True, databases=ALIASES)
def test_enqueue_follows_the_transaction_of_the_jobs_alias():
    jobs_db = connections["jobs"]
    try:
        with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "DATABASE": "jobs"}):
            with pytest.raises(RuntimeError):
                with transaction.atomic(using="jobs"):
                    registry.get("jobsapp.echo").enqueue(n=1)
                    raise RuntimeError("abort")
            assert not Job.objects.exists()
            with transaction.atomic(using="jobs"):
                registry.get("jobsapp.echo").enqueue(n=2)
        assert list(Job.objects.values_list("data", flat=True)) == [{"n": 2}]
    finally:
        jobs_db.close()
