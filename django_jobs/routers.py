"""Route the job tables to ``DJANGO_JOBS['DATABASE']``.

Add ``"django_jobs.routers.JobsRouter"`` to ``DATABASE_ROUTERS`` when the job tables live in a
database of their own, so that migrations create them there (and only there).
"""

from __future__ import annotations

from typing import Any

from .conf import jobs_settings

APP_LABEL = "django_jobs"


class JobsRouter:
    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if model._meta.app_label == APP_LABEL:
            return jobs_settings.DATABASE
        return None

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # Jobs point at users (created_by) without a database constraint, across databases.
        if APP_LABEL in (obj1._meta.app_label, obj2._meta.app_label):
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label == APP_LABEL:
            return db == jobs_settings.DATABASE
        return None
