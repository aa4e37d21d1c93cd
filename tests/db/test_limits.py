"""Concurrency and rate limits, fairness between keys and Snooze, with claims in this process."""

from __future__ import annotations

import json
import uuid
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.urls import reverse

from django_jobs import registry
from django_jobs.execution import Execution, Outcome, record_outcome
from django_jobs.models import Job, JobTypeLock, RateToken, Worker
from django_jobs.worker.claim import claim
from django_jobs.worker.loop import Worker as WorkerLoop
from django_jobs.worker.rescue import write_off

from .worker_helpers import run_burst, started

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE_LIMITS = {"QUEUES": {"mail": {"concurrency": 2}}}


def _claim_all(limit: int = 8, **options) -> list[Job]:
    return claim("test:1", limit, **options)


def test_a_claim_takes_at_most_the_concurrency_of_a_key_and_holds_one_slot_per_run():
    limited = registry.get("jobsapp.limited_per_key")
    limited.enqueue_many([{"key": "a"}] * 5 + [{"key": "b"}] * 5)
    rows = _claim_all(limit=10)
    by_key = sorted(row.limit_key for row in rows)
    assert by_key == ["jobsapp.limited_per_key:a"] * 2 + ["jobsapp.limited_per_key:b"] * 2
    slots = sorted(JobTypeLock.objects.values_list("key", flat=True))
    assert slots == [f"job:jobsapp.limited_per_key:{k}#{n}" for k in "ab" for n in (0, 1)]
    # Every slot is taken: the next claim takes nothing, and nothing used an attempt.
    assert _claim_all(limit=10) == []
    assert set(Job.objects.scheduled().values_list("attempt", flat=True)) == {1}


def test_the_database_refuses_a_second_holder_of_a_slot():
    registry.get("jobsapp.limited_per_key").enqueue(key="a")
    [row] = _claim_all(limit=1)
    held = JobTypeLock.objects.get(job_id=row.pk)
    assert held.key in (f"job:{row.limit_key}#0", f"job:{row.limit_key}#1")
    with pytest.raises(IntegrityError), transaction.atomic():
        JobTypeLock.objects.create(key=held.key, slot_of=f"job:{row.limit_key}", capacity=2)


def test_slots_are_freed_with_the_outcome_and_the_next_run_of_the_key_is_claimed():
    limited = registry.get("jobsapp.limited_per_key")
    limited.enqueue_many([{"key": "a"}] * 3)
    first, second = _claim_all()
    assert _claim_all() == []
    assert record_outcome(first, first.claim_id, Outcome(status="succeeded"))
    assert JobTypeLock.objects.count() == 1
    [third] = _claim_all()
    assert third.limit_key == first.limit_key
    assert JobTypeLock.objects.filter(job_id=third.pk).exists()


def test_slots_of_a_written_off_worker_are_freed_with_its_runs():
    limited = registry.get("jobsapp.limited_per_key")
    limited.enqueue_many([{"key": "a"}] * 3)
    worker = WorkerLoop(install_signals=False, scheduler=False)
    owner = worker._register()
    rows = claim("dead:1", 8, owner=owner)
    assert len(rows) == 2
    # Its heartbeat is long past: any peer may write it off.
    Worker.objects.filter(pk=owner).update(heartbeat_at="2000-01-01T00:00:00Z")
    assert len(write_off(owner, lost_after=3)) == 2
    assert not JobTypeLock.objects.exists()
    assert len(_claim_all()) == 2


def test_a_key_at_its_limit_is_left_out_of_the_window_so_another_key_is_claimed():
    limited = registry.get("jobsapp.limited_per_key")
    # A backlog of one key, far larger than the claim's window, then two of another.
    limited.enqueue_many([{"key": "big"}] * 300)
    limited.enqueue_many([{"key": "small"}] * 2)
    first = _claim_all(limit=4)
    assert [row.data["key"] for row in first] == ["big", "big"]
    second = _claim_all(limit=4)
    assert [row.data["key"] for row in second] == ["small", "small"]


def test_a_rate_limit_lets_n_claims_through_per_period_and_keeps_the_rest_scheduled():
    slow = registry.get("jobsapp.slow_rate")
    slow.enqueue_many([{"n": n} for n in range(5)])
    taken = []
    for _ in range(5):
        rows = _claim_all()
        taken += rows
        for row in rows:
            assert record_outcome(row, row.claim_id, Outcome(status="succeeded"))
    assert len(taken) == 3
    assert RateToken.objects.count() == 3
    assert RateToken.objects.in_use() == {"job:jobsapp.slow_rate": (3, 3)}
    assert Job.objects.scheduled().count() == 2
    assert set(Job.objects.scheduled().values_list("attempt", flat=True)) == {1}


def test_a_rate_token_is_taken_once_per_period_by_a_guarded_update():
    slow = registry.get("jobsapp.slow_rate")
    slow.enqueue(n=1)
    [row] = _claim_all()
    token = RateToken.objects.get()
    assert RateToken.objects.filter(pk=token.pk).use(3600, 3) == 0


@override_settings(DJANGO_JOBS=QUEUE_LIMITS)
def test_a_queue_concurrency_limit_holds_across_job_types_and_frees_on_release():
    noop = registry.get("jobsapp.noop")
    echo = registry.get("jobsapp.echo")
    for fn in (noop, echo, noop, echo):
        fn.enqueue(queue="mail")
    noop.enqueue(queue="other")
    rows = _claim_all()
    assert sorted(row.queue for row in rows) == ["mail", "mail", "other"]
    mail = [row for row in rows if row.queue == "mail"]
    assert sorted(JobTypeLock.objects.values_list("key", flat=True)) == [
        "queue:mail#0", "queue:mail#1"]
    execution = Execution(mail[0], registry.get(mail[0].name), worker="test:1")
    assert execution.release()
    assert JobTypeLock.objects.count() == 1
    assert len(_claim_all()) == 1


def test_a_worker_without_limits_claims_with_the_plain_query():
    # No job of these names has limits, and no queue is limited: no slot, no token, no
    # extra query (the compiled query is pinned in test_worker_control).
    registry.get("jobsapp.noop").enqueue()
    rows = claim("test:1", 4, names=["jobsapp.noop"])
    assert len(rows) == 1
    assert not JobTypeLock.objects.exists() and not RateToken.objects.exists()


# -- Snooze ----------------------------------------------------------------------------------


def test_snooze_puts_the_run_back_scheduled_later_without_using_an_attempt():
    job = registry.get("jobsapp.snoozer").enqueue(times=1, seconds=3600)
    run_burst()
    job.refresh_from_db()
    assert job.status == "scheduled"
    assert job.attempt == 1 and job.snoozes == 1
    assert job.error == "" and job.started_at is None and job.claim_id is None
    assert (job.run_at - job.created_at).total_seconds() > 3500
    assert Job.objects.count() == 1


def test_a_snoozed_run_frees_its_slots_and_runs_again_when_due():
    job = registry.get("jobsapp.snoozer").enqueue(times=2, seconds=0)
    run_burst()
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.result == 2 and job.attempt == 1 and job.snoozes == 2
    assert not JobTypeLock.objects.exists()


def test_more_snoozes_than_max_snoozes_fail_the_run_clearly():
    job = registry.get("jobsapp.snoozer").enqueue(times=5, seconds=0)
    run_burst()
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.snoozes == 2
    assert "snoozed 2 times already, the most max_snoozes=2 allows" in job.error
    assert not Job.objects.filter(rescheduled_from=job.pk).exists()


def test_a_snooze_of_a_run_taken_away_changes_nothing():
    job = registry.get("jobsapp.snoozer").enqueue(times=1)
    row = started(claim("test:1", 1))
    assert record_outcome(row, uuid.uuid4(), Outcome(status="scheduled", snooze=10)) is False
    assert Job.objects.get(pk=job.pk).status == "running"


# -- visible: registry.limits(), manage.py jobs limits, the dashboard -----------------------------


def _limit(name: str, scope: str = "job"):
    return next(i for i in registry.limits() if (i.scope, i.name) == (scope, name))


def test_limits_show_each_limit_with_its_use_now_and_the_keys_at_their_limit():
    limited = registry.get("jobsapp.limited_per_key")
    limited.enqueue_many([{"key": "a"}] * 3 + [{"key": "b"}])
    registry.get("jobsapp.slow_rate").enqueue_many([{"n": n} for n in range(5)])
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, **QUEUE_LIMITS}):
        _claim_all(limit=10)
        per_key = _limit("jobsapp.limited_per_key")
        rate = _limit("jobsapp.slow_rate")
        queue = _limit("mail", scope="queue")
    assert (per_key.keyed, per_key.concurrency, per_key.running, per_key.keys) == (True, 2, 3, 2)
    assert per_key.keys_at_limit == ("jobsapp.limited_per_key:a",)
    assert per_key.in_use == "3 running over 2 keys (at most 2 per key)"
    # One claim of slow_rate (concurrency 1): one of its 3 tokens per hour used.
    assert (rate.rate_limit, rate.started_in_period, rate.running) == ("3/h", 1, 1)
    assert rate.in_use == "1 / 1 running, 1 / 3 per hour"
    assert (queue.concurrency, queue.running, queue.keys_at_limit) == (2, 0, ())
    assert "jobsapp.echo" not in {i.name for i in registry.limits()}


def test_jobs_limits_prints_a_table_and_json():
    registry.get("jobsapp.limited_per_key").enqueue_many([{"key": "a"}] * 2)
    _claim_all()
    out = StringIO()
    call_command("jobs", "limits", stdout=out)
    text = out.getvalue()
    assert "jobsapp.limited_per_key (per key)" in text and "concurrency 2" in text
    assert "2 running over 1 key (at most 2 per key)" in text
    assert "jobsapp.limited_per_key:a" in text
    out = StringIO()
    call_command("jobs", "limits", "--json", stdout=out)
    rows = {row["name"]: row for row in json.loads(out.getvalue())}
    assert rows["jobsapp.limited_per_key"]["running"] == 2
    assert rows["jobsapp.rate_limited"]["rate_limit"] == "100/s"


def test_the_dashboard_shows_limits_and_their_use(admin_client):
    registry.get("jobsapp.limited_per_key").enqueue_many([{"key": "<b>"}] * 2)
    _claim_all()
    page = admin_client.get(reverse("admin:django_jobs_job_dashboard")).content.decode()
    assert 'id="dj-limits"' in page
    assert "2 running over 1 key (at most 2 per key)" in page
    assert "jobsapp.limited_per_key:&lt;b&gt;" in page and "<b>" not in page.split("dj-limits")[1]


def test_the_overview_shows_limits_and_their_use(admin_client):
    registry.get("jobsapp.limited_per_key").enqueue_many([{"key": "a"}] * 2)
    _claim_all()
    page = admin_client.get(reverse("admin:django_jobs_job_overview")).content.decode()
    limits = page.split('id="dj-limits"')[1].split("</table>")[0]
    assert "jobsapp.limited_per_key" in limits
    assert "2 running over 1 key (at most 2 per key)" in limits
    assert "jobsapp.limited_per_key:a" in limits
