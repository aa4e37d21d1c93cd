"""Workflows in the admin: the list, a workflow's page (members in dependency order, escaped),
its JSON state for the page's script, Cancel behind ``cancel_job`` with CSRF, and the links
between a member's job page, the job list and its workflow."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_jobs import chain, group, registry
from django_jobs.jobtypes import registry as job_types
from django_jobs.models import Job, JobStatus, Workflow
from django_jobs.testing import run_due_jobs

LIST = reverse("admin:django_jobs_workflow_changelist")
JOBS = reverse("admin:django_jobs_job_changelist")
EVIL = "<script>alert('x')</script>"

add = job_types.get("jobsapp.wf_add")
collect = job_types.get("jobsapp.wf_collect")
echo = job_types.get("jobsapp.echo")


def page(wf: Workflow) -> str:
    return reverse("admin:django_jobs_workflow_change", args=[wf.pk])


def state_url(wf: Workflow) -> str:
    return reverse("admin:django_jobs_workflow_state", args=[wf.pk])


def cancel_url(wf: Workflow) -> str:
    return reverse("admin:django_jobs_workflow_cancel", args=[wf.pk])


def job_page(job: Job) -> str:
    return reverse("admin:django_jobs_job_change", args=[job.pk])


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def members(wf: Workflow) -> list[Job]:
    return list(Job.objects.in_workflow(wf.pk).order_by("pk"))


def statuses(wf: Workflow) -> list[str]:
    return sorted(job.status for job in members(wf))


def by_label(wf: Workflow) -> dict[str, Job]:
    return {job.data["label"]: job for job in members(wf)}


def row_of(html: str, wf: Workflow) -> str:
    """The list's row of ``wf``."""
    return next(row for row in html.split("<tr")[1:] if str(wf.pk)[:8] in row)


@pytest.fixture
def finished_and_running(db):
    """A chain that ran to the end (the sweep has not written its end yet) and a group whose
    first member runs at 50%."""
    done = chain(add.step(value=1), add.step(value=10)).enqueue(name="done-chain")
    run_due_jobs(schedule=False)
    running = group(echo.step(label="a"), echo.step(label="b"),
                    on_success=collect.step(label="ok")).enqueue(name="busy-group")
    first = by_label(running)["a"]
    Job.objects.filter(pk=first.pk).update(status=JobStatus.RUNNING, progress=0.5)
    return done, running


# -- the list ---------------------------------------------------------------------------------


def test_the_list_shows_each_workflow_with_status_progress_and_members(admin_client,
                                                                        finished_and_running):
    done, running = finished_and_running
    html = admin_client.get(LIST).content.decode()
    done_row, running_row = row_of(html, done), row_of(html, running)
    assert "done-chain" in done_row and "dj-status-succeeded" in done_row
    assert '<progress max="100" value="100"' in done_row
    assert "2 members: 2 succeeded" in done_row
    assert "busy-group" in running_row and "dj-status-running" in running_row
    # (0.5 + 0 + 0) / 3 members
    assert '<progress max="100" value="16"' in running_row
    assert "3 members: 1 waiting, 1 scheduled, 1 running" in running_row
    assert f'href="{page(running)}"' in running_row


@pytest.mark.parametrize(("status", "expected"), [("running", "busy-group"),
                                                  ("succeeded", "done-chain")])
def test_the_list_filters_by_status_before_and_after_the_sweep(admin_client, finished_and_running,
                                                              status, expected):
    response = admin_client.get(LIST, {"status": status})
    assert [wf.name for wf in response.context["cl"].result_list] == [expected]
    Workflow.objects.filter(name="done-chain").update(status="succeeded",
                                                      finished_at=Workflow.objects.get(
                                                          name="done-chain").created_at)
    response = admin_client.get(LIST, {"status": status})
    assert [wf.name for wf in response.context["cl"].result_list] == [expected]


def test_the_list_finds_a_workflow_by_name_full_id_or_short_id(admin_client,
                                                               finished_and_running):
    done, running = finished_and_running
    for term, expected in (("busy", running), (str(done.pk), done), (str(done.pk)[:8], done)):
        response = admin_client.get(LIST, {"q": term})
        assert [wf.pk for wf in response.context["cl"].result_list] == [expected.pk], term


def test_the_list_runs_as_many_queries_for_many_workflows_as_for_one(admin_client, db):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(LIST).status_code == 200
        return len(captured)

    chain(add.step(value=1), add.step(value=2)).enqueue()
    one = queries()
    for n in range(8):
        group(echo.step(label=f"{n}a"), echo.step(label=f"{n}b")).enqueue(name=f"wf {n}")
    assert queries() == one


# -- a workflow's page ------------------------------------------------------------------------


def test_the_page_lists_members_in_dependency_order_with_links_and_a_graph(admin_client, db):
    wf = group(
        chain(echo.step(label="a1"), echo.step(label="a2"), echo.step(label="a3")),
        echo.step(label="b"),
        on_success=collect.step(label="ok"),
        on_failure=collect.step(label="bad"),
    ).enqueue(name="nightly", on_failure="continue")
    rows = by_label(wf)
    html = admin_client.get(page(wf)).content.decode()
    table = html.split('id="dj-members"', 1)[1].split("</table>", 1)[0]
    order = re.findall(r'<tr id="member-([0-9a-f-]+)"', table)
    assert sorted(order) == sorted(str(job.pk) for job in rows.values())
    at = {job_id: n for n, job_id in enumerate(order)}
    for member in registry.workflow_status(wf.pk).members:
        assert all(at[str(pk)] < at[str(member.id)] for pk in member.after)
    # A chain reads as a block; the callbacks come after everything they wait for.
    a1, a2, a3 = (at[str(rows[label].pk)] for label in ("a1", "a2", "a3"))
    assert a2 == a1 + 1 and a3 == a2 + 1
    assert min(at[str(rows["ok"].pk)], at[str(rows["bad"].pk)]) > max(a3, at[str(rows["b"].pk)])
    # Each member links to its job page; "after" links to the rows of what it waits for.
    a3_row = table.split(f'<tr id="member-{rows["a3"].pk}"', 1)[1].split("</tr>", 1)[0]
    assert f'href="{job_page(rows["a3"])}"' in a3_row
    assert f'href="#member-{rows["a2"].pk}"' in a3_row
    assert "after they all succeeded" in a3_row
    ok_row = table.split(f'<tr id="member-{rows["ok"].pk}"', 1)[1].split("</tr>", 1)[0]
    assert f'href="#member-{rows["a3"].pk}"' in ok_row
    assert f'href="#member-{rows["b"].pk}"' in ok_row
    # The graph indents each member under the longest chain it waits for.
    graph = html.split('id="dj-graph"', 1)[1].split("</ul>", 1)[0]
    lines = {job_id: line for line in graph.split("<li>")[1:]
             for job_id in re.findall(r'href="#member-([0-9a-f-]+)"', line)[:1]}
    assert lines[str(rows["a1"].pk)].count('class="dj-indent"') == 0
    assert lines[str(rows["a3"].pk)].count('class="dj-indent"') == 2
    assert lines[str(rows["ok"].pk)].count('class="dj-indent"') == 3
    # The head: status, progress, counts, the failure policy, and the live script's settings.
    head = html.split('id="dj-workflow"', 1)[1].split("</table>", 1)[0]
    assert "dj-status-running" in head and '<progress max="100" value="0"' in head
    assert "6 members: 4 waiting, 2 scheduled" in head
    assert "carry on" in head
    assert f'"workflow_url": "{state_url(wf)}"' in html
    assert f'href="{JOBS}?workflow={wf.pk}"' in html


def test_names_messages_errors_and_payloads_are_escaped(admin_client, db):
    wf = chain(echo.step(label="first", html=EVIL), echo.step(label="second")).enqueue(name=EVIL)
    rows = by_label(wf)
    Job.objects.filter(pk=rows["first"].pk).update(
        name=f"jobsapp.{EVIL}", status=JobStatus.FAILED, progress_message=EVIL,
        error=f"ValueError: {EVIL}\nmore",
    )
    Job.objects.filter(pk=rows["second"].pk).update(progress_message="\x1b[31mred")
    for url in (LIST, page(wf), job_page(rows["first"])):
        html = admin_client.get(url).content.decode()
        assert "<script>" not in html, url
    html = admin_client.get(page(wf)).content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "ValueError: &lt;script&gt;" in html
    assert "\x1b" not in html and "\\x1b[31mred" in html
    # The JSON carries the text as it is: the page's script writes it with textContent.
    assert admin_client.get(state_url(wf)).json()["name"] == EVIL


def test_the_page_is_read_only(admin_client, finished_and_running):
    done, _ = finished_and_running
    html = admin_client.get(page(done)).content.decode()
    assert 'name="_save"' not in html and "Cancel workflow" not in html
    assert admin_client.post(page(done), {"name": "x"}).status_code == 403
    assert admin_client.get(reverse("admin:django_jobs_workflow_add")).status_code == 403
    delete = reverse("admin:django_jobs_workflow_delete", args=[done.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Workflow.objects.get(pk=done.pk).name == "done-chain"


def test_an_unknown_workflow_is_a_404(admin_client, db):
    missing = "00000000-0000-4000-8000-000000000000"
    url = reverse("admin:django_jobs_workflow_change", args=[missing])
    assert admin_client.get(url).status_code == 404
    url = reverse("admin:django_jobs_workflow_state", args=[missing])
    assert admin_client.get(url).status_code == 404


# -- the JSON state ---------------------------------------------------------------------------


def test_the_state_endpoint_answers_the_workflow_status_as_json(admin_client,
                                                                finished_and_running):
    _, running = finished_and_running
    response = admin_client.get(state_url(running))
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    data = response.json()
    assert data == registry.workflow_status(running.pk).as_dict()
    assert data["status"] == "running" and len(data["members"]) == 3
    assert admin_client.post(state_url(running)).status_code == 405


def test_the_pages_need_view_workflow_and_a_login(staff, client, finished_and_running):
    done, _ = finished_and_running
    jobs_only = staff("view_job", "cancel_job")
    for url in (LIST, page(done), state_url(done)):
        assert jobs_only.get(url).status_code == 403, url
        assert staff("view_workflow").get(url).status_code == 200, url
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_cancels_what_is_not_finished_and_says_how_many(admin_client, admin_user,
                                                               finished_and_running):
    _, running = finished_and_running
    html = admin_client.get(page(running)).content.decode()
    assert 'data-action="cancel-workflow"' in html and "data-dj-confirm=" in html
    response = admin_client.post(cancel_url(running), follow=True)
    assert response.redirect_chain[-1][0] == page(running)
    assert texts(response) == [
        "Cancelled 2 jobs of the workflow busy-group " + str(running.pk)[:8] + ".",
        "Asked 1 running job to stop; it ends cancelled at its next check.",
    ]
    assert statuses(running) == ["cancelled", "cancelled", "running"]
    assert by_label(running)["a"].cancel_requested_at is not None
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.user_id) == (str(running.pk), admin_user.pk)
    assert "Cancelled the workflow" in entry.change_message
    history = reverse("admin:django_jobs_workflow_history", args=[running.pk])
    assert f'href="{history}"' in html
    assert "Cancelled the workflow" in admin_client.get(history).content.decode()


def test_cancel_of_a_finished_workflow_changes_nothing(admin_client, finished_and_running):
    done, _ = finished_and_running
    response = admin_client.post(cancel_url(done), follow=True)
    assert texts(response) == [f"Not cancelled: the workflow done-chain {str(done.pk)[:8]} is "
                               "already succeeded."]
    assert statuses(done) == ["succeeded", "succeeded"]


def test_cancel_needs_the_cancel_job_permission(staff, finished_and_running):
    _, running = finished_and_running
    viewer = staff("view_workflow", "view_job")
    assert "cancel-workflow" not in viewer.get(page(running)).content.decode()
    assert viewer.post(cancel_url(running)).status_code == 403
    assert statuses(running) == ["running", "scheduled", "waiting"]
    assert 'data-action="cancel-workflow"' in staff(
        "view_workflow", "cancel_job").get(page(running)).content.decode()


def test_cancel_takes_a_post_with_a_csrf_token(staff, finished_and_running):
    _, running = finished_and_running
    client = staff("view_workflow", "cancel_job", csrf=True)
    assert client.get(cancel_url(running)).status_code == 405
    assert client.post(cancel_url(running)).status_code == 403
    assert statuses(running) == ["running", "scheduled", "waiting"]
    token = client.get(page(running)).context["csrf_token"]
    assert client.post(cancel_url(running), {"csrfmiddlewaretoken": token}).status_code == 302
    assert statuses(running) == ["cancelled", "cancelled", "running"]


# -- links between jobs and their workflow ----------------------------------------------------


def test_a_member_page_links_to_its_workflow_for_those_who_may_see_it(staff, finished_and_running):
    _, running = finished_and_running
    member = by_label(running)["b"]
    filtered = f"{JOBS}?workflow={running.pk}"
    both = staff("view_job", "view_workflow").get(job_page(member)).content.decode()
    assert both.count(f'href="{page(running)}"') == 2  # the field and the object tools
    assert f'href="{filtered}"' in both and "busy-group" in both
    jobs_only = staff("view_job").get(job_page(member)).content.decode()
    assert f'href="{page(running)}"' not in jobs_only
    assert f'href="{filtered}"' in jobs_only and "busy-group" in jobs_only
    loner = registry.enqueue("jobsapp.noop")
    html = staff("view_job", "view_workflow").get(job_page(loner)).content.decode()
    assert "field-workflow" not in html


def test_the_job_list_filters_on_a_workflow(admin_client, finished_and_running):
    done, running = finished_and_running
    registry.enqueue("jobsapp.noop")
    response = admin_client.get(JOBS, {"workflow": str(running.pk)})
    assert {job.pk for job in response.context["cl"].result_list} == {
        job.pk for job in members(running)}
    assert admin_client.get(JOBS, {"workflow": "nope"}).context["cl"].result_list.count() == 0
    html = admin_client.get(JOBS).content.decode()
    assert f'href="{LIST}"' in html  # the list links to the workflows
