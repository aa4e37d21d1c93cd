"""On Django < 6.0 there is no ``django.tasks``: the backend says so, and nothing else changes."""

import importlib
import sys

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

pytestmark = pytest.mark.skipif(django.VERSION >= (6, 0), reason="django.tasks exists here")


def test_importing_the_backend_raises_a_clear_message_naming_the_django_version():
    sys.modules.pop("django_jobs.backends", None)
    with pytest.raises(ImproperlyConfigured, match=r"needs Django 6\.0 or later.*this is Django 5"):
        importlib.import_module("django_jobs.backends")
    assert "django_jobs.backends" not in sys.modules


def test_the_app_loads_without_discovering_tasks_modules():
    from django_jobs import registry
    from django_jobs.compat import HAS_DJANGO_TASKS, jobs_task_backends

    assert not HAS_DJANGO_TASKS
    assert jobs_task_backends() == {}
    assert "tests.tasksapp" not in sys.modules
    assert not any(".tasks." in name for name in registry.names())
