"""Helpers of the in-process worker tests (tests/db/test_worker_*.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django_jobs import registry
from django_jobs.execution import Execution
from django_jobs.models import Job
from django_jobs.worker.loop import Worker


def run_burst(**options) -> Worker:
    """Run a burst worker in this thread until nothing is due and nothing runs.

    The scheduler of recurring jobs is off unless asked for, so rows can be counted.
    """
    options.setdefault("scheduler", False)
    worker = Worker(burst=True, install_signals=False, **options)
    worker.exit_code = worker.run()
    return worker


@contextmanager
def worker_thread(**options) -> Iterator[Worker]:
    """A worker running on a thread of this process; stopped (forced) and joined on exit."""
    options.setdefault("scheduler", False)
    worker = Worker(install_signals=False, **options)
    thread = threading.Thread(
        target=lambda: setattr(worker, "exit_code", worker.run()), name="test-worker", daemon=True
    )
    thread.start()
    try:
        yield worker
    finally:
        worker.stop(force=True)
        thread.join(timeout=20)
        assert not thread.is_alive(), "the worker did not stop"


def status_of(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def started(rows: list[Job]) -> Job:
    """The one row of a claim, started as a worker's job thread starts it."""
    [row] = rows
    job_type = registry.get(row.name) if row.name in registry else None
    assert Execution(row, job_type, worker=row.worker).begin()
    return row
