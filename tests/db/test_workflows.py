"""Workflows in one process: chains, groups and their callbacks, ``after=``, failure policies,
retries, cancellation, status, eager mode and bad input. The same promises under several
worker processes are in tests/concurrency/test_workflows.py."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from django_jobs import chain, group, registry, workflow
from django_jobs.exceptions import JobNotFound
from django_jobs.jobtypes import registry as job_types
from django_jobs.models import Job, JobDependency, Workflow
from django_jobs.testing import eager, run_due_jobs
from django_jobs.workflows import finish_workflows, settle, settle_ended

pytestmark = pytest.mark.django_db(transaction=True)

add = job_types.get("jobsapp.wf_add")
collect = job_types.get("jobsapp.wf_collect")
fail = job_types.get("jobsapp.wf_fail")
flaky = job_types.get("jobsapp.wf_flaky")
echo = job_types.get("jobsapp.echo")
record = job_types.get("jobsapp.record")


def members(wf) -> dict[str, Job]:
    """The workflow's rows, by the label/value their payload carries."""
    found = {}
    for row in Job.objects.in_workflow(wf.pk):
        key = row.data.get("label") or row.data.get("token") or row.data.get("value")
        found[f"{row.name.split('.')[-1]}:{key}:{row.attempt}"] = row
    return found


def test_a_chain_runs_in_order_each_step_seeing_the_previous_result():
    wf = chain(add.step(value=1), add.step(value=10), add.step(value=100)).enqueue(name="sum")
    statuses = sorted(Job.objects.in_workflow(wf.pk).values_list("status", flat=True))
    assert statuses == ["scheduled", "waiting", "waiting"]
    ran = run_due_jobs(schedule=False)
    assert [job.result for job in ran] == [1, 11, 111]
    assert [job.status for job in ran] == ["succeeded"] * 3
    info = registry.workflow_status(wf.pk)
    assert (info.status, info.progress, info.name) == ("succeeded", 1.0, "sum")


def test_a_group_callback_gets_the_results_in_order_and_only_the_callbacks_that_apply_run():
    wf = group(
        [echo.step(n=n) for n in range(5)],
        on_success=collect.step(label="ok"),
        on_failure=collect.step(label="bad"),
        on_finish=collect.step(label="end"),
    ).enqueue()
    run_due_jobs(schedule=False)
    rows = members(wf)
    ok, bad, end = rows["wf_collect:ok:1"], rows["wf_collect:bad:1"], rows["wf_collect:end:1"]
    assert ok.status == "succeeded"
    assert [r["data"]["n"] for r in ok.result["results"]] == [0, 1, 2, 3, 4]
    assert ok.result["counts"] == {"succeeded": 5}
    assert bad.status == "skipped" and "every job it waited for succeeded" in bad.error
    assert end.status == "succeeded"
    finish_workflows()
    assert Workflow.objects.get(pk=wf.pk).status == "succeeded"


def test_a_failed_member_cancels_the_rest_by_default_and_the_failure_callbacks_still_run():
    wf = group(
        chain(fail.step(), echo.step(label="after-fail")),
        chain(echo.step(label="first"), echo.step(label="second")),
        on_success=collect.step(label="ok"),
        on_failure=collect.step(label="bad"),
        on_finish=collect.step(label="end"),
    ).enqueue()
    ran = run_due_jobs(schedule=False)
    rows = members(wf)
    names = [job.name for job in ran]
    assert names[0] == "jobsapp.wf_fail"  # created first, so claimed first
    assert rows["wf_collect:ok:1"].status == "cancelled"
    assert rows["echo:after-fail:1"].status == "cancelled"
    assert rows["echo:second:1"].status == "cancelled"
    bad = rows["wf_collect:bad:1"]
    assert bad.status == "succeeded"
    # It waited for the last step of each chain: both cancelled, one after the failure.
    assert bad.result["counts"] == {"cancelled": 2}
    assert rows["wf_collect:end:1"].status == "succeeded"
    assert registry.workflow_status(wf.pk).status == "failed"


def test_with_on_failure_continue_what_does_not_depend_on_the_failed_member_goes_on():
    wf = group(
        chain(fail.step(), echo.step(label="after-fail")),
        chain(echo.step(label="first"), echo.step(label="second")),
        on_failure=collect.step(label="bad"),
    ).enqueue(on_failure="continue")
    run_due_jobs(schedule=False)
    rows = members(wf)
    assert rows["echo:after-fail:1"].status == "cancelled"
    assert "ended failed" in rows["echo:after-fail:1"].error
    assert rows["echo:first:1"].status == "succeeded"
    assert rows["echo:second:1"].status == "succeeded"
    assert rows["wf_collect:bad:1"].status == "succeeded"
    assert rows["wf_collect:bad:1"].result["counts"] == {"succeeded": 1, "cancelled": 1}


def test_a_diamond_built_with_after_runs_d_once_after_b_and_c():
    with workflow("diamond") as wf:
        a = add.enqueue(value=1)
        b = add.enqueue(value=2, after=[a])
        c = add.enqueue(value=3, after=[a])
        d = collect.enqueue(label="d", after=[b, c])
    ran = run_due_jobs(schedule=False)
    order = [job.pk for job in ran]
    assert order[0] == a.pk and order[-1] == d.pk and set(order[1:3]) == {b.pk, c.pk}
    assert Job.objects.get(pk=d.pk).result["results"] == [3, 4]
    info = registry.workflow_status(wf.pk)
    by_id = {m.id: m for m in info.members}
    assert by_id[d.pk].after == [b.pk, c.pk]
    assert by_id[b.pk].after == [a.pk]


def test_after_on_plain_jobs_builds_a_workflow_around_them():
    a = echo.enqueue(label="a")
    b = echo.enqueue(label="b", after=[a])
    a.refresh_from_db()
    assert b.status == "waiting" and a.workflow_id == b.workflow_id is not None
    run_due_jobs(schedule=False)
    assert Job.objects.get(pk=b.pk).status == "succeeded"


def test_after_a_job_that_already_ended_counts_it_at_once():
    done = echo.enqueue(label="done")
    run_due_jobs(schedule=False)
    assert echo.enqueue(label="next", after=[done]).status == "scheduled"
    failed = fail.enqueue()
    run_due_jobs(schedule=False)
    never = echo.enqueue(label="never", after=[failed.pk])
    assert never.status == "cancelled"


def test_a_retried_member_is_the_same_member_its_dependents_wait_for_the_retry():
    wf = chain(flaky.step(token="t"), collect.step(label="next")).enqueue()
    run_due_jobs(schedule=False)
    rows = members(wf)
    assert rows["wf_flaky:t:1"].status == "failed"
    assert rows["wf_flaky:t:2"].status == "succeeded"
    step = rows["wf_collect:next:1"]
    assert step.status == "succeeded"
    assert step.result["results"] == ["t"]  # the retry's result
    info = registry.workflow_status(wf.pk)
    assert info.status == "succeeded"
    assert len(info.members) == 2  # the failed attempt is not a member of its own


def test_cancelling_a_workflow_cancels_every_member_not_finished_callbacks_included():
    wf = group(
        [echo.step(n=n) for n in range(3)], on_finish=collect.step(label="end"),
    ).enqueue()
    first = Job.objects.in_workflow(wf.pk).scheduled().first()
    Job.objects.filter(pk=first.pk).update(status="running")  # as if a worker had claimed it
    assert registry.cancel_workflow(str(wf.pk)[:8]) == 3
    statuses = dict(Job.objects.in_workflow(wf.pk).values_list("pk", "status"))
    assert statuses.pop(first.pk) == "running"
    assert set(statuses.values()) == {"cancelled"}
    assert Job.objects.get(pk=first.pk).cancel_requested_at is not None
    assert run_due_jobs(schedule=False) == []


def test_a_workflow_is_written_in_one_transaction():
    with pytest.raises(TypeError):
        chain(echo.step(n=1), echo.step(n=object())).enqueue()
    assert not Job.objects.exists() and not Workflow.objects.exists()
    with pytest.raises(RuntimeError), transaction.atomic():
        chain(echo.step(n=1), echo.step(n=2)).enqueue()
        raise RuntimeError("the caller's transaction rolls back")
    assert not Job.objects.exists() and not JobDependency.objects.exists()


def test_an_outcome_is_counted_once_however_often_it_is_settled():
    wf = group([echo.step(n=n) for n in range(2)], on_success=collect.step(label="ok")).enqueue()
    first, second = Job.objects.in_workflow(wf.pk).scheduled().order_by("created_at")
    Job.objects.filter(pk=first.pk).update(status="succeeded")
    for _ in range(3):
        settle([first.pk])
        settle_ended()
    callback = Job.objects.in_workflow(wf.pk).get(name="jobsapp.wf_collect")
    assert (callback.status, callback.waiting_for) == ("waiting", 1)


def test_an_outcome_written_by_hand_is_settled_by_the_sweep():
    wf = chain(echo.step(n=1), echo.step(n=2)).enqueue()
    first = Job.objects.in_workflow(wf.pk).scheduled().get()
    # Written by hand in the database: no settlement came with it.
    Job.objects.filter(pk=first.pk).update(status="cancelled")
    assert settle_ended() == 1
    statuses = sorted(Job.objects.in_workflow(wf.pk).values_list("status", flat=True))
    assert statuses == ["cancelled", "cancelled"]
    finish_workflows()
    assert Workflow.objects.get(pk=wf.pk).status == "cancelled"


def test_registry_cancel_of_a_member_releases_or_cancels_its_dependents_at_once():
    wf = group([echo.step(n=n) for n in range(2)], on_finish=collect.step(label="end"),
               on_success=collect.step(label="ok")).enqueue(on_failure="continue")
    for row in Job.objects.in_workflow(wf.pk).scheduled():
        registry.cancel(row.pk)
    rows = members(wf)
    assert rows["wf_collect:end:1"].status == "scheduled"
    assert rows["wf_collect:ok:1"].status == "cancelled"


def test_a_chain_as_failure_callback_runs_whole_under_the_cancel_policy():
    wf = group(fail.step(), echo.step(label="other"),
               on_failure=chain(collect.step(label="c1"), collect.step(label="c2"))).enqueue()
    run_due_jobs(schedule=False)
    rows = members(wf)
    assert rows["wf_collect:c1:1"].status == "succeeded"
    assert rows["wf_collect:c2:1"].status == "succeeded"


def test_members_are_listed_in_the_order_they_were_built():
    wf = chain(*[add.step(value=n) for n in range(30)]).enqueue()
    assert [m.name for m in registry.workflow_status(wf.pk).members] == ["jobsapp.wf_add"] * 30
    values = [Job.objects.get(pk=m.id).data["value"]
              for m in registry.workflow_status(wf.pk).members]
    assert values == list(range(30))


def test_status_counts_progress_and_members():
    wf = group([echo.step(n=n) for n in range(4)], on_success=collect.step(label="ok")).enqueue()
    rows = sorted(Job.objects.in_workflow(wf.pk).scheduled(), key=lambda row: row.data["n"])
    Job.objects.filter(pk=rows[0].pk).update(status="succeeded", progress=1.0)
    Job.objects.filter(pk=rows[1].pk).update(status="running", progress=0.5)
    info = registry.workflow_status(wf.pk)
    assert info.status == "running"
    assert info.counts == {"succeeded": 1, "running": 1, "scheduled": 2, "waiting": 1}
    assert info.progress == pytest.approx(1.5 / 5)
    callback = next(m for m in info.as_dict()["members"] if m["name"] == "jobsapp.wf_collect")
    assert callback["after"] == [str(row.pk) for row in rows]
    assert callback["run_when"] == "success"


def test_eager_mode_runs_a_workflow_to_its_end():
    with eager():
        wf = chain(add.step(value=2), add.step(value=3)).enqueue()
    assert sorted(Job.objects.in_workflow(wf.pk).values_list("result", flat=True)) == [2, 5]


@pytest.mark.parametrize(
    ("build", "error", "text"),
    [
        (lambda: echo.enqueue(after="x"), TypeError, "list of jobs"),
        (lambda: echo.enqueue(after=[]), ValueError, "at least one job"),
        (lambda: echo.enqueue(after=["nope"]), TypeError, "neither a job nor a job id"),
        (lambda: echo.enqueue(after=[uuid.uuid4()]), JobNotFound, "after=: no job"),
        (lambda: chain(), ValueError, "at least one step"),
        (lambda: group([echo]), TypeError, "must be a step"),
        (lambda: group(echo.step(), on_success="x"), TypeError, "on_success"),
        (lambda: echo.step(after=[]), TypeError, "cannot take after="),
        (lambda: chain(echo.step()).enqueue(on_failure="stop"), ValueError, "on_failure"),
        (lambda: echo.enqueue_many([{}], after=[]), TypeError, "enqueue_many() cannot"),
    ],
)
def test_bad_input_gets_a_clear_error(build, error, text):
    with pytest.raises(error, match=None) as info:
        build()
    assert text in str(info.value)
    assert not Job.objects.exists()


def test_pruning_removes_a_finished_workflow_with_its_members_and_links_together():
    from datetime import timedelta

    from django_jobs import clock
    from django_jobs.pruning import prune

    old = chain(echo.step(n=1), echo.step(n=2)).enqueue()
    run_due_jobs(schedule=False)
    running = chain(echo.step(n=3), echo.step(n=4)).enqueue()
    assert Workflow.objects.get(pk=old.pk).finished_at is not None  # run_due_jobs() wrote it
    long_ago = clock.now() - timedelta(days=400)
    # The first step of the open workflow ended long ago: kept while its workflow is open.
    Job.objects.in_workflow(running.pk).scheduled().update(status="succeeded")
    Job.objects.finished().update(finished_at=long_ago)
    Workflow.objects.filter(pk=old.pk).update(finished_at=long_ago)
    assert prune() == 2
    assert not Workflow.objects.filter(pk=old.pk).exists()
    assert not JobDependency.objects.filter(workflow=old.pk).exists()
    assert Job.objects.in_workflow(running.pk).count() == 2


def test_locks_and_limits_apply_to_members_like_any_job():
    from django_jobs.worker.claim import claim

    per_customer = job_types.get("jobsapp.per_customer")
    wf = group([per_customer.step(customer=1, seconds=0) for _ in range(2)],
               on_success=collect.step(label="ok")).enqueue()
    first = claim("test-worker", 5)
    # Two members share a lock key: one claim takes one of them, the other stays scheduled.
    assert [row.workflow_id for row in first] == [wf.pk]
    statuses = sorted(Job.objects.in_workflow(wf.pk).values_list("status", flat=True))
    assert statuses == ["running", "scheduled", "waiting"]
    assert claim("test-worker", 5) == []
