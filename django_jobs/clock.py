"""Time in django-jobs: the database's clock decides.

Workers run on many hosts whose clocks drift apart, so nothing that decides ownership or
due-ness compares with a host's clock. Those comparisons are written in SQL against the jobs
database's own time (``sql_now()``): a job is due when ``run_at <= <database now>``, a worker
is lost when its ``heartbeat_at`` (written as ``<database now>``) is older than
``WORKER_LOST_AFTER`` by the same clock.

Timestamps django-jobs computes in Python (``run_at`` of a delayed job, ``finished_at``...)
come from ``now()``: the host's clock corrected by its measured offset from the database's
clock. The offset is measured when a connection to the jobs database opens (at most every
``SYNC_INTERVAL`` seconds) and by every worker each ``SYNC_INTERVAL``; one round trip, on the
raw connection, outside any transaction.

``django_jobs.testing.frozen_clock()`` installs a test clock: ``now()`` returns it and
``sql_now()`` becomes that value as a parameter, on every database. ``DJANGO_JOBS_CLOCK_SKEW``
(seconds; for tests only) shifts this process's view of the host clock, as a host whose clock
is wrong would see it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models import DateTimeField, Expression
from django.utils import timezone

from .conf import jobs_settings

#: Seconds between two measurements of the offset from the database's clock.
SYNC_INTERVAL = 60.0

_source: Callable[[], datetime] | None = None
_offset = timedelta(0)
_synced_at: float | None = None  # monotonic time of the last measurement
_sync_lock = threading.Lock()


def host_now() -> datetime:
    """This host's clock (shifted by ``DJANGO_JOBS_CLOCK_SKEW`` in tests)."""
    skew = os.environ.get("DJANGO_JOBS_CLOCK_SKEW")
    now = timezone.now()
    return now + timedelta(seconds=float(skew)) if skew else now


def now() -> datetime:
    """The current time, aware: the test clock, else the database's time as this host sees it."""
    source = _source
    if source is not None:
        return source()
    return host_now() + _offset


def offset() -> timedelta:
    """How far the database's clock is ahead of this host's (as last measured)."""
    return _offset


def install(source: Callable[[], datetime] | None) -> Callable[[], datetime] | None:
    """Make ``source`` the clock (``None``: real time again); return the previous one."""
    global _source
    previous, _source = _source, source
    return previous


def is_frozen() -> bool:
    return _source is not None


# -- the database's clock in SQL ---------------------------------------------------------------


class DatabaseNow(Expression):
    """The jobs database's current time, plus ``seconds``, as a SQL expression.

    PostgreSQL: ``STATEMENT_TIMESTAMP()``; MariaDB/MySQL: ``UTC_TIMESTAMP(6)`` (Django stores
    naive UTC there with ``USE_TZ``); SQLite lives on this host, so its clock is this host's
    real clock, sent as a parameter.
    """

    output_field = DateTimeField()

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(output_field=DateTimeField())
        self.seconds = float(seconds)

    def __repr__(self) -> str:
        return f"DatabaseNow({self.seconds:+g}s)"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        # Only the engines below are supported; anything else uses this host's real clock.
        value = timezone.now() + timedelta(seconds=self.seconds)
        return "%s", [self.output_field.get_db_prep_value(value, connection)]

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if not self.seconds:
            return "STATEMENT_TIMESTAMP()", []
        return "(STATEMENT_TIMESTAMP() + make_interval(secs => %s))", [self.seconds]

    def as_mysql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if not self.seconds:
            return "UTC_TIMESTAMP(6)", []
        return "(UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND)", [round(self.seconds * 1e6)]


class _FrozenNow(Expression):
    """The test clock's time, plus ``seconds``, as a parameter."""

    def __init__(self, at: datetime) -> None:
        super().__init__(output_field=DateTimeField())
        self.at = at

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return "%s", [self.output_field.get_db_prep_value(self.at, connection)]


#: ``sql_now()`` itself, built once: an expression is never changed by compiling it, and
#: building one (its output field) costs more than the statement around it on a hot path.
_NOW = DatabaseNow()


def sql_now(seconds: float | timedelta = 0.0) -> Expression:
    """The database's current time plus ``seconds`` (negative: in the past), for a query."""
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    source = _source
    if source is not None:
        return _FrozenNow(source() + timedelta(seconds=seconds))
    return DatabaseNow(seconds) if seconds else _NOW


def now_sql(connection: Any) -> tuple[str, list[Any]]:
    """``sql_now()`` compiled for ``connection``: its SQL and parameters, for a statement
    written by hand (``JobQuerySet.start_claimed``)."""
    expression = sql_now()
    compile_for = getattr(expression, f"as_{connection.vendor}", expression.as_sql)
    return compile_for(None, connection)


# -- measuring the offset ------------------------------------------------------------------------

_QUERIES = {
    "postgresql": "SELECT clock_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
}


def sync(connection: Any = None, *, force: bool = False) -> timedelta:
    """Measure the database's clock against this host's; return the offset now in use.

    Runs on the raw DB-API connection (not logged, never inside a transaction of Django's).
    Failures keep the previous offset: a wrong guess only skews timestamps we write, never a
    decision, which SQL makes.
    """
    global _offset, _synced_at
    if connection is None:
        connection = connections[jobs_settings.DATABASE]
    query = _QUERIES.get(connection.vendor)
    with _sync_lock:
        fresh = _synced_at is not None and time.monotonic() - _synced_at < SYNC_INTERVAL
        if query is None or (fresh and not force):
            return _offset
        raw = connection.connection
        if raw is None or connection.in_atomic_block:
            return _offset
        try:
            before = host_now()
            with raw.cursor() as cursor:
                cursor.execute(query)
                database = cursor.fetchone()[0]
            after = host_now()
            if getattr(raw, "autocommit", True) is False:
                raw.rollback()  # MySQLdb without autocommit opened a transaction for the SELECT
        except Exception:
            return _offset
        if timezone.is_naive(database):
            database = database.replace(tzinfo=UTC)
        _offset = database - (before + (after - before) / 2)
        _synced_at = time.monotonic()
        return _offset


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.alias == jobs_settings.DATABASE:
        sync(connection)


connection_created.connect(_on_connection_created, dispatch_uid="django_jobs.clock.sync")
