"""A worker killed between a run's end and the write of its outcome (endings are written
together, after the run's thread has gone on): the run is recovered by the liveness rules,
never lost and never left running. PostgreSQL and MariaDB (row locks hold the write back)."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_jobs import registry
from django_jobs.models import Job

from .conftest import logs, stop_all, vendor, wait_or_explain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_sigkill_after_a_run_ended_and_before_its_outcome_landed_recovers_the_run(
    worker, marker_dir
):
    if vendor() == "sqlite":
        pytest.skip("needs a row lock to hold the outcome's write back")
    sleeper = registry.get("jobsapp.sleeper")
    first = sleeper.enqueue(seconds=1.0)
    second = sleeper.enqueue(seconds=0.1)
    a = worker("--concurrency", "1")
    wait_or_explain((marker_dir / f"{first.pk}.1").exists, 15, a, what="first never started")
    with transaction.atomic():
        # Hold the first row: its outcome's write waits for this lock, as behind any slow
        # commit. Its thread must not wait with it: the second run starts meanwhile.
        Job.objects.select_for_update().get(pk=first.pk)
        wait_or_explain((marker_dir / f"{second.pk}.1").exists, 15, a,
                        what="the thread waited for its outcome's write")
        assert Job.objects.get(pk=first.pk).status == "running"
        a.proc.kill()
        a.wait(timeout=10)
    b = worker()

    def recovered(job) -> bool:
        row = Job.objects.get(pk=job.pk)
        if row.status == "succeeded":
            # The first ending's statement was already at the server, waiting for the lock:
            # the server finishes it once the lock is gone, dead client or not. Recorded.
            return job is first and row.attempt == 1
        return row.status == "failed" and Job.objects.filter(
            rescheduled_from=job.pk, status="succeeded").exists()

    for job in (first, second):
        wait_or_explain(
            lambda job=job: recovered(job), 30, a, b,
            what=f"{job.pk} was neither recorded nor recovered and run again: "
            f"{list(Job.objects.values_list('pk', 'status', 'attempt', 'error'))}",
        )
    # The second ending was still in the process when it died: its run is recovered by the
    # liveness rules (and runs again: at least once).
    row = Job.objects.get(pk=second.pk)
    assert row.status == "failed" and row.error.startswith("worker lost"), (row.error,
                                                                            logs(a, b))
    assert not Job.objects.running().exists()
    assert stop_all(b) == [0], b.output()
