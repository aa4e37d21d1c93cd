"""Settings of django-jobs, read lazily from ``settings.DJANGO_JOBS``.

Every value is looked up when it is used, never at import time, so
``override_settings(DJANGO_JOBS=...)`` in tests takes effect at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

#: Every setting with its default. ``checks.py`` validates user values against the types here.
DEFAULTS: dict[str, Any] = {
    # Database alias holding the job tables.
    "DATABASE": "default",
    # Seconds between heartbeats of a running job.
    "HEARTBEAT_INTERVAL": 5.0,
    # Seconds a running job waits between two looks at its cancellation flag.
    "CANCEL_CHECK_INTERVAL": 1.0,
    # Minimum seconds between two progress writes of one job.
    "PROGRESS_THROTTLE": 0.5,
    # Seconds between two idle polls of the worker (``runjobs --poll-interval`` overrides it).
    "POLL_INTERVAL": 1.0,
    # Seconds between two sweeps for lost workers and their runs.
    "RESCUE_INTERVAL": 5.0,
    # Seconds without a heartbeat (by the database's clock) after which a worker process is
    # lost and its runs are recovered. At least three heartbeat intervals.
    "WORKER_LOST_AFTER": 30.0,
    # Seconds a run that passed its timeout may go on before its worker gives up on the
    # thread and exits (so that its supervisor starts a fresh process).
    "HUNG_AFTER": 60.0,
    # Seconds a due row whose job name no live worker has registered waits before it is
    # failed as an unregistered job (a deploy may be bringing the code that knows it).
    "UNKNOWN_JOB_GRACE": 3600.0,
    # Seconds a stopping worker gives running jobs (``runjobs --grace`` overrides it).
    "GRACE": 30.0,
    # Seconds between two pruning passes of a worker (finished rows older than ``keep``).
    "PRUNE_INTERVAL": 300.0,
    # Use PostgreSQL LISTEN/NOTIFY to wake idle workers.
    "NOTIFY": True,
    # Alias of a DATABASES entry that reaches the jobs database's PostgreSQL directly, for the
    # worker's LISTEN connection alone (None: it listens on DATABASE). A transaction pooler
    # such as PgBouncer in transaction mode delivers no notifications.
    "LISTEN_DATABASE": None,
    # Seconds between two looks of a worker's watcher thread at ``PRAGMA data_version`` of a
    # SQLite jobs database; it wakes the worker when another connection commits (None: poll).
    "CHANGE_CHECK_INTERVAL": 0.05,
    # Largest accepted payload, in bytes of JSON.
    "MAX_PAYLOAD_BYTES": 1_000_000,
    # Longest stored error text (message and traceback) or progress message, in characters.
    "MAX_TEXT_LENGTH": 20_000,
    # Run every enqueued job at once, in the enqueuing process (tests; see docs/testing.md).
    "EAGER": False,
    # Limits per queue: {"emails": {"concurrency": 20, "rate_limit": "10/s"}}.
    "QUEUES": {},
}

#: Expected type(s) per setting, for the system checks.
TYPES: dict[str, tuple[type, ...]] = {
    "DATABASE": (str,),
    "HEARTBEAT_INTERVAL": (int, float),
    "CANCEL_CHECK_INTERVAL": (int, float),
    "PROGRESS_THROTTLE": (int, float),
    "POLL_INTERVAL": (int, float),
    "RESCUE_INTERVAL": (int, float),
    "WORKER_LOST_AFTER": (int, float),
    "HUNG_AFTER": (int, float),
    "UNKNOWN_JOB_GRACE": (int, float),
    "GRACE": (int, float),
    "PRUNE_INTERVAL": (int, float),
    "NOTIFY": (bool,),
    "LISTEN_DATABASE": (str, type(None)),
    "CHANGE_CHECK_INTERVAL": (int, float, type(None)),
    "MAX_PAYLOAD_BYTES": (int,),
    "MAX_TEXT_LENGTH": (int,),
    "EAGER": (bool,),
    "QUEUES": (dict,),
}


class Settings:
    """Typed, lazy access to ``settings.DJANGO_JOBS`` merged over ``DEFAULTS``."""

    def _get(self, key: str) -> Any:
        user = getattr(django_settings, "DJANGO_JOBS", None) or {}
        if isinstance(user, dict) and key in user:
            return user[key]
        return DEFAULTS[key]

    @property
    def user_settings(self) -> Any:
        return getattr(django_settings, "DJANGO_JOBS", {})

    @property
    def DATABASE(self) -> str:
        return self._get("DATABASE")

    @property
    def HEARTBEAT_INTERVAL(self) -> float:
        return float(self._get("HEARTBEAT_INTERVAL"))

    @property
    def CANCEL_CHECK_INTERVAL(self) -> float:
        return float(self._get("CANCEL_CHECK_INTERVAL"))

    @property
    def PROGRESS_THROTTLE(self) -> float:
        return float(self._get("PROGRESS_THROTTLE"))

    @property
    def POLL_INTERVAL(self) -> float:
        return float(self._get("POLL_INTERVAL"))

    @property
    def RESCUE_INTERVAL(self) -> float:
        return float(self._get("RESCUE_INTERVAL"))

    @property
    def WORKER_LOST_AFTER(self) -> float:
        return float(self._get("WORKER_LOST_AFTER"))

    @property
    def HUNG_AFTER(self) -> float:
        return float(self._get("HUNG_AFTER"))

    @property
    def UNKNOWN_JOB_GRACE(self) -> float:
        return float(self._get("UNKNOWN_JOB_GRACE"))

    @property
    def GRACE(self) -> float:
        return float(self._get("GRACE"))

    @property
    def PRUNE_INTERVAL(self) -> float:
        return float(self._get("PRUNE_INTERVAL"))

    @property
    def NOTIFY(self) -> bool:
        return bool(self._get("NOTIFY"))

    @property
    def LISTEN_DATABASE(self) -> str | None:
        return self._get("LISTEN_DATABASE")

    @property
    def CHANGE_CHECK_INTERVAL(self) -> float | None:
        value = self._get("CHANGE_CHECK_INTERVAL")
        return None if value is None else float(value)

    @property
    def MAX_PAYLOAD_BYTES(self) -> int:
        return int(self._get("MAX_PAYLOAD_BYTES"))

    @property
    def MAX_TEXT_LENGTH(self) -> int:
        return int(self._get("MAX_TEXT_LENGTH"))

    @property
    def EAGER(self) -> bool:
        return bool(self._get("EAGER"))

    @property
    def QUEUES(self) -> dict[str, Any]:
        value = self._get("QUEUES")
        return value if isinstance(value, dict) else {}


jobs_settings = Settings()
