"""Django's task signals around a run, observed through a worker in this process."""

from __future__ import annotations

import pytest

pytest.importorskip("django.tasks")

from django.tasks import TaskResultStatus  # noqa: E402
from django.tasks.signals import task_finished, task_started  # noqa: E402

from django_jobs.backends import JobsBackend  # noqa: E402
from tests.db.worker_helpers import run_burst  # noqa: E402
from tests.tasksapp import tasks  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seen():
    events = []

    def started(sender, task_result, **kwargs):
        events.append(("started", sender, task_result.id, task_result.status))

    def finished(sender, task_result, **kwargs):
        events.append(("finished", sender, task_result.id, task_result.status,
                       [e.exception_class_path for e in task_result.errors]))

    task_started.connect(started)
    task_finished.connect(finished)
    yield events
    task_started.disconnect(started)
    task_finished.disconnect(finished)


def test_started_and_finished_are_sent_for_a_success(seen):
    result = tasks.add.enqueue(1, 2)
    run_burst()
    assert seen == [
        ("started", JobsBackend, result.id, TaskResultStatus.RUNNING),
        ("finished", JobsBackend, result.id, TaskResultStatus.SUCCESSFUL, []),
    ]


def test_finished_carries_the_error_of_a_failure(seen, caplog):
    result = tasks.explode.enqueue()
    run_burst()
    assert seen[-1] == (
        "finished", JobsBackend, result.id, TaskResultStatus.FAILED,
        ["tests.tasksapp.tasks.TaskFailure"],
    )


def test_own_jobs_send_no_task_signals(seen):
    from django_jobs import registry

    registry.get("jobsapp.noop").enqueue()
    run_burst()
    assert seen == []
