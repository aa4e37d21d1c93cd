"""Django's task API end to end: ``@task`` / ``.enqueue()`` here, real ``runjobs`` processes
there, ``get_result()`` / ``refresh()`` afterwards."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

pytest.importorskip("django.tasks")

from django.db import connection  # noqa: E402
from django.tasks import TaskResultStatus, default_task_backend  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_jobs import clock  # noqa: E402
from django_jobs.models import Job  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.tasksapp import tasks  # noqa: E402

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def drain(start_worker, *args: str, env: dict | None = None):
    """Run one ``runjobs --burst`` process to its end; return it."""
    worker = start_worker("--burst", *args, env=env)
    assert worker.wait(timeout=60) == 0, worker.output()
    return worker


def test_a_task_runs_in_a_worker_and_its_result_is_read_back(start_worker):
    # Rows are stamped by the database's clock as this host sees it (clock.now(), the host's
    # clock plus an offset measured when the connection opens): compare with the same clock.
    connection.ensure_connection()
    before = clock.now()
    result = tasks.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    worker = drain(start_worker)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.errors == []
    assert result.worker_ids == [f"{socket.gethostname()}:{worker.pid}"]
    assert result.attempts == 1
    assert before <= result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at

    for again in (tasks.add.get_result(result.id), default_task_backend.get_result(result.id)):
        assert again.status == TaskResultStatus.SUCCESSFUL and again.return_value == 5
        assert again.task.func is tasks.add.func
    row = Job.objects.get(pk=result.id)
    assert (row.status, row.result, row.progress) == ("succeeded", 5, 1.0)


def test_a_failing_task_records_its_exception_class_and_traceback(start_worker):
    result = tasks.explode.enqueue(message="kaput")
    drain(start_worker)

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.is_finished and result.finished_at is not None
    [error] = result.errors
    assert error.exception_class_path == "tests.tasksapp.tasks.TaskFailure"
    assert error.exception_class is tasks.TaskFailure
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "TaskFailure: kaput" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert Job.objects.get(pk=result.id).status == "failed"


def test_context_return_values_and_async_tasks(start_worker):
    context = tasks.introspect.using(priority=3).enqueue("ctx")
    paired = tasks.pair.enqueue()
    doubled = tasks.async_double.enqueue(21)
    worker = drain(start_worker)

    context.refresh()
    assert context.return_value == {
        "label": "ctx",
        "attempt": 1,
        "id": context.id,
        "status": "RUNNING",
        "worker_ids": [f"{socket.gethostname()}:{worker.pid}"],
        "queue": "default",
        "priority": 3,
    }
    paired.refresh()
    assert paired.return_value == ["a", 1]
    doubled.refresh()
    assert doubled.status == TaskResultStatus.SUCCESSFUL and doubled.return_value == 42


def test_progress_reported_through_the_context_lands_on_the_row(start_worker):
    result = tasks.with_progress.enqueue(steps=3)
    drain(start_worker)
    result.refresh()
    assert result.return_value == "step 3"
    row = Job.objects.get(pk=result.id)
    assert (row.progress, row.progress_message) == (1.0, "step 3")


def test_priority_orders_the_queue_and_queues_route_to_their_workers(start_worker, tmp_path):
    order = tmp_path / "order.txt"
    env = {"TASKS_ORDER_FILE": str(order)}
    tasks.record_start.using(priority=-10).enqueue("low")
    tasks.record_start.enqueue("normal")
    tasks.record_start.using(priority=90).enqueue("high")
    routed = tasks.on_emails.enqueue("mail")

    drain(start_worker, "--queue", "default", env=env)
    assert order.read_text().split() == ["high", "normal", "low"]
    routed.refresh()
    assert routed.status == TaskResultStatus.READY  # no worker serves "emails" yet

    drain(start_worker, "--queue", "emails")
    routed.refresh()
    assert routed.status == TaskResultStatus.SUCCESSFUL and routed.return_value == "mail"
    assert (routed.task.queue_name, routed.task.priority) == ("emails", 7)


def test_run_after_defers_the_task(start_worker):
    run_after = timezone.now() + timedelta(seconds=2)
    result = tasks.add.using(run_after=run_after).enqueue(1, 1)
    drain(start_worker)
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.task.run_after == run_after

    wait_for(lambda: timezone.now() >= run_after, timeout=5)
    drain(start_worker)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at >= run_after


def test_job_options_give_a_task_retries_and_the_result_follows_them(start_worker):
    result = tasks.flaky.enqueue(fail_times=1)
    worker = start_worker()
    wait_for(lambda: Job.objects.filter(name=result.task.module_path, status="succeeded"),
             timeout=30)
    worker.signal(15)
    worker.wait(timeout=30)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2  # context.attempt of the second attempt
    assert result.attempts == 2
    [error] = result.errors
    assert error.exception_class is tasks.TaskFailure
    assert "attempt 1 fails on purpose" in error.traceback


def test_a_cancelled_task_fails_with_job_cancelled(start_worker):
    result = tasks.slow.enqueue(seconds=30)
    worker = start_worker()
    wait_for(lambda: Job.objects.filter(pk=result.id, status="running").exists(), timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING and result.started_at is not None
    Job.objects.filter(pk=result.id).cancel()
    wait_for(lambda: Job.objects.filter(pk=result.id, status="cancelled").exists(), timeout=30)
    worker.signal(15)
    worker.wait(timeout=30)

    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "django_jobs.exceptions.JobCancelled"
