"""Wake-ups on SQLite from ``PRAGMA data_version``.

SQLite has no notifications, but it tells a connection cheaply whether the database changed:
``PRAGMA data_version`` returns a number that changes whenever *another* connection has
committed to the file since the last look. In WAL mode the answer comes from the shared-memory
index, with no disk read, so a thread can ask every ``CHANGE_CHECK_INTERVAL`` seconds (50 ms)
for about a quarter of a percent of a core, and wake the worker as soon as a job may have come in.
The worker then polls only as a safety net, as it does while PostgreSQL's ``LISTEN`` hears.

Any commit wakes the worker, not only an enqueue: the heartbeats of its peers and of its own
monitor, a job's writes. Each costs one look for due jobs; a round of an idle worker writes
nothing, so it never wakes itself in a loop.

On an in-memory database the worker polls: ``:memory:`` is a database of its own for each
connection (a watcher would watch an empty one and never wake the worker), and a shared-cache
one lives in one process only, its connections sharing one cache with locking of its own, which
SQLite advises against. A watcher that fails says so once and ends, and the worker polls too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connections

from ..conf import DEFAULTS, jobs_settings
from .connections import close_quietly, raw_connection
from .waker import Waker

logger = logging.getLogger("django_jobs")


def can_watch() -> bool:
    """Whether the jobs database is a SQLite file and watching is on."""
    if jobs_settings.CHANGE_CHECK_INTERVAL is None:
        return False
    connection = connections[jobs_settings.DATABASE]
    return connection.vendor == "sqlite" and not connection.is_in_memory_db()


def _data_version(raw: Any) -> int:
    # fetchall() steps the statement to its end, which ends the read transaction: a watcher
    # must not hold a snapshot (it would see no change, and keep the WAL from being reset).
    [(version,)] = raw.execute("PRAGMA data_version").fetchall()
    return version


class Watcher(Waker):
    """``connected``: watching, so that commits of other connections wake the worker (cleared
    when the watcher ends)."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__(wake, name="django-jobs-watch")

    def run(self) -> None:
        raw = None
        # None: started although can_watch() says no (by hand): the default, then.
        interval = jobs_settings.CHANGE_CHECK_INTERVAL or DEFAULTS["CHANGE_CHECK_INTERVAL"]
        try:
            raw = raw_connection(jobs_settings.DATABASE)
            seen = _data_version(raw)
            self.heard += 1
            self.connected.set()
            self.wake.set()  # anything committed before the first look
            while True:
                # A plain sleep: it costs less CPU per look than waiting on ``stopping`` with a
                # timeout, and a stop waits at most one interval.
                time.sleep(interval)
                if self.stopping.is_set():
                    break
                version = _data_version(raw)
                if version != seen:
                    seen = version
                    self.heard += 1
                    self.wake.set()
        except Exception as exc:
            if not self.stopping.is_set():
                logger.warning(
                    "watching the SQLite database %r for changes (PRAGMA data_version) failed "
                    "(%s): this worker polls for new jobs every POLL_INTERVAL (or "
                    "--poll-interval) instead.", jobs_settings.DATABASE, exc,
                )
        finally:
            self.connected.clear()
            self.wake.set()  # the worker chooses its poll interval again
            close_quietly(raw)
