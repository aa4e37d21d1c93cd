"""System checks (``manage.py check``). Ids are documented in docs/settings.md.

django_jobs.E001  DJANGO_JOBS is not a dict
django_jobs.E002  unknown key in DJANGO_JOBS
django_jobs.E003  a setting has the wrong type or an out-of-range value
django_jobs.E004  DJANGO_JOBS['DATABASE'] names no configured database
django_jobs.E005  JOBS_<NAME>_ENABLED holds something that is neither true nor false
django_jobs.E006  a job's schedule cannot compute its next run
django_jobs.E007  WORKER_LOST_AFTER is shorter than three heartbeat intervals
django_jobs.E008  DJANGO_JOBS['QUEUES'] holds a limit that is not valid
django_jobs.E009  DJANGO_JOBS['LISTEN_DATABASE'] names no configured PostgreSQL database
django_jobs.W001  the jobs database is SQLite without the options docs/installation.md advises
django_jobs.W002  the jobs database server has no SELECT ... FOR UPDATE SKIP LOCKED
"""

from __future__ import annotations

import difflib
import os
import re
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning
from django.db import connections

from .conf import DEFAULTS, TYPES, jobs_settings
from .jobtypes import registry
from .limits import queue_problems

#: Shortest accepted CHANGE_CHECK_INTERVAL, in seconds. A look costs about 0.1 ms of CPU, most
#: of it waking the thread: much more often than this, the watcher keeps a core busy, for a
#: pickup that the claim's own milliseconds bound anyway.
MIN_CHANGE_CHECK_INTERVAL = 0.001


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    user = getattr(settings, "DJANGO_JOBS", {})
    if not isinstance(user, dict):
        return [
            Error(
                f"DJANGO_JOBS should be a dict, not {type(user).__name__}.",
                id="django_jobs.E001",
            )
        ]
    errors = []
    for key, value in user.items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), list(DEFAULTS), n=1)
            errors.append(
                Error(
                    f"DJANGO_JOBS has an unknown key {key!r}.",
                    hint=f"Did you mean {close[0]!r}?" if close else
                    f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                    id="django_jobs.E002",
                )
            )
            continue
        expected = TYPES[key]
        wrong_type = not isinstance(value, expected) or (
            isinstance(value, bool) and bool not in expected
        )
        if wrong_type:
            names = " or ".join("None" if t is type(None) else t.__name__ for t in expected)
            errors.append(
                Error(
                    f"DJANGO_JOBS[{key!r}] should be {names}, not {type(value).__name__}.",
                    id="django_jobs.E003",
                )
            )
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and (
            key != "GRACE" or value < 0
        ):
            errors.append(
                Error(f"DJANGO_JOBS[{key!r}] should be positive, not {value!r}.",
                      id="django_jobs.E003")
            )
        elif key == "CHANGE_CHECK_INTERVAL" and value is not None and (
            value < MIN_CHANGE_CHECK_INTERVAL
        ):
            errors.append(
                Error(
                    f"DJANGO_JOBS['CHANGE_CHECK_INTERVAL'] should be at least "
                    f"{MIN_CHANGE_CHECK_INTERVAL:g} (1 ms), not {value!r}.",
                    hint="Each look at the SQLite database costs CPU: a shorter interval keeps "
                    "a core busy, for a pickup that the claim's own milliseconds bound anyway. "
                    "None turns watching off.",
                    id="django_jobs.E003",
                )
            )
    if not errors:
        lost_after = float(user.get("WORKER_LOST_AFTER", DEFAULTS["WORKER_LOST_AFTER"]))
        heartbeat = float(user.get("HEARTBEAT_INTERVAL", DEFAULTS["HEARTBEAT_INTERVAL"]))
        if lost_after < 3 * heartbeat:
            errors.append(
                Error(
                    f"DJANGO_JOBS['WORKER_LOST_AFTER'] is {lost_after:g}s, less than three "
                    f"heartbeat intervals ({3 * heartbeat:g}s).",
                    hint="A worker that misses one heartbeat (a pause of the process, a slow "
                    "database) would be written off while alive. Raise WORKER_LOST_AFTER or "
                    "lower HEARTBEAT_INTERVAL.",
                    id="django_jobs.E007",
                )
            )
    if isinstance(user.get("QUEUES"), dict):
        for problem in queue_problems(user["QUEUES"]):
            errors.append(Error(problem, hint="Each queue takes 'concurrency' (an integer of at "
                                "least 1) and 'rate_limit' ('N/s', 'N/m', 'N/h' or 'N/d').",
                                id="django_jobs.E008"))
    database = user.get("DATABASE", DEFAULTS["DATABASE"])
    if isinstance(database, str) and database not in settings.DATABASES:
        errors.append(
            Error(
                f"DJANGO_JOBS['DATABASE'] is {database!r}, which is not in DATABASES.",
                hint=f"Configured aliases: {', '.join(settings.DATABASES)}.",
                id="django_jobs.E004",
            )
        )
    errors.extend(_listen_database_errors(user.get("LISTEN_DATABASE")))
    return errors


def _listen_database_errors(alias: Any) -> list[Error]:
    """LISTEN_DATABASE must name a PostgreSQL entry of DATABASES: the worker opens its LISTEN
    connection with that entry's parameters (read from the settings, without connecting)."""
    if not isinstance(alias, str):
        return []  # None: the listener uses DATABASE; another type is E003
    hint = ("Name the alias of a DATABASES entry that connects to the jobs database's "
            "PostgreSQL server directly, not through a transaction pooler such as PgBouncer; "
            "or leave LISTEN_DATABASE out to listen on DATABASE.")
    if alias not in settings.DATABASES:
        problem = "which is not in DATABASES"
        hint = f"{hint} Configured aliases: {', '.join(settings.DATABASES)}."
    elif connections[alias].vendor != "postgresql":
        problem = f"a {connections[alias].vendor} database: LISTEN is PostgreSQL's"
    else:
        return []
    return [Error(f"DJANGO_JOBS['LISTEN_DATABASE'] is {alias!r}, {problem}.", hint=hint,
                  id="django_jobs.E009")]


#: ``PRAGMA journal_mode=WAL`` in an ``init_command``, however it is spelt.
_WAL = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)


def check_database(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Warn when the jobs database is SQLite without the options docs/installation.md advises.

    Reads settings only: checks also run where the database cannot be reached.
    """
    user = getattr(settings, "DJANGO_JOBS", {})
    alias = user.get("DATABASE", DEFAULTS["DATABASE"]) if isinstance(user, dict) else None
    if not isinstance(alias, str) or alias not in settings.DATABASES:
        return []  # E001/E003/E004 say what is wrong
    connection = connections[alias]  # a wrapper; it connects only when a query needs it
    if connection.vendor != "sqlite":
        return []
    options = connection.settings_dict.get("OPTIONS") or {}
    missing = []
    if options.get("timeout") is None:
        missing.append("OPTIONS['timeout'] (seconds to wait for the write lock)")
    if str(options.get("transaction_mode") or "").upper() != "IMMEDIATE":
        missing.append("OPTIONS['transaction_mode'] = 'IMMEDIATE'")
    if not _WAL.search(str(options.get("init_command") or "")):
        missing.append("WAL journal mode (OPTIONS['init_command'] = 'PRAGMA journal_mode=WAL;')")
    if not missing:
        return []
    return [
        Warning(
            f"The jobs database {alias!r} is SQLite without {'; '.join(missing)}: workers and "
            "your site may fail with 'database is locked'.",
            hint="Set the OPTIONS shown in docs/installation.md (SQLite).",
            id="django_jobs.W001",
        )
    ]


def check_job_types(app_configs: Any = None, **kwargs: Any) -> list[Error]:

    errors = []
    for job_type in registry:
        raw = os.environ.get(job_type.env_flag)
        if raw is not None and job_type.env_enabled() is None:
            errors.append(
                Error(
                    f"{job_type.env_flag}={raw!r} (job {job_type.name!r}) is neither true nor "
                    "false.",
                    hint="Use true/false, 1/0, yes/no or on/off.",
                    obj=job_type.module,
                    id="django_jobs.E005",
                )
            )
        schedule = job_type.schedule
        if schedule is not None:
            try:
                schedule.next_after(datetime.now(UTC), default_zone=settings.TIME_ZONE or "UTC")
            except Exception as exc:
                errors.append(
                    Error(
                        f"job {job_type.name!r} (in {job_type.module}) has a schedule that "
                        f"cannot compute its next run: {exc}",
                        obj=job_type.module,
                        id="django_jobs.E006",
                    )
                )
    return errors


def check_database_features(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[Warning]:
    """What the jobs database's server lacks (asked only when checks may use databases)."""
    alias = jobs_settings.DATABASE
    if not databases or alias not in databases or alias not in settings.DATABASES:
        return []
    connection = connections[alias]
    if connection.vendor != "mysql" or connection.features.has_select_for_update_skip_locked:
        return []
    return [
        Warning(
            f"The jobs database {alias!r} has no SELECT ... FOR UPDATE SKIP LOCKED (MariaDB "
            "before 10.6, MySQL before 8.0.1).",
            hint="Workers stay correct, but their claims wait on each other's row locks "
            "instead of skipping them, so they take turns. Upgrade the server for "
            "concurrent claims.",
            id="django_jobs.W002",
        )
    ]
