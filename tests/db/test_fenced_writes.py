"""A run's start and its lone ending, written by hand (``JobQuerySet.start_claimed`` and
``end_claimed``): the rows the ORM's fenced ``update()`` wrote, the same fence, the same
transaction rules."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction

from django_jobs import clock, registry
from django_jobs.execution import Outcome, outcome_fields
from django_jobs.models import Job, JobStatus
from django_jobs.models.querysets import not_before_start
from django_jobs.testing import frozen_clock
from django_jobs.worker.claim import claim

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = ("status", "result", "error", "progress", "progress_message", "eta", "locked_until",
           "started_at", "heartbeat_at")


def _claimed() -> Job:
    registry.get("jobsapp.echo").enqueue(n=1)
    [row] = claim("test:1", 1)
    return row


def _columns(pk) -> dict:
    return Job.objects.filter(pk=pk).values(*COLUMNS, "finished_at").get()


ENDINGS = [
    (Outcome(JobStatus.SUCCEEDED, result={"a": [1, "é", None]}), None),
    (Outcome(JobStatus.SUCCEEDED, result=None), {"progress": 0.3, "progress_message": "x"}),
    (Outcome.failed('quote " backslash \\ brace } NULL', retry=False),
     {"progress": 0.5, "eta": clock.now() + timedelta(minutes=5)}),
]


@pytest.mark.parametrize("outcome,extra", ENDINGS)
def test_by_hand_and_by_the_orm_a_start_and_an_ending_store_the_same(outcome, extra):
    # A frozen clock: both starts and both ends are written at the same instant.
    with frozen_clock() as test_clock:
        frozen = test_clock.now()
        by_hand, by_orm = _claimed(), _claimed()
        lease = frozen + timedelta(minutes=1)
        assert Job.objects.start_claimed(by_hand.pk, by_hand.claim_id, locked_until=lease)
        assert Job.objects.claimed_by(by_orm.pk, by_orm.claim_id).update(
            started_at=clock.sql_now(), heartbeat_at=clock.sql_now(), locked_until=lease) == 1
        assert _columns(by_hand.pk) == _columns(by_orm.pk)

        fields = outcome_fields(outcome, extra, frozen)
        assert Job.objects.end_claimed(by_hand.pk, by_hand.claim_id, frozen, fields)
        assert Job.objects.claimed_by(by_orm.pk, by_orm.claim_id).update(
            **{**fields, "finished_at": not_before_start(frozen)}) == 1
        assert _columns(by_hand.pk) == _columns(by_orm.pk)


def test_the_fence_refuses_another_claim_and_a_row_no_longer_running():
    row = _claimed()
    assert not Job.objects.start_claimed(row.pk, uuid.uuid4())
    fields = outcome_fields(Outcome(JobStatus.SUCCEEDED, result=1), None, clock.now())
    assert not Job.objects.end_claimed(row.pk, uuid.uuid4(), clock.now(), fields)
    assert Job.objects.get(pk=row.pk).started_at is None
    Job.objects.filter(pk=row.pk).update(status=JobStatus.CANCELLED)
    assert not Job.objects.start_claimed(row.pk, row.claim_id)
    assert not Job.objects.end_claimed(row.pk, row.claim_id, clock.now(), fields)
    assert Job.objects.get(pk=row.pk).status == JobStatus.CANCELLED


def test_an_ending_before_the_rows_start_is_written_as_the_start():
    row = _claimed()
    assert Job.objects.start_claimed(row.pk, row.claim_id)
    started = Job.objects.get(pk=row.pk).started_at
    fields = outcome_fields(Outcome(JobStatus.SUCCEEDED, result=1), None, started)
    assert Job.objects.end_claimed(row.pk, row.claim_id, started - timedelta(seconds=5), fields)
    assert Job.objects.get(pk=row.pk).finished_at == started


def test_a_row_marked_running_without_a_claim_is_fenced_on_a_null_claim():
    row = _claimed()
    Job.objects.filter(pk=row.pk).update(claim_id=None)
    assert Job.objects.start_claimed(row.pk, None)
    fields = outcome_fields(Outcome(JobStatus.SUCCEEDED, result=1), None, clock.now())
    assert Job.objects.end_claimed(row.pk, None, clock.now(), fields)
    assert Job.objects.get(pk=row.pk).status == JobStatus.SUCCEEDED


def test_a_filtered_queryset_is_refused_rather_than_its_filter_ignored():
    row = _claimed()
    with pytest.raises(TypeError, match="not on a filtered queryset"):
        Job.objects.filter(name="other").start_claimed(row.pk, row.claim_id)
    with pytest.raises(TypeError, match="not on a filtered queryset"):
        Job.objects.filter(name="other").end_claimed(row.pk, row.claim_id, clock.now(), {})
    assert Job.objects.get(pk=row.pk).started_at is None


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's jsonb refuses NUL")
def test_a_refused_write_dooms_the_atomic_block_around_it_as_the_orm_does():
    row = _claimed()
    fields = outcome_fields(Outcome(JobStatus.SUCCEEDED, result="a\x00b"), None, clock.now())
    with transaction.atomic():
        with pytest.raises(DatabaseError):
            Job.objects.end_claimed(row.pk, row.claim_id, clock.now(), fields)
        assert connection.needs_rollback
    assert Job.objects.get(pk=row.pk).status == JobStatus.RUNNING
