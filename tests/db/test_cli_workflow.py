"""``manage.py jobs workflow ID``: the workflow's state and its members as a table, ``--json``,
``--cancel``, and the exit statuses of ids that name no workflow."""

from __future__ import annotations

import json
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_jobs import chain, group, registry
from django_jobs.jobtypes import registry as job_types
from django_jobs.models import Job, JobStatus
from django_jobs.testing import run_due_jobs

pytestmark = pytest.mark.django_db

add = job_types.get("jobsapp.wf_add")
collect = job_types.get("jobsapp.wf_collect")
echo = job_types.get("jobsapp.echo")


def jobs(*args: str) -> str:
    out = StringIO()
    call_command("jobs", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def exit_status(*args: str) -> tuple[int, str]:
    with pytest.raises(CommandError) as info:
        jobs(*args)
    return info.value.returncode, str(info.value)


def members(wf) -> dict[str, Job]:
    return {job.data["label"]: job for job in Job.objects.in_workflow(wf.pk)}


def test_the_table_shows_the_state_and_the_members_in_dependency_order():
    wf = group(chain(echo.step(label="a1"), echo.step(label="a2")), echo.step(label="b"),
               on_success=collect.step(label="ok")).enqueue(name="nightly")
    rows = members(wf)
    Job.objects.filter(pk=rows["a1"].pk).update(status=JobStatus.RUNNING, progress=0.5,
                                                progress_message="half way")
    out = jobs("workflow", str(wf.pk)[:8])
    head, table = out.split("\n\n")
    assert f"id          {wf.pk}" in head
    assert "name        nightly" in head and "status      running" in head
    assert "progress    12%" in head  # (0.5 + 0 + 0 + 0) / 4
    assert "on failure  cancel" in head
    assert "members     4 members: 2 waiting, 1 scheduled, 1 running" in head
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "PROGRESS", "AFTER", "MESSAGE"]
    by_id = {line.split()[0]: line for line in lines[1:]}
    short = {label: str(job.pk)[:8] for label, job in rows.items()}
    assert set(by_id) == set(short.values())
    assert by_id[short["a1"]].split() == [short["a1"], "jobsapp.echo", "running", "50%", "-",
                                          "half", "way"]
    assert by_id[short["a2"]].split()[2:5] == ["waiting", "0%", short["a1"]]
    assert by_id[short["ok"]].split()[4:6] == [short["a2"], short["b"]]
    # Dependency order: everything a member waits for is listed above it.
    order = [line.split()[0] for line in lines[1:]]
    assert order.index(short["a1"]) + 1 == order.index(short["a2"])
    assert order[-1] == short["ok"]
    # The columns are aligned: every row starts its STATUS where the header does.
    column = lines[0].index("STATUS")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[1:])


def test_json_is_the_workflow_status_snapshot():
    wf = chain(add.step(value=1), add.step(value=10)).enqueue(name="sum")
    run_due_jobs(schedule=False)
    data = json.loads(jobs("workflow", str(wf.pk), "--json"))
    assert data == registry.workflow_status(wf.pk).as_dict()
    assert (data["status"], data["progress"], len(data["members"])) == ("succeeded", 1.0, 2)


def test_cancel_cancels_what_is_not_finished_and_says_how_many():
    wf = group(echo.step(label="a"), echo.step(label="b"),
               on_success=collect.step(label="ok")).enqueue(name="nightly")
    Job.objects.filter(pk=members(wf)["a"].pk).update(status=JobStatus.RUNNING)
    out = jobs("workflow", str(wf.pk), "--cancel")
    assert out.strip() == (
        f"Cancelled 2 jobs of workflow {wf.pk} (nightly). Asked 1 running job to stop; it ends "
        "cancelled at its next check."
    )
    rows = members(wf)
    assert (rows["b"].status, rows["ok"].status) == ("cancelled", "cancelled")
    assert rows["a"].status == "running" and rows["a"].cancel_requested_at is not None


def test_cancel_json_and_cancel_of_a_finished_workflow():
    wf = chain(echo.step(label="a"), echo.step(label="b")).enqueue()
    assert json.loads(jobs("workflow", str(wf.pk), "--cancel", "--json")) == {
        "cancelled": 2, "asked_to_stop": 0}
    code, message = exit_status("workflow", str(wf.pk), "--cancel")
    assert code == 1 and message == f"workflow {wf.pk} is cancelled; nothing to cancel"


def test_an_id_that_names_no_workflow_exits_3_and_a_bad_one_2():
    code, message = exit_status("workflow", str(uuid.uuid4()))
    assert code == 3 and "no workflow with id" in message
    code, message = exit_status("workflow", "nope")
    assert code == 3 and "not a workflow id" in message
    code, message = exit_status("workflow", "abc")
    assert code == 2 and "too short" in message
    job = registry.enqueue("jobsapp.noop")  # a job's id is not a workflow's
    assert exit_status("workflow", str(job.pk), "--cancel")[0] == 3
