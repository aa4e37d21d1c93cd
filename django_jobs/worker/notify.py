"""Wake-ups from PostgreSQL ``LISTEN``/``NOTIFY``.

A trigger created by the migrations sends ``NOTIFY django_jobs`` whenever rows become
scheduled, and PostgreSQL delivers it only when the enqueuing transaction commits. The listener
runs on its own connection; when that connection breaks it reconnects with backoff and wakes
the worker once, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import logging
import threading

from django.db import connections

from ..conf import jobs_settings

logger = logging.getLogger("django_jobs")

CHANNEL = "django_jobs"


def can_listen() -> bool:
    connection = connections[jobs_settings.DATABASE]
    if connection.vendor != "postgresql" or not jobs_settings.NOTIFY:
        return False
    try:
        import psycopg  # noqa: F401  (psycopg 3 has the blocking notifies() generator)
    except ImportError:
        return False
    return True


class Listener(threading.Thread):
    def __init__(self, wake: threading.Event) -> None:
        super().__init__(name="django-jobs-listen", daemon=True)
        self.wake = wake
        self.stopping = threading.Event()
        self.connected = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        backoff = 0.2
        while not self.stopping.is_set():
            raw = None
            try:
                wrapper = connections[jobs_settings.DATABASE]
                raw = wrapper.get_new_connection(wrapper.get_connection_params())
                raw.autocommit = True
                raw.execute(f"LISTEN {CHANNEL}")
                self.connected.set()
                backoff = 0.2
                self.wake.set()  # anything enqueued while we were not listening
                while not self.stopping.is_set():
                    for _ in raw.notifies(timeout=1.0):
                        self.wake.set()
            except Exception as exc:
                self.connected.clear()
                if self.stopping.is_set():
                    break
                logger.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if raw is not None:
                    try:
                        raw.close()
                    except Exception:
                        pass
