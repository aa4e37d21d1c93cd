"""Django's documented task examples (docs/topics/tasks.txt), run unchanged by a real worker.

The task definitions live unchanged in tests/tasksapp/docs_examples.py and
docs_context_example.py; the calls below are the documentation's own.
"""

from __future__ import annotations

import pytest

pytest.importorskip("django.tasks")

from django.tasks import TaskResultStatus, default_task_backend  # noqa: E402

from django_jobs.models import Job  # noqa: E402
from tests.tasksapp import docs_context_example, docs_examples  # noqa: E402
from tests.tasksapp.docs_examples import (  # noqa: E402
    calculate_meaning_of_life,
    double_dictionary,
    email_users,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_the_documented_examples_run_in_a_worker(start_worker):
    # "Enqueueing Tasks"
    result = email_users.enqueue(
        emails=["user@example.com"],
        subject="You have a message",
        message="Hello there!",
    )
    result_id = result.id
    # "Task context"
    with_context = docs_context_example.email_users.enqueue(
        emails=["user@example.com"],
        subject="You have a message",
        message="Hello there!",
    )
    # "Modifying Tasks"
    assert email_users.priority == 0
    assert email_users.using(priority=10).priority == 10
    # Arguments must round-trip through JSON: the tuple arrives as an (unhashable) list.
    dictionary = double_dictionary.enqueue((1, 2, 3))
    meaning = calculate_meaning_of_life.enqueue()

    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0, worker.output()

    # "Task results": later, somewhere else...
    result = email_users.get_result(result_id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 1  # send_mail() sent one message
    result = default_task_backend.get_result(result_id)
    assert result.return_value == 1

    with_context.refresh()
    assert with_context.status == TaskResultStatus.SUCCESSFUL
    assert with_context.return_value == 1

    dictionary.refresh()
    assert dictionary.status == TaskResultStatus.FAILED
    assert dictionary.errors[0].exception_class is TypeError
    assert "TypeError: unhashable type: 'list'" in dictionary.errors[0].traceback

    meaning.refresh()
    assert meaning.return_value == 42
    assert docs_examples.calculate_meaning_of_life.get_result(meaning.id).return_value == 42
    assert Job.objects.filter(name__startswith="tests.tasksapp.docs_").count() == 4


def test_process_data_with_a_datetime_is_refused_at_enqueue():
    # "Because both Task arguments and return values are serialized to JSON..."
    from datetime import datetime

    with pytest.raises(TypeError):
        double_dictionary.enqueue(datetime.now())
