"""Many ``runjobs`` processes, each scheduling and running, with an every-second recurring job:
every occurrence gets exactly one row and exactly one run."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from django_jobs.models import Job, JobStatus
from tests.jobsapp.models import OccurrenceRun

from .conftest import logs, stop_all, vendor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

NAME = "jobsapp.scheduling_tick"
# Seconds of scheduling once every worker is up: at least 30 occurrences on the server databases;
# SQLite (4 processes, one writer) proves the same with a shorter window.
RUN_FOR = {"sqlite": 16.0}
RUN_FOR_SERVERS = 34.0


def test_every_occurrence_is_created_and_run_once_by_racing_worker_processes(worker):
    count = 4 if vendor() == "sqlite" else 8
    env = {"JOBS_JOBSAPP_SCHEDULING_TICK_ENABLED": "true", "JOBS_LOG_LEVEL": "INFO"}
    workers = [worker("--concurrency", "1", ready=False, env=env) for _ in range(count)]
    from .conftest import wait_until_started

    for w in workers:
        wait_until_started(w)
    started = timezone.now()
    time.sleep(RUN_FOR.get(vendor(), RUN_FOR_SERVERS))
    stopped = timezone.now()
    statuses = stop_all(*workers)
    output = logs(*workers)
    assert statuses == [0] * count, output
    assert "Traceback" not in output, output

    # No occurrence has two rows (the constraint would refuse it) and none ran twice.
    doubled = (Job.objects.for_name(NAME).values("occurrence").annotate(n=Count("pk"))
               .filter(n__gt=1))
    assert not doubled.exists()
    assert not Job.objects.for_name(NAME).filter(status=JobStatus.FAILED).exists(), output
    runs = list(OccurrenceRun.objects.values_list("occurrence", flat=True))
    assert len(runs) == len(set(runs))

    # Every second from when all workers were up until shortly before they stopped: exactly
    # one row, succeeded, and exactly one recorded run.
    first = started.replace(microsecond=0) + timedelta(seconds=2)
    last = stopped.replace(microsecond=0) - timedelta(seconds=2)
    window = [first + timedelta(seconds=n) for n in range(int((last - first).total_seconds()) + 1)]
    assert len(window) >= (12 if vendor() == "sqlite" else 30)
    rows = {
        occurrence: status
        for occurrence, status in Job.objects.for_name(NAME)
        .filter(occurrence__gte=first, occurrence__lte=last)
        .values_list("occurrence", "status")
    }
    missing = [o for o in window if o not in rows]
    assert not missing, f"occurrences without a row: {missing}\n{output}"
    not_run = {o: s for o, s in rows.items() if s != JobStatus.SUCCEEDED}
    assert not not_run, f"occurrences not succeeded: {not_run}\n{output}"
    ran = set(OccurrenceRun.objects.filter(occurrence__gte=first, occurrence__lte=last)
              .values_list("occurrence", flat=True))
    assert ran == set(window)
    # The work was shared: more than one process ran occurrences.
    assert OccurrenceRun.objects.values("worker").distinct().count() > 1
