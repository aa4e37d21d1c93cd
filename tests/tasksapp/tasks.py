"""Django tasks of the test suite, found by django-jobs' autodiscovery of ``tasks`` modules."""

import asyncio
import os
import time
from pathlib import Path

from django.tasks import task


class TaskFailure(Exception):
    """Raised on purpose, so results can name a class that is not a builtin."""


@task
def add(a, b):
    return a + b


@task
def echo(*args, **kwargs):
    return {"args": args, "kwargs": kwargs}


@task
def pair():
    return ("a", 1)  # a tuple comes back as a list, as with Django's own backends


@task
def explode(message="boom"):
    raise TaskFailure(message)


@task(takes_context=True)
def introspect(context, label):
    return {
        "label": label,
        "attempt": context.attempt,
        "id": context.task_result.id,
        "status": str(context.task_result.status),
        "worker_ids": context.task_result.worker_ids,
        "queue": context.task_result.task.queue_name,
        "priority": context.task_result.task.priority,
    }


@task(takes_context=True)
def with_progress(context, steps=4):
    for step in range(steps):
        context.check_cancelled()
        context.progress((step + 1) / steps, message=f"step {step + 1}")
    return context.job.progress_message


@task
async def async_double(value):
    await asyncio.sleep(0)
    return value * 2


@task(queue_name="emails", priority=7)
def on_emails(value):
    return value


@task
def record_start(label):
    """Append ``label`` to a file, for order assertions across processes."""
    path = Path(os.environ["TASKS_ORDER_FILE"])
    with path.open("a") as out:
        out.write(label + "\n")
    return label


@task(takes_context=True)
def slow(context, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        context.check_cancelled()
        time.sleep(0.05)
    return "done"


@task(takes_context=True)
def flaky(context, fail_times=1):
    if context.attempt <= fail_times:
        raise TaskFailure(f"attempt {context.attempt} fails on purpose")
    return context.attempt
