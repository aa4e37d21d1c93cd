"""Workflows under real ``runjobs`` processes racing for their members: the callback of a group
released exactly once by the last of its members, whichever worker ends it; chains in order;
a diamond; a member's worker SIGKILLed; both failure policies; cancelling a workflow."""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings

from django_jobs import chain, clock, group, registry
from django_jobs.models import Job, JobDependency, Workflow
from tests.jobsapp.models import Execution

from .conftest import logs, stop_all, wait_or_explain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

LOST_AFTER = settings.DJANGO_JOBS["WORKER_LOST_AFTER"]
RESCUE_INTERVAL = settings.DJANGO_JOBS["RESCUE_INTERVAL"]
SQLITE = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")

noop = registry.get("jobsapp.noop")
record = registry.get("jobsapp.record")
add = registry.get("jobsapp.wf_add")
fail = registry.get("jobsapp.wf_fail")
six_hours = registry.get("jobsapp.six_hours")


def _four_workers(worker, env: dict[str, str] | None = None):
    return [worker("--concurrency", "4", "--grace", "0", env=env) for _ in range(4)]


def _all_ended(*workflows: Workflow):
    ids = [wf.pk for wf in workflows]
    return not Job.objects.filter(workflow__in=ids).pending().exists()


def _tokens() -> Counter:
    return Counter(Execution.objects.values_list("token", flat=True))


# 20 groups take minutes (every member's end locks its group's callbacks, so the ends of one
# group take turns): the suite runs one; DJANGO_JOBS_TEST_WORKFLOW_GROUPS=20 runs the race 20
# times over.
GROUPS = int(os.environ.get("DJANGO_JOBS_TEST_WORKFLOW_GROUPS", 1))
MEMBERS = 1000


def test_groups_of_1000_call_their_callbacks_exactly_once(worker):
    """GROUPS groups of 1,000 members, enqueued at once and drained by 4 processes x 4 threads:
    the last members of each group end on different threads at nearly the same instant, and
    each group's on_success and on_finish callbacks run once (a second run of a callback
    would insert its token twice and fail on the unique constraint)."""
    workflows = [
        group(
            [noop.step(n=n) for n in range(MEMBERS)],
            on_success=record.step(token=f"success-{g}"),
            on_failure=record.step(token=f"failure-{g}"),
            on_finish=record.step(token=f"finish-{g}"),
        ).enqueue(name=f"group {g}")
        for g in range(GROUPS)
    ]
    started = time.monotonic()
    # On SQLite sixteen threads of no-op runs keep the file's one write lock nearly always
    # taken, and its lock is not fair: on a loaded machine a process's heartbeat has waited
    # past the suite's WORKER_LOST_AFTER of 3 s, and a peer rightly wrote it off (failing a
    # member, so the group failed). Liveness is not what this test is about; its processes
    # get 15 s there.
    env = {"DJANGO_JOBS_TEST_WORKER_LOST_AFTER": "15"} if SQLITE else None
    workers = _four_workers(worker, env)
    wait_or_explain(lambda: _all_ended(*workflows), 240, *workers,
                    what="the groups did not all end")
    took = time.monotonic() - started
    assert stop_all(*workers) == [0, 0, 0, 0], logs(*workers)
    print(f"\n{GROUPS} groups x {MEMBERS} members + 3 callbacks each: {took:.1f} s")
    tokens = _tokens()
    callbacks = list(Job.objects.for_name("jobsapp.record")
                     .values_list("data", "status", "result", "error", "worker"))
    for g in range(GROUPS):
        assert tokens[f"success-{g}"] == 1, (g, tokens, callbacks, logs(*workers))
        assert tokens[f"finish-{g}"] == 1, (g, tokens, callbacks, logs(*workers))
        assert tokens[f"failure-{g}"] == 0, (g, tokens, callbacks)
    statuses = Counter(Job.objects.values_list("status", flat=True))
    assert statuses == {"succeeded": GROUPS * (MEMBERS + 2), "skipped": GROUPS}, statuses
    # Every edge counted exactly once, none left over, and every run was a first attempt.
    assert not JobDependency.objects.filter(settled=False).exists()
    assert set(Job.objects.values_list("attempt", flat=True)) == {1}
    assert set(Job.objects.values_list("waiting_for", flat=True)) == {0}


def test_a_chain_of_50_runs_in_order(worker):
    wf = chain(*[add.step(value=1) for _ in range(50)]).enqueue(name="fifty")
    workers = [worker("--concurrency", "4"), worker("--concurrency", "4")]
    wait_or_explain(lambda: _all_ended(wf), 90, *workers, what="the chain did not end")
    assert stop_all(*workers) == [0, 0]
    steps = list(Job.objects.in_workflow(wf.pk).order_by("started_at"))
    assert [step.result for step in steps] == list(range(1, 51))
    for before, after in zip(steps, steps[1:], strict=False):
        assert after.started_at >= before.finished_at
    assert {step.status for step in steps} == {"succeeded"}
    # Both workers took part: each step went to whichever process claimed it first.
    print(f"\nsteps per worker: {Counter(step.worker for step in steps)}")


def test_the_diamond_runs_d_once_after_b_and_c(worker):
    """Twenty diamonds at once: b and c after a, d after b and c, on racing workers."""
    diamonds = []
    for n in range(20):
        a = record.enqueue(token=f"a{n}", seconds=0.02)
        b = record.enqueue(token=f"b{n}", seconds=0.05, after=[a])
        c = record.enqueue(token=f"c{n}", seconds=0.05, after=[a])
        d = record.enqueue(token=f"d{n}", after=[b, c])
        diamonds.append((a, b, c, d))
    workflows = list(Workflow.objects.all())
    assert len(workflows) == 20
    workers = _four_workers(worker)
    wait_or_explain(lambda: _all_ended(*workflows), 60, *workers, what="the diamonds")
    assert stop_all(*workers) == [0, 0, 0, 0]
    tokens = _tokens()
    assert set(tokens.values()) == {1} and len(tokens) == 80
    runs = {row.token: row for row in Execution.objects.all()}
    for n in range(20):
        a, b, c, d = (runs[f"{x}{n}"] for x in "abcd")
        assert b.started >= a.ended and c.started >= a.ended
        assert d.started >= max(b.ended, c.ended)


def test_sigkill_of_a_worker_running_a_member_the_workflow_completes(worker, marker_dir):
    wf = chain(
        record.step(token="first"),
        six_hours.step(token="member"),
        group([record.step(token=f"after-{n}") for n in range(3)],
              on_success=record.step(token="callback")),
    ).enqueue()
    a = worker()
    member = Job.objects.in_workflow(wf.pk).get(name="jobsapp.six_hours")
    wait_or_explain((marker_dir / f"{member.pk}.1").exists, 20, a, what="the member never ran")
    b = worker()
    a.proc.kill()
    a.wait(timeout=10)
    wait_or_explain(lambda: _all_ended(wf), LOST_AFTER + RESCUE_INTERVAL + 20, a, b,
                    what="the workflow did not complete after the SIGKILL")
    assert stop_all(b) == [0]
    first_attempt = Job.objects.get(pk=member.pk)
    assert first_attempt.status == "failed" and first_attempt.error.startswith("worker lost")
    retry = Job.objects.get(rescheduled_from=member.pk)
    assert (retry.status, retry.workflow_id) == ("succeeded", wf.pk)
    tokens = _tokens()
    assert tokens == Counter({"first": 1, "member": 1, "after-0": 1, "after-1": 1, "after-2": 1,
                              "callback": 1})
    info = registry.workflow_status(wf.pk)
    assert info.status == "succeeded" and info.progress == 1.0
    assert len(info.members) == 6  # the killed attempt is not a member of its own


@pytest.mark.parametrize("policy", ["cancel", "continue"])
def test_failure_policy_cancel_and_continue(worker, policy):
    """A group of a failing chain and 60 slow independent members: with "cancel" the members
    not started when the failure lands are cancelled (and no retry or new start follows);
    with "continue" they all run. Only the failed member's dependent is cancelled in both."""
    wf = group(
        chain(fail.step(), record.step(token="after-failure")),
        [record.step(token=f"other-{n}", seconds=0.1) for n in range(60)],
        on_failure=record.step(token="on-failure"),
        on_finish=record.step(token="on-finish"),
        on_success=record.step(token="on-success"),
    ).enqueue(on_failure=policy)
    workers = [worker("--concurrency", "2"), worker("--concurrency", "2")]
    wait_or_explain(lambda: _all_ended(wf), 60, *workers, what="the workflow did not end")
    assert stop_all(*workers) == [0, 0]
    rows = {row.data.get("token", row.name): row for row in Job.objects.in_workflow(wf.pk)}
    failed_at = rows["jobsapp.wf_fail"].finished_at
    assert rows["jobsapp.wf_fail"].status == "failed"
    assert rows["after-failure"].status == "cancelled"
    assert rows["on-success"].status == "cancelled"
    others = [rows[f"other-{n}"] for n in range(60)]
    tokens = _tokens()
    assert tokens["on-failure"] == 1 and tokens["on-finish"] == 1 and tokens["on-success"] == 0
    if policy == "continue":
        assert {row.status for row in others} == {"succeeded"}
    else:
        cancelled = [row for row in others if row.status == "cancelled"]
        assert cancelled, "the failure landed after every member had started"
        # Whatever had not started when the failure landed never started.
        for row in others:
            assert row.status in ("succeeded", "cancelled")
            if row.started_at is not None:
                assert row.started_at <= failed_at + clock_slack()
        assert Workflow.objects.get(pk=wf.pk).cancelled_at is not None
    assert registry.workflow_status(wf.pk).status == "failed"


def clock_slack():
    # The failure's finish time is written by its worker's clock, the other starts by the
    # database's: the test settings keep both on one host, a few milliseconds apart.
    return timedelta(milliseconds=200)


def test_cancel_stops_everything_not_finished(worker):
    wf = group(
        [record.step(token=f"m{n}", seconds=0.1) for n in range(200)],
        on_finish=record.step(token="on-finish"),
    ).enqueue()
    workers = [worker("--concurrency", "2"), worker("--concurrency", "2")]
    wait_or_explain(
        lambda: Job.objects.in_workflow(wf.pk).filter(status="succeeded").count() >= 10, 30,
        *workers, what="the members did not start",
    )
    registry.cancel_workflow(wf.pk)
    cancelled_at = clock.now()
    wait_or_explain(lambda: _all_ended(wf), 30, *workers, what="the workflow did not stop")
    assert stop_all(*workers) == [0, 0]
    statuses = Counter(Job.objects.in_workflow(wf.pk).values_list("status", flat=True))
    assert set(statuses) <= {"succeeded", "cancelled"}
    assert statuses["cancelled"] >= 150, statuses  # 4 threads could not have run 50 more
    assert Job.objects.in_workflow(wf.pk).get(data__token="on-finish").status == "cancelled"
    # Nothing started after the cancellation (what was running then ran to its end).
    late = Job.objects.in_workflow(wf.pk).filter(started_at__gt=cancelled_at + clock_slack())
    assert not late.exists(), list(late.values_list("data", "started_at"))
    assert registry.workflow_status(wf.pk).status == "cancelled"
