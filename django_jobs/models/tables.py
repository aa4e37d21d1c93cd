"""Telling "the tables are not there" (``migrate`` never ran) apart from other database errors.

Only an error naming a missing ``django_jobs_*`` table counts; a missing column, a lost
connection or a lock timeout stays the database error it is.
"""

from __future__ import annotations

import re

from django.apps import apps
from django.db import OperationalError, ProgrammingError

from ..exceptions import JobTablesMissing

MIGRATE_MESSAGE = "the django-jobs tables are missing: run `manage.py migrate`"

# SQLite, PostgreSQL ("relation ... does not exist", but not "column ... of relation ...") and
# MariaDB/MySQL (error 1146) spell a missing table each their own way.
_MISSING_TABLE = re.compile(
    r"no such table: django_jobs_\w+"
    r"|(?<!of )relation \"django_jobs_\w+\" does not exist"
    r"|Table '(?:[^']*\.)?django_jobs_\w+' doesn't exist"
)


def is_missing_table(exc: BaseException) -> bool:
    """Whether ``exc`` says that a django-jobs table does not exist."""
    return isinstance(exc, (OperationalError, ProgrammingError)) and bool(
        _MISSING_TABLE.search(str(exc))
    )


def raise_if_missing_table(exc: BaseException) -> None:
    """Turn the error of a missing table into ``JobTablesMissing``; leave any other alone."""
    if is_missing_table(exc):
        raise JobTablesMissing(MIGRATE_MESSAGE) from exc


def require_tables() -> None:
    """One cheap query per table of the app; ``JobTablesMissing`` if one is not there."""
    # From the app registry: the models import nothing from here, and need not be listed.
    for model in apps.get_app_config("django_jobs").get_models():
        try:
            list(model._default_manager.order_by().values_list("pk", flat=True)[:1])
        except (OperationalError, ProgrammingError) as exc:
            raise_if_missing_table(exc)
            raise
