"""Connection hygiene for long-lived threads, the worker's equivalent of Django's
request_started/request_finished handling.

A worker is not a request: with ``CONN_MAX_AGE = 0`` it still keeps its connections between
jobs (reconnecting for every job would cost more than the job). Connections that broke, or
outlived a positive ``CONN_MAX_AGE``, are closed so the next query reconnects. The threads
that wake the worker (``notify``, ``watch``) hold raw connections of their own instead.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connections


def recycle() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]:
            # A job left a transaction open: do not carry it into the next job.
            connection.close()
            continue
        if connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()
                continue
        max_age = connection.settings_dict.get("CONN_MAX_AGE")
        if max_age and connection.close_at is not None and time.monotonic() >= connection.close_at:
            connection.close()


def raw_connection(alias: str) -> Any:
    """A raw autocommit connection with the parameters of ``alias``, outside Django's
    per-thread handling (no signals, never shared with a query of this thread): for the threads
    that wake the worker, which must never hold a transaction open."""
    wrapper = connections[alias]
    raw = wrapper.get_new_connection(wrapper.get_connection_params())
    if wrapper.vendor == "sqlite":
        raw.isolation_level = None  # sqlite3's autocommit before Python 3.12
    else:
        raw.autocommit = True
    return raw


def close_quietly(raw: Any) -> None:
    """Close a raw connection that may already be broken: there is nothing left to save."""
    if raw is None:
        return
    try:
        raw.close()
    except Exception:
        pass
