"""Shared fixtures: the database under test, worker subprocesses, and registry isolation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def vendor() -> str:
    return connection.vendor


@pytest.fixture
def worker_env(transactional_db) -> dict[str, str]:
    """Environment for ``runjobs`` subprocesses that share this test's database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["DJANGO_JOBS_TEST_DB"] = str(connection.settings_dict["NAME"])
    env.setdefault("JOBS_LOG_LEVEL", "WARNING")
    return env


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def start_worker(worker_env, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``manage.py runjobs`` processes; every one is killed at the end of the test."""
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", "runjobs", *args],
                cwd=ROOT,
                env={**worker_env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            try:
                os.kill(worker.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            worker.proc.kill()
            worker.proc.wait(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
