"""Helpers for the tests that prove the worker's promises with real ``runjobs`` processes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import WorkerProcess, wait_for


def vendor() -> str:
    return connection.vendor


def worker_name(worker: WorkerProcess) -> str:
    """The ``worker`` column a process writes on the rows it claims (``host:pid``)."""
    return f"{socket.gethostname()}:{worker.pid}"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.fixture
def marker_dir(tmp_path):
    path = tmp_path / "markers"
    path.mkdir()
    return path


@pytest.fixture
def worker(start_worker, marker_dir) -> Callable[..., WorkerProcess]:
    """Start a ``runjobs`` process and wait until it says it is up (its INFO start line)."""

    def start(*args: str, ready: bool = True, env: dict[str, str] | None = None):
        proc = start_worker(
            *args,
            env={"JOBS_LOG_LEVEL": "INFO", "DJANGO_JOBS_TEST_MARKER_DIR": str(marker_dir),
                 **(env or {})},
        )
        if ready:
            wait_until_started(proc)
        return proc

    return start


def wait_until_started(proc: WorkerProcess, timeout: float = 30) -> None:
    def up():
        if proc.proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.proc.returncode}:\n{proc.output()}")
        return " started: " in proc.output()

    try:
        wait_for(up, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{proc.output()}") from None


def wait_or_explain(predicate, timeout: float, *workers: WorkerProcess, what: str = ""):
    """``wait_for`` whose failure message carries the workers' logs."""
    try:
        return wait_for(predicate, timeout=timeout)
    except AssertionError as exc:
        logs = "\n".join(f"--- worker {w.pid} ---\n{w.output()}" for w in workers)
        raise AssertionError(f"{what}: {exc}\n{logs}") from None


def stop_all(*workers: WorkerProcess, timeout: float = 30) -> list[int]:
    """SIGTERM every worker and return their exit statuses."""
    import signal

    for w in workers:
        if w.proc.poll() is None:
            w.signal(signal.SIGTERM)
    return [w.wait(timeout=timeout) for w in workers]


def logs(*workers: WorkerProcess) -> str:
    return "\n".join(f"--- worker {w.pid} ---\n{w.output()}" for w in workers)


#: On SQLite (one writer at a time, no row locks to race for) the worker processes prove what
#: is SQLite's own: exactly-once claims under its write lock, crashes that leave the file
#: locked, shutdown, workflows and wake-ups by the watcher of the file's changes. The other
#: modules prove behaviour that does not depend on the engine, and on PostgreSQL and MariaDB
#: (with their row locks) it is proven in full; the suite stays under 15 minutes.
#: DJANGO_JOBS_TEST_ALL_PROCESSES=1 runs every module on SQLite.
SQLITE_MODULES = {"test_many_workers.py", "test_crashes.py", "test_shutdown.py",
                  "test_workflows.py", "test_sqlite.py"}


def pytest_collection_modifyitems(config, items):
    from django.conf import settings  # the settings are loaded by pytest-django by now

    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        return
    if os.environ.get("DJANGO_JOBS_TEST_ALL_PROCESSES") == "1":
        return
    here = Path(__file__).parent
    kept, skipped = [], []
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == here and path.name not in SQLITE_MODULES:
            skipped.append(item)
        else:
            kept.append(item)
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = kept
