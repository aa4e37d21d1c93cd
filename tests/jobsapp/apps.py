import os

from django.apps import AppConfig


class JobsAppConfig(AppConfig):
    name = "tests.jobsapp"
    label = "jobsapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if os.environ.get("DJANGO_JOBS_TEST_NO_SKIP_LOCKED"):
            # Worker processes of tests/concurrency/test_defects.py play a server without
            # SKIP LOCKED (MariaDB < 10.6, MySQL < 8.0.1): the claim's other path.
            from django.db import connections

            for connection in connections.all():
                type(connection.features).has_select_for_update_skip_locked = False
