"""JobsBackend without a worker: registration, enqueue, rows, results read back, checks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

pytest.importorskip("django.tasks")

from asgiref.sync import async_to_sync  # noqa: E402
from django.db import transaction  # noqa: E402
from django.tasks import (  # noqa: E402
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.exceptions import (  # noqa: E402
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_jobs import registry  # noqa: E402
from django_jobs.backends import JobsBackend  # noqa: E402
from django_jobs.backends.tasktypes import LATE_TASKS, TaskCall  # noqa: E402
from django_jobs.models import Job  # noqa: E402
from tests.tasksapp import tasks  # noqa: E402


@task
def defined_in_a_test_module(value):
    return value


# -- the backend -------------------------------------------------------------------------------


def test_the_default_backend_is_a_jobs_backend_with_every_feature_it_has():
    backend = task_backends["default"]
    assert isinstance(backend, JobsBackend)
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority
    assert backend.queues == {"default", "emails"}


def test_defining_a_task_registers_a_job_type_named_after_its_module_path():
    job_type = registry.get("tests.tasksapp.tasks.add")
    assert isinstance(job_type.func, TaskCall)
    assert job_type.func.task.func is tasks.add.func
    assert job_type.queue == "default" and job_type.priority == 0
    assert registry.get("tests.tasksapp.tasks.on_emails").queue == "emails"
    assert registry.get("tests.tasksapp.tasks.on_emails").priority == 7


def test_tasks_modules_and_listed_modules_are_discovered_at_start_up():
    # Registered while the app registry was loading, so a worker knows them too.
    for name in (
        "tests.tasksapp.tasks.add",
        "tests.tasksapp.docs_examples.email_users",
        "tests.tasksapp.docs_context_example.email_users",
    ):
        assert name in registry
        assert name not in LATE_TASKS


def test_a_task_defined_after_start_up_is_registered_and_flagged_by_a_check():
    name = defined_in_a_test_module.module_path
    assert name in registry
    assert LATE_TASKS[name] == (__name__, "default")
    messages = default_task_backend.check()
    flagged = [m for m in messages if m.id == "django_jobs.tasks.W001" and m.obj == name]
    assert flagged and __name__ in flagged[0].hint


def test_redefining_with_using_keeps_one_registration():
    before = registry.get("tests.tasksapp.tasks.add")
    tasks.add.using(priority=50, queue_name="emails")
    assert registry.get("tests.tasksapp.tasks.add") is before


def test_job_options_of_the_backend_reach_the_job_type():
    flaky = registry.get("tests.tasksapp.tasks.flaky")
    assert flaky.max_attempts == 3
    assert flaky.retry_delay == timedelta(seconds=0.2)


# -- enqueue -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueue_writes_a_scheduled_row_and_returns_a_ready_result():
    result = tasks.add.enqueue(2, b=3)
    row = Job.objects.get(pk=result.id)
    assert row.name == "tests.tasksapp.tasks.add"
    assert row.status == "scheduled"
    assert row.data == {"args": [2], "kwargs": {"b": 3}}
    assert (row.queue, row.priority) == ("default", 0)
    assert row.meta == {"django_task": {"backend": "default", "run_after": False}}
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs) == ([2], {"b": 3})
    assert result.backend == "default"
    assert result.enqueued_at == row.created_at
    assert result.started_at is None and result.finished_at is None
    assert result.errors == [] and result.worker_ids == [] and result.attempts == 0
    assert not result.is_finished
    with pytest.raises(ValueError, match="not finished yet"):
        result.return_value  # noqa: B018


@pytest.mark.django_db
def test_priority_queue_and_run_after_are_stored_as_given():
    later = timezone.now() + timedelta(hours=1)
    result = tasks.on_emails.using(priority=-100, run_after=later).enqueue(1)
    row = Job.objects.get(pk=result.id)
    assert (row.queue, row.priority, row.run_at) == ("emails", -100, later)
    again = default_task_backend.get_result(result.id)
    assert again.task.priority == -100
    assert again.task.queue_name == "emails"
    assert again.task.run_after == later
    assert tasks.add.enqueue(1, 1).task.run_after is None


@pytest.mark.django_db
def test_higher_priority_is_claimed_first_as_in_django():
    low = tasks.add.using(priority=-5).enqueue(1, 1)
    high = tasks.add.using(priority=100).enqueue(1, 2)
    assert [str(pk) for pk in Job.objects.due().values_list("pk", flat=True)] == [high.id, low.id]


@pytest.mark.django_db
def test_arguments_follow_djangos_json_rules():
    assert tasks.echo.enqueue((1, 2), key=("a",)).args == [[1, 2]]
    with pytest.raises(TypeError):
        tasks.echo.enqueue(timezone.now())
    with pytest.raises(TypeError):
        tasks.echo.enqueue(float("nan"))
    assert not Job.objects.filter(data__args=[]).exists()


def test_django_validation_still_applies():
    with pytest.raises(InvalidTask, match="not valid for backend"):
        tasks.add.using(queue_name="nowhere")
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))


@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_in_a_rolled_back_transaction_does_not_exist():
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        raise RuntimeError("roll back")
    assert not Job.objects.filter(pk=result.id).exists()
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)


@pytest.mark.django_db
def test_task_enqueued_is_sent_with_the_result():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result.id, task_result.status))

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(JobsBackend, result.id, TaskResultStatus.READY)]


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_aget_result():
    async def go():
        result = await tasks.add.aenqueue(4, 5)
        return result, await tasks.add.aget_result(result.id)

    result, again = async_to_sync(go)()
    assert again.id == result.id and again.status == TaskResultStatus.READY
    assert Job.objects.filter(pk=result.id, name="tests.tasksapp.tasks.add").exists()


# -- get_result --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_result_refuses_unknown_ids_and_rows_that_are_not_tasks():
    backend = default_task_backend
    for missing in ("not-a-uuid", str(uuid.uuid4()), 12):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(missing)
    own_job = registry.get("jobsapp.noop").enqueue()
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(own_job.pk)


@pytest.mark.django_db
def test_task_get_result_checks_the_result_belongs_to_it():
    result = tasks.add.enqueue(1, 2)
    assert tasks.add.get_result(result.id).id == result.id
    with pytest.raises(TaskResultMismatch):
        tasks.echo.get_result(result.id)


@pytest.mark.django_db
def test_results_map_every_status_faithfully():
    result = tasks.add.enqueue(1, 2)
    now = timezone.now()
    row = Job.objects.get(pk=result.id)
    Job.objects.filter(pk=row.pk).update(status="running", started_at=now, worker="h:1")
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING
    assert result.started_at == now and result.last_attempted_at == now
    assert result.worker_ids == ["h:1"] and result.attempts == 1

    done = now + timedelta(seconds=2)
    Job.objects.filter(pk=row.pk).update(status="succeeded", finished_at=done, result=3)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 3 and result.finished_at == done

    Job.objects.filter(pk=row.pk).update(status="cancelled", error="cancelled before it started")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "django_jobs.exceptions.JobCancelled"
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018

    Job.objects.filter(pk=row.pk).update(status="failed", error="timed out after 0:05:00")
    result.refresh()
    assert result.errors[0].exception_class_path == "django_jobs.exceptions.JobTimeout"
    assert result.errors[0].traceback == "timed out after 0:05:00"


@pytest.mark.django_db
def test_a_result_follows_its_automatic_retries():
    result = tasks.flaky.enqueue()
    first = Job.objects.get(pk=result.id)
    error = "TaskFailure: no\n\nTraceback (most recent call last):\n  ...\nTaskFailure: no\n"
    meta = {"django_task": {"backend": "default", "run_after": False,
                            "exception": [str(first.pk), "tests.tasksapp.tasks.TaskFailure"]}}
    Job.objects.filter(pk=first.pk).update(
        status="failed", worker="h:1", started_at=timezone.now(), finished_at=timezone.now(),
        error=error, meta=meta,
    )
    retry = Job.objects.create(
        name=first.name, data=first.data, attempt=2, max_attempts=3, rescheduled_from=first,
        meta=meta,
    )
    result.refresh()
    assert result.status == TaskResultStatus.READY  # ready to be executed again
    assert result.finished_at is None
    assert len(result.errors) == 1
    assert result.errors[0].exception_class is tasks.TaskFailure
    assert result.errors[0].traceback.startswith("Traceback (most recent call last):")
    Job.objects.filter(pk=retry.pk).update(
        status="succeeded", worker="h:2", started_at=timezone.now(), finished_at=timezone.now(),
        result=2,
    )
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2
    assert result.worker_ids == ["h:1", "h:2"] and result.attempts == 2
    assert len(result.errors) == 1  # the copied meta does not turn into a second error


# -- checks ------------------------------------------------------------------------------------


def _check_ids(params: dict) -> list[str]:
    return [m.id for m in JobsBackend("probe", {"BACKEND": "x", **params}).check()]


def test_checks_pass_for_the_test_settings():
    assert [m for m in task_backends["default"].check() if m.id != "django_jobs.tasks.W001"] == []


def test_check_a_string_for_queues():
    assert _check_ids({"QUEUES": "emails"}) == ["django_jobs.tasks.E002"]


@pytest.mark.parametrize("queue", ["", "x" * 101, 7])
def test_check_a_queue_the_backend_can_never_serve(queue):
    assert _check_ids({"QUEUES": ["default", queue]}) == ["django_jobs.tasks.E003"]


def test_check_unknown_options_and_bad_modules():
    assert _check_ids({"OPTIONS": {"MODULE": ["x"]}}) == ["django_jobs.tasks.E004"]
    assert _check_ids({"OPTIONS": {"MODULES": "x.tasks"}}) == ["django_jobs.tasks.E004"]


@pytest.mark.parametrize(
    "options",
    [
        {"DEFAULT_JOB_OPTIONS": {"timeout": -1}},
        {"DEFAULT_JOB_OPTIONS": {"max_attempt": 2}},
        {"JOB_OPTIONS": {"a.b": {"queue": "x"}}},
        {"JOB_OPTIONS": {"a.b": {"cron": "not cron"}}},
        {"JOB_OPTIONS": ["a.b"]},
    ],
)
def test_check_invalid_job_options(options):
    assert _check_ids({"OPTIONS": options}) == ["django_jobs.tasks.E005"]


def test_check_the_app_must_be_installed(monkeypatch):
    from django.apps import apps

    real = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "django_jobs" and real(name))
    assert _check_ids({}) == ["django_jobs.tasks.E001"]
