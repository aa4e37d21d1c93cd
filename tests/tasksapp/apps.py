from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    """Django tasks (``django.tasks``) run by django-jobs; installed on Django >= 6.0 only."""

    name = "tests.tasksapp"
    label = "tasksapp"
    default_auto_field = "django.db.models.BigAutoField"
