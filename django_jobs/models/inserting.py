"""Writing new job rows: the enqueue hot path.

``Model.save()`` and ``bulk_create()`` compile an INSERT of every one of the thirty-odd columns
through each field's preparation machinery on every call, which costs more than the database
round trip itself. A new job always fills the same columns, so the statement is built once per
connection and each value goes through the backend's own adapter for its column type. The
nullable columns that a new job leaves empty are left out of the statement and start NULL.

On PostgreSQL (psycopg 3) many rows go in with one ``COPY``; elsewhere with ``executemany``
(which MySQLdb folds into multi-row INSERTs and sqlite3 runs in C). Either way inside one
transaction, so a batch is stored whole or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections, transaction

from .job import Job

#: Nullable columns a new job may fill at enqueue time; every other nullable column starts NULL.
ENQUEUE_NULLABLE = frozenset(
    {"unique_key", "unique_slot", "lock_key", "limit_key", "created_by_id", "workflow_id"}
)

#: Plans by (alias, vendor). A plan's adapters are pure functions of a value (the backend's
#: own, bound to the first connection of the alias), so every thread shares it.
_plans: dict[tuple[str, str], _InsertPlan] = {}


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


class _InsertPlan:
    """The INSERT for one connection: its columns, SQL and per-column adapters."""

    def __init__(self, connection: Any) -> None:
        fields = [
            f for f in Job._meta.concrete_fields if not f.null or f.attname in ENQUEUE_NULLABLE
        ]
        self.attnames = [f.attname for f in fields]
        self.left_out = [f.attname for f in Job._meta.concrete_fields if f not in fields]
        self.adapters = [self._adapter(f, connection) for f in fields]
        quote = connection.ops.quote_name
        self.table = quote(Job._meta.db_table)
        self.columns = ", ".join(quote(f.column) for f in fields)
        cast = "::jsonb" if connection.vendor == "postgresql" else ""
        placeholders = ", ".join(
            f"%s{cast}" if f.get_internal_type() == "JSONField" else "%s" for f in fields
        )
        self.sql = f"INSERT INTO {self.table} ({self.columns}) VALUES ({placeholders})"

    @staticmethod
    def _adapter(field: Any, connection: Any) -> Callable[[Any], Any] | None:
        """How a Python value becomes a parameter for this column (``None``: as it is)."""
        kind = field.get_internal_type()
        if kind in ("CharField", "TextField", "IntegerField", "PositiveIntegerField",
                    "BigIntegerField", "SmallIntegerField", "FloatField"):
            return None
        if kind == "DateTimeField":
            return connection.ops.adapt_datetimefield_value
        if kind == "JSONField":
            return _json_text
        if kind == "UUIDField" and connection.features.has_native_uuid_field:
            return None
        return lambda value: field.get_db_prep_save(value, connection)

    def rows(self, jobs: Sequence[Job], data_json: Sequence[str] | None) -> list[list[Any]]:
        """The parameters of each job's row.

        Rows of one ``enqueue_many()`` share most of their values (the same queue, instant,
        meta...): a value that is the very object of the row before is not adapted again.
        """
        left_out, attnames = self.left_out, self.attnames
        data_at = attnames.index("data")
        # The payload is already JSON when the caller checked it as such: not encoded again.
        adapted = [(index, adapt) for index, adapt in enumerate(self.adapters)
                   if adapt and not (index == data_at and data_json is not None)]
        last_raw: list[Any] = [_UNSET] * len(attnames)
        last_param: list[Any] = [None] * len(attnames)
        rows = []
        for number, job in enumerate(jobs):
            values = job.__dict__
            for attname in left_out:
                if values[attname] is not None:
                    raise ValueError(f"a new job is inserted without {attname}; it must be None")
            row = [values[attname] for attname in attnames]
            for index, adapt in adapted:
                raw = row[index]
                if raw is last_raw[index]:
                    row[index] = last_param[index]
                else:
                    last_raw[index] = raw
                    row[index] = last_param[index] = adapt(raw)
            if data_json is not None:
                row[data_at] = data_json[number]
            rows.append(row)
        return rows


_UNSET = object()


def _plan(connection: Any) -> _InsertPlan:
    key = (connection.alias, connection.vendor)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _InsertPlan(connection)
    return plan


def insert_new_jobs(
    jobs: Sequence[Job], using: str, *, data_json: Sequence[str] | None = None
) -> None:
    """Insert unsaved ``jobs`` (built at enqueue time) on the ``using`` database.

    ``data_json``: each job's payload already encoded as JSON, when the caller has it.
    """
    if not jobs:
        return
    connection = connections[using]
    plan = _plan(connection)
    rows = plan.rows(jobs, data_json)
    if len(rows) == 1:
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, rows[0])
    else:
        with transaction.atomic(using=using, savepoint=False):
            with connection.cursor() as cursor:
                if not _copy(connection, cursor, plan, rows):
                    cursor.executemany(plan.sql, rows)
    for job in jobs:
        job._state.adding = False
        job._state.db = using


def _copy(connection: Any, cursor: Any, plan: _InsertPlan, rows: list[list[Any]]) -> bool:
    """``COPY`` the rows in on PostgreSQL with psycopg 3; ``False`` where that is unavailable."""
    raw = getattr(cursor, "cursor", None)
    if connection.vendor != "postgresql" or not hasattr(raw, "copy"):
        return False
    sql = f"COPY {plan.table} ({plan.columns}) FROM STDIN"
    connection.validate_no_broken_transaction()
    start = time.monotonic()
    with connection.wrap_database_errors:
        with raw.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    if connection.queries_logged:
        # Shown with the other queries (DEBUG, the debug toolbar, assertNumQueries).
        connection.queries_log.append(
            {"sql": f"{len(rows)} rows: {sql}", "time": f"{time.monotonic() - start:.3f}"}
        )
    return True
