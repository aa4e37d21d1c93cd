"""Wake-ups from PostgreSQL ``LISTEN``/``NOTIFY``.

A trigger created by the migrations sends ``NOTIFY django_jobs`` whenever rows become
scheduled, and PostgreSQL delivers it only when the enqueuing transaction commits. The listener
runs on its own connection; when that connection breaks it reconnects with backoff and wakes
the worker once, since notifications sent meanwhile are lost.

A transaction pooler (PgBouncer in transaction mode) lends a server connection to a client for
one transaction at a time: a ``LISTEN`` sent through it stays on a server connection the
listener no longer holds, and nothing is ever delivered to it. ``LISTEN_DATABASE`` names a
``DATABASES`` entry that reaches PostgreSQL directly, for the listener alone. Whatever it
connects through, the listener first makes sure that a notification sent through the jobs
database reaches it; when none does, it says so once and ends, and the worker polls.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from django.db import connections

from ..conf import jobs_settings
from .connections import close_quietly, raw_connection
from .waker import Waker

logger = logging.getLogger("django_jobs")

CHANNEL = "django_jobs"
#: Seconds the listener waits for its own test notification before it concludes that
#: notifications do not reach its connection. They take milliseconds when they do.
PROBE_TIMEOUT = 5.0


def listen_alias() -> str:
    """The database the listener connects to: ``LISTEN_DATABASE``, else the jobs database."""
    return jobs_settings.LISTEN_DATABASE or jobs_settings.DATABASE


def can_listen() -> bool:
    if not jobs_settings.NOTIFY:
        return False
    for alias in (jobs_settings.DATABASE, listen_alias()):
        if connections[alias].vendor != "postgresql":
            return False
    try:
        import psycopg  # noqa: F401  (psycopg 3 has the blocking notifies() generator)
    except ImportError:
        return False
    return True


class Listener(Waker):
    """``connected``: listening, and notifications reach this process (never set behind a
    pooler)."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__(wake, name="django-jobs-listen")

    def run(self) -> None:
        backoff = 0.2
        while not self.stopping.is_set():
            raw = None
            try:
                raw = raw_connection(listen_alias())
                if not self._hears(raw):
                    if not self.stopping.is_set():
                        self._give_up()
                    break
                raw.execute(f"LISTEN {CHANNEL}")
                self.heard += 1
                self.connected.set()
                backoff = 0.2
                self.wake.set()  # anything enqueued while we were not listening
                while not self.stopping.is_set():
                    for _ in raw.notifies(timeout=1.0):
                        self.heard += 1
                        self.wake.set()
            except Exception as exc:
                self.connected.clear()
                if self.stopping.is_set():
                    break
                logger.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                close_quietly(raw)

    def _hears(self, raw: Any) -> bool:
        """Whether a notification sent through the jobs database reaches ``raw``.

        The test channel is this connection's own, so that no other worker wakes for it; the
        notification goes out on another connection, as an enqueuing transaction's would (a
        pooler may hand a server connection back to the same client, and a session hears its
        own notifications). ``LISTEN django_jobs`` comes only after, so that a connection that
        hears nothing never leaves that channel listened to on a pooled server connection.
        """
        channel = f"{CHANNEL}_probe_{uuid.uuid4().hex}"
        raw.execute(f"LISTEN {channel}")
        sender = raw_connection(jobs_settings.DATABASE)
        try:
            sender.execute("SELECT pg_notify(%s, '')", [channel])
        finally:
            sender.close()
        deadline = time.monotonic() + PROBE_TIMEOUT
        heard = False
        while not heard and not self.stopping.is_set() and time.monotonic() < deadline:
            # In steps of at most a second, so that a stopping worker is not held up.
            step = min(max(deadline - time.monotonic(), 0.0), 1.0)
            for _ in raw.notifies(timeout=step, stop_after=1):
                heard = True
        raw.execute(f"UNLISTEN {channel}")
        return heard

    def _give_up(self) -> None:
        logger.warning(
            "LISTEN on database %r receives no notifications (is a transaction pooler such as "
            "PgBouncer in between?): this worker polls for new jobs every POLL_INTERVAL "
            "(or --poll-interval) instead. Set DJANGO_JOBS['LISTEN_DATABASE'] to the alias of "
            "a DATABASES entry that connects to PostgreSQL directly, or NOTIFY = False to poll "
            "without this warning.", listen_alias(),
        )
