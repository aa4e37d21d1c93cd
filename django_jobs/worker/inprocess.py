"""Running jobs in the calling process, without a worker: eager mode and ``run_due_jobs()``.

Both go through the worker's own claim (locks, disabled jobs, paused queues) and ``execute()``
(retries, outcomes, hooks), on the caller's thread and connection. No monitor thread runs:
inside a test's transaction another connection could not see the rows anyway, so timeouts are
judged when the function returns. ``django_jobs.testing`` is the public face of this module.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import clock, eager, workflows
from ..execution import Execution, worker_id
from ..jobtypes import registry
from ..models import Job, PausedQueue
from ..runner import execute
from .claim import claim
from .rescue import rescue_stale
from .scheduler import Scheduler

#: Bound of ``run_due()``: a job that keeps enqueueing itself must not hang a test suite.
DEFAULT_MAX_RUNS = 1000


def run_eagerly(jobs: list[Job], *, propagate: bool) -> list[Job]:
    """Run rows just enqueued, at once and in order, whatever their ``run_at``.

    A row that cannot start (its lock is held, its job is disabled, it is no longer
    scheduled) stays as it is. Returns the rows as they ended.
    """
    me = worker_id()
    for job in jobs:
        if job.status != "scheduled":
            continue
        job.run_now()  # a delay or run_at would keep the claim from seeing it
        claimed = _claim(me, ids=[job.pk], exclude_names=registry.disabled_names())
        if not claimed:
            continue
        outcome = _execute(claimed[0], me)
        job.refresh_from_db()
        if propagate and outcome.exc is not None:
            raise outcome.exc
        if propagate and outcome.status == "failed":
            raise RuntimeError(outcome.error)
    return jobs


def run_due(
    *,
    names: Iterable[str] | None = None,
    queues: Iterable[str] | None = None,
    schedule: bool = True,
    max_runs: int = DEFAULT_MAX_RUNS,
) -> list[Job]:
    """Run every job that is due now (by ``clock.now()``), one after the other, until none is.

    Recurring jobs get their occurrences created first (``schedule``), stale runs are
    rescued, and retries that come due during the call run too. Returns the runs, as they
    ended, in the order they ran.
    """
    me = worker_id()
    wanted = set(names) if names is not None else None
    if wanted is not None:
        for name in wanted:
            registry.get(name)  # UnknownJob, with suggestions, for a typo
    ran: list[Job] = []
    scheduler = Scheduler() if schedule else None
    while True:
        rescue_stale(clock.now())
        if scheduler is not None:
            scheduler.tick(clock.now())
        excluded = set(registry.disabled_names())
        if wanted is not None:
            excluded |= set(
                Job.objects.scheduled().exclude(name__in=wanted).order_by()
                .values_list("name", flat=True).distinct()
            )
        paused = list(PausedQueue.objects.values_list("queue", flat=True))
        rows = _claim(me, queues=queues, exclude_names=excluded, exclude_queues=paused)
        if not rows:
            # As a worker's sweep would: workflows whose members all ended get their end.
            workflows.finish_workflows()
            return ran
        if len(ran) >= max_runs:
            raise RuntimeError(
                f"run_due_jobs() ran {max_runs} jobs and more are due; does a job keep "
                "enqueueing itself? Pass max_runs= to allow more."
            )
        _execute(rows[0], me)
        rows[0].refresh_from_db()
        ran.append(rows[0])


def _claim(worker: str, **options) -> list[Job]:
    return claim(worker, 1, now=clock.now(), **options)


def _execute(row: Job, worker: str):
    job_type = registry.get(row.name) if row.name in registry else None
    return execute(Execution(row, job_type, worker=worker))


eager.install_runner(run_eagerly)
