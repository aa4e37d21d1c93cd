"""Django's ``task_finished`` for task rows, sent from django-jobs' own ``job_finished``.

``task_enqueued`` is sent by ``JobsBackend.enqueue()`` and ``task_started`` by the task's job
function, in the worker, before the task is called.
"""

from __future__ import annotations

import copy
import logging

from django.tasks.signals import task_finished
from django.utils import timezone

from ..signals import job_finished
from .results import running_result
from .tasktypes import backend_class, is_task_row, registered_task

logger = logging.getLogger("django_jobs")


def send_task_finished(sender, job, status, result=None, error="", **kwargs) -> None:
    if not is_task_row(job):
        return
    task = registered_task(job.name)
    if task is None:
        return
    try:
        row = copy.copy(job)
        row.status, row.result, row.error = status, result, error
        row.finished_at = row.finished_at or timezone.now()
        task_finished.send(backend_class(task), task_result=running_result(row, task))
    except Exception:
        # The outcome is written; a failing receiver must not undo the bookkeeping after it.
        logger.exception("[%s] a task_finished receiver raised", job.name)


job_finished.connect(send_task_finished, dispatch_uid="django_jobs.backends.task_finished")
