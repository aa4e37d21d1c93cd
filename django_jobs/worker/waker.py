"""What the worker's loop expects of a thread that wakes it when jobs may have come in: the
``Listener`` of PostgreSQL's ``LISTEN``/``NOTIFY`` (``notify``) and the ``Watcher`` of a SQLite
file's ``data_version`` (``watch``)."""

from __future__ import annotations

import threading


class Waker(threading.Thread):
    """Sets ``wake`` when jobs may have come in. While ``connected`` is set, the worker polls
    only as a safety net; cleared (not yet connected, deaf, failed), it polls as usual."""

    def __init__(self, wake: threading.Event, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.wake = wake
        self.stopping = threading.Event()
        self.connected = threading.Event()
        #: Wake-ups sent (and connections made: changes may have been missed before them):
        #: while it has not moved, no row has become scheduled since the worker last looked.
        self.heard = 0

    def stop(self) -> None:
        self.stopping.set()
