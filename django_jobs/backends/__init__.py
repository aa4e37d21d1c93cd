"""A backend for Django's Tasks framework (``django.tasks``, Django >= 6.0).

``TASKS = {"default": {"BACKEND": "django_jobs.backends.JobsBackend"}}`` runs ``@task``
functions through django-jobs: the same rows, worker, locks, progress and admin as ``@job``.
"""

import django
from django.core.exceptions import ImproperlyConfigured

if django.VERSION < (6, 0):
    raise ImproperlyConfigured(
        "django_jobs.backends.JobsBackend is a backend for Django's Tasks framework "
        f"(django.tasks), which needs Django 6.0 or later; this is Django {django.get_version()}. "
        "Use @job from django_jobs on this version, or upgrade Django."
    )

from . import signals  # noqa: E402, F401  (connects task_finished)
from .jobs import JobsBackend  # noqa: E402
from .tasktypes import JobsTaskContext  # noqa: E402

__all__ = ["JobsBackend", "JobsTaskContext"]
