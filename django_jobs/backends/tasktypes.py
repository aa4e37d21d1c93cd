"""Django tasks as job types: each ``@task`` becomes a registered ``JobType`` named after its
``module_path``, whose function calls the task with the stored ``args`` and ``kwargs``.

A task is runnable only once its definition has run in this process (Django calls
``validate_task()`` when a ``@task`` is created). A worker therefore runs exactly the tasks its
own code defines; it never imports a path it read from a row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.tasks import TaskContext
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.signals import task_started
from django.utils.json import normalize_json

from .. import jobtypes
from ..context import JobContext
from ..models import Job
from .results import META_KEY, running_result

if TYPE_CHECKING:
    from django.tasks import Task

    from ..jobtypes import JobType
    from .jobs import JobsBackend

logger = logging.getLogger("django_jobs")

#: The backend class each task was registered through (the signals' sender, should its alias
#: disappear from TASKS later).
BACKEND_CLASSES: dict[str, type] = {}

#: @job options a backend's OPTIONS may not set: the task itself decides them.
TASK_DECIDED_OPTIONS = frozenset({"name", "queue", "priority"})

#: Tasks registered after start-up, by name: (module, backend alias). A worker does not import
#: their modules, so it cannot run them; ``django_jobs.tasks.W001`` says so.
LATE_TASKS: dict[str, tuple[str, str]] = {}


class TaskCall:
    """The function of a task's job type: ``func(ctx, args=[...], kwargs={...})``."""

    def __init__(self, task: Task) -> None:
        self.task = task
        # The registry recognises a re-definition of the same task by module and qualname.
        self.__module__ = task.func.__module__
        self.__qualname__ = task.func.__qualname__
        self.__name__ = task.func.__name__
        self.__doc__ = task.func.__doc__

    def __repr__(self) -> str:
        return f"<TaskCall {self.task.module_path}>"

    def __call__(
        self, ctx: JobContext, /, args: list | None = None, kwargs: dict | None = None
    ) -> Any:
        task = self.task
        args, kwargs = list(args or ()), dict(kwargs or {})
        task_result = running_result(ctx.job, task)
        task_started.send(sender=backend_class(task), task_result=task_result)
        try:
            if task.takes_context:
                context = JobsTaskContext(task_result=task_result, job_context=ctx)
                value = task.call(context, *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            # As Django's own backends do: tuples become lists, bytes become str.
            return normalize_json(value)
        except BaseException as exc:
            record_exception_class(ctx.job, exc)
            raise


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsTaskContext(TaskContext):
    """Django's ``TaskContext``, plus what a django-jobs run offers (``takes_context=True``)."""

    job_context: JobContext

    @property
    def job(self) -> Job:
        return self.job_context.job

    @property
    def log(self) -> logging.LoggerAdapter:
        return self.job_context.log

    @property
    def cancelled(self) -> bool:
        return self.job_context.cancelled

    def check_cancelled(self) -> None:
        self.job_context.check_cancelled()

    def progress(
        self, fraction: float, message: str | None = None, eta: timedelta | float | None = None
    ) -> None:
        self.job_context.progress(fraction, message=message, eta=eta)

    def extend_lock(self, seconds: float | timedelta) -> datetime:
        return self.job_context.extend_lock(seconds)


def backend_class(task: Task) -> type:
    """The sender of the ``django.tasks`` signals for ``task``."""
    try:
        return type(task.get_backend())
    except Exception:  # the alias was removed from TASKS since the task was defined
        return BACKEND_CLASSES.get(task.module_path, BaseTaskBackend)


def record_exception_class(job: Job, exc: BaseException) -> None:
    """Keep the exception's class path for ``TaskError``, fenced like every write of a run."""
    kind = type(exc)
    meta = dict(job.meta) if isinstance(job.meta, dict) else {}
    info = dict(meta.get(META_KEY) or {})
    # Tied to this row: a retry copies meta, and must not inherit this attempt's error.
    info["exception"] = [str(job.pk), f"{kind.__module__}.{kind.__qualname__}"]
    meta[META_KEY] = info
    try:
        if Job.objects.claimed_by(job.pk, job.claim_id).update(meta=meta):
            job.meta = meta
    except Exception:
        logger.warning("[%s] could not record the exception class", job.name, exc_info=True)


def is_task_row(job: Job) -> bool:
    return isinstance(job.meta, dict) and META_KEY in job.meta


def registered_task(name: str) -> Task | None:
    """The task registered under ``name`` in this process, or ``None``."""
    registry = jobtypes.registry
    if name not in registry:
        return None
    func = registry.get(name).func
    return func.task if isinstance(func, TaskCall) else None


def register_task(task: Task, backend: JobsBackend) -> JobType:
    """Register ``task`` as a job type (once per task function); return its job type."""
    registry = jobtypes.registry
    name = task.module_path
    if name in registry:
        existing = registry.get(name)
        if isinstance(existing.func, TaskCall) and existing.func.task.func is task.func:
            return existing
    BACKEND_CLASSES[name] = type(backend)
    options = backend.job_options_for(name)
    options.update(name=name, queue=task.queue_name, priority=task.priority)
    job_type = registry.register(jobtypes.build_job_type(TaskCall(task), options))
    if apps.ready:
        LATE_TASKS[name] = (task.func.__module__, backend.alias)
    return job_type
