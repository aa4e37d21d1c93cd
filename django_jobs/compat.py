"""What the installed Django offers, asked without importing what it may lack.

``django.tasks`` exists from Django 6.0. Nothing here imports it, so Django 5.2 projects load
django-jobs exactly as before.
"""

from __future__ import annotations

import importlib
from typing import Any

import django
from django.conf import settings

#: Django's Tasks framework (``django.tasks``) is available.
HAS_DJANGO_TASKS = django.VERSION >= (6, 0)

BACKEND_PATH = "django_jobs.backends.JobsBackend"


def jobs_task_backends() -> dict[str, dict[str, Any]]:
    """``TASKS`` entries (alias -> params) whose backend is ``JobsBackend`` or a subclass."""
    if not HAS_DJANGO_TASKS:
        return {}
    configured = getattr(settings, "TASKS", None)
    if not isinstance(configured, dict):
        return {}
    found = {}
    for alias, params in configured.items():
        path = params.get("BACKEND") if isinstance(params, dict) else None
        if isinstance(path, str) and _is_jobs_backend(path):
            found[alias] = params
    return found


def _is_jobs_backend(path: str) -> bool:
    if path == BACKEND_PATH or path.startswith("django_jobs.backends."):
        return True
    # A project's subclass of JobsBackend: the path comes from settings, which are trusted.
    from django.utils.module_loading import import_string

    try:
        backend = import_string(path)
    except ImportError:
        return False  # Django's own InvalidTaskBackend reports it when the backend is used.
    # A subclass of ours imported fine, so django.tasks exists (Django >= 6.0): only now can the
    # backend module, which needs it, be loaded.
    from .backends import JobsBackend

    return isinstance(backend, type) and issubclass(backend, JobsBackend)


def autodiscover_tasks() -> None:
    """Import every app's ``tasks`` module, and the backends' ``OPTIONS["MODULES"]``.

    Only when a ``TASKS`` backend is django-jobs': then defining a ``@task`` registers it, and a
    worker must know every task before it claims one. Projects using other task backends (or
    Celery's ``tasks.py`` convention) see no extra imports.
    """
    backends = jobs_task_backends()
    if not backends:
        return
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
    for params in backends.values():
        options = params.get("OPTIONS") or {}
        modules = options.get("MODULES", ()) if isinstance(options, dict) else ()
        for module in modules if isinstance(modules, (list, tuple)) else ():
            if isinstance(module, str):
                importlib.import_module(module)
