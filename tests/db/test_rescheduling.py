"""Rows that become ``scheduled`` again (an automatic retry, ``Job.retry()``, a release at
shutdown) hold their unique key and show nothing of an earlier run."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_jobs import registry
from django_jobs.execution import Execution, Outcome, record_outcome
from django_jobs.models import Job, JobTypeLock
from django_jobs.worker.claim import claim

pytestmark = pytest.mark.django_db(transaction=True)

skip_retried = registry.get("jobsapp.unique_skip_retried")
replace_retried = registry.get("jobsapp.unique_replace_retried")


def claimed(job_type, **data) -> Execution:
    """The row of a new ``job_type`` job, claimed by this test as a worker would."""
    job = job_type.enqueue(**data)
    rows = claim("test:1", 1, ids=[job.pk])
    assert [row.pk for row in rows] == [job.pk]
    execution = Execution(rows[0], job_type, worker="test:1")
    assert execution.begin()
    return execution


def fail(execution: Execution) -> None:
    """End the run ``failed``, with a retry scheduled if attempts remain."""
    assert record_outcome(execution.job, execution.claim_id, Outcome.failed("boom"))


def scheduled_rows(name: str) -> list[Job]:
    return list(Job.objects.for_name(name).scheduled())


# -- automatic retries ---------------------------------------------------------------------------


def test_a_pending_automatic_retry_holds_the_unique_key():
    fail(claimed(skip_retried, n=1))
    [retry] = scheduled_rows(skip_retried.name)
    assert retry.attempt == 2
    again = skip_retried.enqueue(n=2)
    assert again.pk == retry.pk
    assert scheduled_rows(skip_retried.name) == [retry]


def test_an_automatic_retry_under_skip_yields_to_a_job_enqueued_during_the_run():
    execution = claimed(skip_retried, n=1)
    newer = skip_retried.enqueue(n=2)  # the claim freed the key
    fail(execution)
    assert scheduled_rows(skip_retried.name) == [newer]
    assert Job.objects.for_name(skip_retried.name).count() == 2  # no retry row


def test_an_automatic_retry_under_replace_cancels_the_job_enqueued_during_the_run():
    execution = claimed(replace_retried, n=1)
    newer = replace_retried.enqueue(n=2)
    fail(execution)
    [retry] = scheduled_rows(replace_retried.name)
    assert (retry.attempt, retry.rescheduled_from_id) == (2, execution.job.pk)
    newer.refresh_from_db()
    assert newer.status == "cancelled"
    assert "replaced" in newer.error


# -- Job.retry() ---------------------------------------------------------------------------------


def test_a_pending_manual_retry_holds_the_unique_key():
    fail(claimed(registry.get("jobsapp.unique_skip"), n=1))
    failed = Job.objects.get()
    retry = failed.retry()
    again = registry.get("jobsapp.unique_skip").enqueue(n=2)
    assert again.pk == retry.pk
    assert scheduled_rows("jobsapp.unique_skip") == [retry]


def test_manual_retry_while_a_retry_of_the_job_is_pending_returns_that_retry():
    execution = claimed(skip_retried, n=1)
    fail(execution)
    [pending] = scheduled_rows(skip_retried.name)
    first = Job.objects.get(pk=execution.job.pk)
    assert first.retry().pk == pending.pk
    assert first.retry().pk == pending.pk
    assert Job.objects.for_name(skip_retried.name).count() == 2


def test_manual_retry_of_a_job_without_unique_key_returns_its_pending_retry():
    job = registry.get("jobsapp.echo").enqueue(n=1)
    Job.objects.filter(pk=job.pk).cancel()
    job.refresh_from_db()
    retry = job.retry()
    assert job.retry().pk == retry.pk
    assert Job.objects.scheduled().count() == 1


def test_manual_retry_under_skip_returns_the_pending_job_with_the_same_key():
    fail(claimed(registry.get("jobsapp.unique_skip"), n=1))
    failed = Job.objects.get()
    pending = registry.get("jobsapp.unique_skip").enqueue(n=2)
    assert failed.retry().pk == pending.pk
    assert scheduled_rows("jobsapp.unique_skip") == [pending]


def test_manual_retry_under_replace_cancels_the_pending_job_with_the_same_key():
    unique_replace = registry.get("jobsapp.unique_replace")
    fail(claimed(unique_replace, n=1))
    failed = Job.objects.get()
    pending = unique_replace.enqueue(n=2)
    retry = registry.retry(failed.pk)  # reads the job type's policy ("replace")
    assert scheduled_rows(unique_replace.name) == [retry]
    assert retry.rescheduled_from_id == failed.pk
    pending.refresh_from_db()
    assert pending.status == "cancelled"


# -- release at shutdown -------------------------------------------------------------------------


def test_a_released_row_holds_its_unique_key_again():
    execution = claimed(skip_retried, n=1)
    assert execution.release()
    again = skip_retried.enqueue(n=2)
    assert again.pk == execution.job.pk
    assert scheduled_rows(skip_retried.name) == [again]


def test_a_released_row_under_skip_yields_to_a_job_enqueued_during_its_run():
    execution = claimed(skip_retried, n=1)
    newer = skip_retried.enqueue(n=2)
    assert execution.release()
    assert scheduled_rows(skip_retried.name) == [newer]
    released = Job.objects.get(pk=execution.job.pk)
    assert released.status == "cancelled"
    assert released.claim_id is None and released.unique_slot is None
    assert "unique key" in released.error


def test_a_released_row_under_replace_cancels_the_job_enqueued_during_its_run():
    execution = claimed(replace_retried, n=1)
    newer = replace_retried.enqueue(n=2)
    assert execution.release()
    assert [row.pk for row in scheduled_rows(replace_retried.name)] == [execution.job.pk]
    newer.refresh_from_db()
    assert newer.status == "cancelled"


def test_a_released_row_shows_nothing_of_the_interrupted_run():
    execution = claimed(registry.get("jobsapp.locked_sleep"))
    job = execution.job
    assert execution.update(
        progress=0.35, progress_message="step 7", eta=job.started_at + timedelta(minutes=3)
    )
    Job.objects.filter(pk=job.pk).cancel()  # a cancel request the run never acted on
    assert execution.release()
    row = Job.objects.filter(pk=job.pk).values().get()
    assert row["status"] == "scheduled"
    assert (row["progress"], row["progress_message"], row["eta"]) == (0.0, "", None)
    assert row["cancel_requested_at"] is None
    assert (row["worker"], row["started_at"], row["heartbeat_at"]) == ("", None, None)
    assert (row["claim_id"], row["locked_until"], row["finished_at"]) == (None, None, None)
    assert (row["result"], row["error"]) == (None, "")
    assert not JobTypeLock.objects.exists()
