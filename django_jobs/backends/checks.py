"""System checks of a ``JobsBackend`` (Django runs them through ``backend.check()``).

django_jobs.tasks.E001  "django_jobs" is not in INSTALLED_APPS
django_jobs.tasks.E002  QUEUES is not a list of queue names (a string, say)
django_jobs.tasks.E003  a queue name the backend can never serve (not a string, empty, too long)
django_jobs.tasks.E004  OPTIONS has an unknown key, or MODULES is not a list of module paths
django_jobs.tasks.E005  DEFAULT_JOB_OPTIONS or JOB_OPTIONS holds an invalid @job option
django_jobs.tasks.W001  a task was defined after start-up: a worker does not know it
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

from ..jobtypes import build_job_type
from ..options import QUEUE_MAX_LENGTH
from .tasktypes import LATE_TASKS, TASK_DECIDED_OPTIONS

if TYPE_CHECKING:
    from .jobs import JobsBackend

OPTION_KEYS = ("MODULES", "DEFAULT_JOB_OPTIONS", "JOB_OPTIONS")


def check_backend(backend: JobsBackend) -> list[CheckMessage]:
    where = f"TASKS[{backend.alias!r}]"
    messages: list[CheckMessage] = []
    if not apps.is_installed("django_jobs"):
        messages.append(Error(
            f"{where} uses django_jobs.backends.JobsBackend, but 'django_jobs' is not in "
            "INSTALLED_APPS.",
            hint="Add 'django_jobs' to INSTALLED_APPS and run migrate: the backend stores tasks "
            "in its tables and runjobs runs them.",
            id="django_jobs.tasks.E001",
        ))
    messages += _check_queues(backend, where)
    messages += _check_options(backend, where)
    for name, (module, alias) in sorted(LATE_TASKS.items()):
        if alias == backend.alias:
            messages.append(Warning(
                f"Task {name!r} was defined after start-up, when {module} was first imported; "
                "a runjobs worker does not import that module, so it would fail the task as "
                "unregistered.",
                hint=f"Move the task to the tasks.py of an installed app, or add {module!r} "
                f"to {where}['OPTIONS']['MODULES'].",
                obj=name,
                id="django_jobs.tasks.W001",
            ))
    return messages


def _check_queues(backend: JobsBackend, where: str) -> list[CheckMessage]:
    raw = backend.params.get("QUEUES")
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple, set, frozenset)):
        return [Error(
            f"{where}['QUEUES'] should be a list of queue names, not {type(raw).__name__}.",
            hint='For one queue: "QUEUES": ["emails"].',
            id="django_jobs.tasks.E002",
        )]
    messages = []
    for queue in raw:
        if not isinstance(queue, str) or not queue.strip() or len(queue) > QUEUE_MAX_LENGTH:
            messages.append(Error(
                f"{where}['QUEUES'] holds {queue!r}, a queue the backend can never serve: queue "
                f"names are non-empty strings of at most {QUEUE_MAX_LENGTH} characters.",
                id="django_jobs.tasks.E003",
            ))
    return messages


def _check_options(backend: JobsBackend, where: str) -> list[CheckMessage]:
    options = backend.params.get("OPTIONS", {})
    if not isinstance(options, dict):
        return [Error(f"{where}['OPTIONS'] should be a dict, not {type(options).__name__}.",
                      id="django_jobs.tasks.E004")]
    messages: list[CheckMessage] = []
    for key in options:
        if key not in OPTION_KEYS:
            close = difflib.get_close_matches(str(key), OPTION_KEYS, n=1)
            messages.append(Error(
                f"{where}['OPTIONS'] has an unknown key {key!r}.",
                hint=f"Did you mean {close[0]!r}?" if close else
                f"Known keys: {', '.join(OPTION_KEYS)}.",
                id="django_jobs.tasks.E004",
            ))
    modules = options.get("MODULES", [])
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) for m in modules):
        messages.append(Error(
            f"{where}['OPTIONS']['MODULES'] should be a list of module paths.",
            id="django_jobs.tasks.E004",
        ))
    default = options.get("DEFAULT_JOB_OPTIONS", {})
    messages += _check_job_options(default, f"{where}['OPTIONS']['DEFAULT_JOB_OPTIONS']")
    per_task = options.get("JOB_OPTIONS", {})
    if not isinstance(per_task, dict):
        messages.append(Error(
            f"{where}['OPTIONS']['JOB_OPTIONS'] should be a dict of task paths to @job options.",
            id="django_jobs.tasks.E005",
        ))
    else:
        for name, values in per_task.items():
            merged = {**default, **values} if isinstance(default, dict) and isinstance(
                values, dict) else values
            messages += _check_job_options(
                merged, f"{where}['OPTIONS']['JOB_OPTIONS'][{name!r}]"
            )
    return messages


def _check_job_options(values: Any, where: str) -> list[CheckMessage]:
    if not isinstance(values, dict):
        return [Error(f"{where} should be a dict of @job options.", id="django_jobs.tasks.E005")]
    decided = sorted(TASK_DECIDED_OPTIONS & set(values))
    if decided:
        return [Error(
            f"{where} sets {', '.join(decided)}, which the task itself decides.",
            hint="Use @task(queue_name=..., priority=...) or task.using(...).",
            id="django_jobs.tasks.E005",
        )]
    try:
        build_job_type(_probe, {**values, "name": "django_jobs.tasks.check"})
    except ImproperlyConfigured as exc:
        return [Error(f"{where}: {exc}", id="django_jobs.tasks.E005")]
    return []


def _probe(ctx: Any) -> None:
    """Stands in for a task's function while its options are validated."""
