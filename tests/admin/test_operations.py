"""Pause and resume, failure triage, the admin log, short ids, new rows and the live job page."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from django_jobs import registry
from django_jobs.models import Job, JobSchedule, JobTypeLock, PausedQueue

LIST = reverse("admin:django_jobs_job_changelist")
DASHBOARD = reverse("admin:django_jobs_job_dashboard")
PAUSE = reverse("admin:django_jobs_job_pause")
FAILURES = reverse("admin:django_jobs_job_failures")
NEW_ROWS = reverse("admin:django_jobs_job_new_rows")
LIVE = reverse("admin:django_jobs_job_live")


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def button(job: Job, action: str) -> str:
    return reverse(f"admin:django_jobs_job_{action}", args=[job.pk])


def entries(obj_id) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(obj_id)).order_by("action_time"))


# -- pause and resume ---------------------------------------------------------------------------


def test_pausing_and_resuming_a_queue_goes_through_the_control_api_and_the_admin_log(
    staff, admin_user
):
    client = staff("view_job", "pause_job")
    response = client.post(PAUSE, {"kind": "queue", "name": "mail", "action": "pause"})
    assert response.status_code == 302 and response["Location"] == DASHBOARD
    assert registry.paused_queues() == ["mail"]
    assert "Paused the queue mail" in texts(response)[0]
    client.post(PAUSE, {"kind": "queue", "name": "mail", "action": "resume"})
    assert registry.paused_queues() == []
    log = entries("mail")
    assert [entry.change_message for entry in log] == ["Paused the queue mail.",
                                                       "Resumed the queue mail."]
    assert all(entry.action_flag == CHANGE for entry in log)
    assert log[0].user.has_perm("django_jobs.pause_job")


def test_pausing_and_resuming_a_recurring_job(staff):
    client = staff("view_job", "pause_job")
    client.post(PAUSE, {"kind": "job", "name": "billing:invoice-sync", "action": "pause"})
    assert JobSchedule.objects.get(name="billing:invoice-sync").paused
    html = client.get(DASHBOARD).content.decode()
    row = html[html.index('<tr data-dj-type="billing:invoice-sync">'):]
    row = row[:row.index("</tr>")]
    assert "dj-paused" in row and 'data-action="resume"' in row
    client.post(PAUSE, {"kind": "job", "name": "billing:invoice-sync", "action": "resume"})
    assert not JobSchedule.objects.get(name="billing:invoice-sync").paused
    assert [e.change_message for e in entries("billing:invoice-sync")] == [
        "Paused the recurring job billing:invoice-sync.",
        "Resumed the recurring job billing:invoice-sync.",
    ]


def test_pausing_a_job_that_is_not_recurring_is_refused_with_a_message(staff):
    client = staff("view_job", "pause_job")
    response = client.post(PAUSE, {"kind": "job", "name": "jobsapp.noop", "action": "pause"})
    assert "not recurring" in texts(response)[0]
    assert not JobSchedule.objects.exists() and not LogEntry.objects.exists()


def test_pause_needs_its_permission_a_post_and_a_csrf_token(staff):
    viewer = staff("view_job", "cancel_job", "run_job", "retry_job")
    data = {"kind": "queue", "name": "mail", "action": "pause"}
    assert viewer.post(PAUSE, data).status_code == 403
    allowed = staff("view_job", "pause_job")
    assert allowed.get(PAUSE, data).status_code == 405
    no_csrf = staff("view_job", "pause_job", csrf=True)
    assert no_csrf.post(PAUSE, data).status_code == 403
    assert not PausedQueue.objects.exists() and not LogEntry.objects.exists()
    # Without the permission, no pause button is offered either.
    assert 'data-action="pause' not in viewer.get(DASHBOARD).content.decode()


def test_bad_pause_requests_answer_400(staff):
    client = staff("view_job", "pause_job")
    assert client.post(PAUSE, {"kind": "table", "name": "x", "action": "pause"}).status_code == 400
    assert client.post(PAUSE, {"kind": "queue", "name": "", "action": "pause"}).status_code == 400


def test_the_list_marks_jobs_of_a_paused_queue_and_of_a_paused_recurring_job(
    admin_client, make_job
):
    make_job("jobsapp.noop", queue="mail")
    make_job("billing:invoice-sync")
    make_job("jobsapp.echo")
    PausedQueue.objects.create(queue="mail")
    JobSchedule.objects.create(name="billing:invoice-sync", paused=True)
    html = admin_client.get(LIST).content.decode()
    assert html.count('class="dj-badge dj-paused"') == 2
    assert "this queue is paused" in html and "this recurring job is paused" in html


def test_the_dashboard_lists_queues_with_their_state(admin_client):
    PausedQueue.objects.create(queue="idle-queue")
    html = admin_client.get(DASHBOARD).content.decode()
    assert '<tr data-dj-queue="default">' in html
    idle = html[html.index('<tr data-dj-queue="idle-queue">'):]
    assert "paused" in idle[:idle.index("</tr>")]


# -- failure triage -----------------------------------------------------------------------------


def test_failures_are_grouped_by_name_and_exception_with_counts_and_the_latest(
    admin_client, make_job
):
    now = timezone.now()
    for minutes in (50, 40, 30):
        make_job("jobsapp.explode", "failed", finished_at=now - timedelta(minutes=minutes),
                 error=f"RuntimeError: card declined {minutes}\n\nTraceback ...")
    latest = make_job("jobsapp.explode", "failed", finished_at=now - timedelta(minutes=5),
                      error="KeyError: 'customer'\n\nTraceback ...", attempt=1, max_attempts=3)
    make_job("jobsapp.explode", "scheduled", rescheduled_from=latest, attempt=2, max_attempts=3)
    make_job("jobsapp.flaky", "failed", finished_at=now - timedelta(days=3),
             error="ValueError: too old for the window")
    html = admin_client.get(FAILURES).content.decode()
    groups = admin_client.get(FAILURES).context["groups"]
    assert [(g.name, g.kind, g.count, g.retrying) for g in groups] == [
        ("jobsapp.explode", "RuntimeError", 3, 0),
        ("jobsapp.explode", "KeyError", 1, 1),
    ]
    assert "card declined 30" in html  # the latest line of the group
    assert f'href="/admin/django_jobs/job/{latest.pk}/change/"' in html
    assert "0 final · 1 will retry" in html
    week = admin_client.get(FAILURES, {"hours": 168}).context["groups"]
    assert ("jobsapp.flaky", "ValueError") in {(g.name, g.kind) for g in week}


def test_the_failures_page_needs_the_view_permission(staff):
    assert staff().get(FAILURES).status_code == 403
    assert staff("view_job").get(FAILURES).status_code == 200


def test_the_list_shows_the_first_line_of_an_error_and_tells_retries_from_final_failures(
    admin_client, make_job
):
    retried = make_job("jobsapp.explode", "failed", attempt=1, max_attempts=2,
                       error="RuntimeError: <b>boom</b>\n\nTraceback (most recent call last):")
    make_job("jobsapp.explode", "scheduled", rescheduled_from=retried, attempt=2, max_attempts=2)
    make_job("jobsapp.explode", "failed", attempt=2, max_attempts=2,
             error="RuntimeError: second\n\nTraceback")
    html = admin_client.get(LIST).content.decode()
    assert "RuntimeError: &lt;b&gt;boom&lt;/b&gt;" in html and "<b>boom</b>" not in html
    assert "Traceback (most recent" not in html
    assert f'data-dj-job="{retried.pk}" data-dj-field="retry">will retry<' in html
    assert html.count('data-dj-field="retry">final<') == 1


def test_no_retry_is_offered_for_a_failed_attempt_whose_chain_later_succeeded(
    admin_client, make_job
):
    first = make_job("jobsapp.flaky", "failed", attempt=1, max_attempts=3)
    second = make_job("jobsapp.flaky", "failed", attempt=2, max_attempts=3,
                      rescheduled_from=first)
    make_job("jobsapp.flaky", "succeeded", attempt=3, max_attempts=3, rescheduled_from=second)
    lonely = make_job("jobsapp.flaky", "failed")
    page = admin_client.get(reverse("admin:django_jobs_job_change", args=[first.pk]))
    assert 'data-action="retry"' not in page.content.decode()
    lonely_page = admin_client.get(reverse("admin:django_jobs_job_change", args=[lonely.pk]))
    assert 'data-action="retry"' in lonely_page.content.decode()
    response = admin_client.post(button(first, "retry"))
    assert "already succeeded" in texts(response)[0]
    response = admin_client.post(LIST, {"action": "retry_jobs",
                                        "_selected_action": [str(first.pk), str(lonely.pk)]})
    assert Job.objects.filter(rescheduled_from=lonely).count() == 1
    assert not Job.objects.filter(rescheduled_from=first).exclude(pk=second.pk).exists()
    assert any("chain later succeeded" in text for text in texts(response))


# -- the admin log ------------------------------------------------------------------------------


def test_every_button_writes_the_admin_log(admin_client, admin_user, make_job):
    scheduled = make_job(run_at=timezone.now() + timedelta(hours=1))
    admin_client.post(button(scheduled, "run_now"))
    admin_client.post(button(scheduled, "cancel"))
    failed = make_job("jobsapp.explode", "failed")
    admin_client.post(button(failed, "retry"))
    new = Job.objects.get(rescheduled_from=failed)
    assert [e.change_message for e in entries(scheduled.pk)] == [
        "Made due now (run now).", "Cancelled before it started."]
    assert entries(failed.pk)[0].change_message == f"Retried as a new run {new.pk}."
    assert entries(new.pk)[0].change_message == f"Created as a retry of {failed.pk}."
    assert {e.user_id for e in LogEntry.objects.all()} == {admin_user.pk}
    # The job's HISTORY page and the admin index's "Recent actions" show them.
    history = admin_client.get(reverse("admin:django_jobs_job_history", args=[scheduled.pk]))
    assert "Cancelled before it started." in history.content.decode()
    assert "jobsapp.noop" in admin_client.get(reverse("admin:index")).content.decode()


def test_bulk_actions_and_the_dashboard_write_the_admin_log(admin_client, make_job):
    running = make_job("jobsapp.cancellable", "running")
    done = make_job(status="succeeded")
    admin_client.post(LIST, {"action": "cancel_jobs",
                             "_selected_action": [str(running.pk), str(done.pk)]})
    assert [e.change_message for e in entries(running.pk)] == ["Cancelled (admin action)."]
    assert entries(done.pk) == []  # nothing happened to it, nothing is logged
    admin_client.post(reverse("admin:django_jobs_job_dashboard_run"), {"name": "jobsapp.noop"})
    started = Job.objects.get(name="jobsapp.noop", status="scheduled")
    assert entries(started.pk)[0].change_message.startswith("Started from the job types")


def test_releasing_a_lock_writes_the_admin_log(admin_client, make_job):
    holder = make_job("jobsapp.locked_sleep", "running")
    JobTypeLock.objects.create(key="jobsapp.locked_sleep", job=holder, claim_id=uuid.uuid4(),
                               worker="h:1", locked_until=timezone.now() - timedelta(minutes=1))
    admin_client.post(reverse("admin:django_jobs_jobtypelock_release",
                              args=[quote("jobsapp.locked_sleep")]))
    assert [e.change_message for e in entries("jobsapp.locked_sleep")] == [
        "Released the expired lock."]


# -- short ids, new rows, live job page, words ----------------------------------------------------


def test_admin_search_finds_a_job_by_the_short_id_it_shows(admin_client, make_job):
    job = make_job("jobsapp.echo")
    make_job("jobsapp.noop")
    found = admin_client.get(LIST, {"q": str(job.pk)[:8]}).context["cl"].result_list
    assert [j.pk for j in found] == [job.pk]
    assert list(admin_client.get(LIST, {"q": "abc"}).context["cl"].result_list) == []


def test_the_new_rows_endpoint_counts_jobs_created_since_under_the_list_filters(
    admin_client, make_job
):
    since = timezone.now()
    make_job("jobsapp.echo", created_at=since - timedelta(minutes=1))
    make_job("jobsapp.echo", created_at=since + timedelta(seconds=1))
    make_job("jobsapp.noop", created_at=since + timedelta(seconds=1))
    response = admin_client.get(NEW_ROWS, {"since": since.isoformat()})
    assert response.json() == {"count": 2, "more": False}
    filtered = admin_client.get(NEW_ROWS, {"since": since.isoformat(), "name": "jobsapp.echo"})
    assert filtered.json()["count"] == 1
    assert admin_client.get(NEW_ROWS, {"since": "yesterday"}).status_code == 400


def test_the_new_rows_endpoint_needs_the_view_permission_and_changes_nothing(staff, make_job):
    assert staff().get(NEW_ROWS, {"since": timezone.now().isoformat()}).status_code == 403
    config = staff("view_job").get(LIST).context["dj_live"]
    assert config["new_url"] == NEW_ROWS and config["since"]


def test_the_live_state_carries_the_title_and_the_finish_time(admin_client, make_job):
    job = make_job("jobsapp.cancellable", "cancelled")
    state = admin_client.get(LIVE, {"id": str(job.pk)}).json()["jobs"][0]
    assert state["title"] == f"jobsapp.cancellable (cancelled) {job.pk}"
    assert state["finished_at"] == timezone.localtime(job.finished_at).strftime(
        "%Y-%m-%d %H:%M:%S")
    page = admin_client.get(reverse("admin:django_jobs_job_change", args=[job.pk]))
    html = page.content.decode()
    assert f'data-dj-job="{job.pk}" data-dj-field="title"' in html
    assert f'data-dj-job="{job.pk}" data-dj-field="finished_at"' in html


def test_cancel_buttons_ask_for_confirmation_and_name_their_run(admin_client, make_job):
    running = make_job("jobsapp.cancellable", "running")
    other = make_job("jobsapp.cancellable", "running")
    page = admin_client.get(reverse("admin:django_jobs_job_change", args=[running.pk]))
    assert f'data-dj-confirm="Cancel jobsapp.cancellable {str(running.pk)[:8]}?"' in (
        page.content.decode())
    html = admin_client.get(DASHBOARD).content.decode()
    for run in (running, other):
        assert f'aria-label="Cancel run {str(run.pk)[:8]} of jobsapp.cancellable"' in html


def test_dashboard_messages_keep_the_case_of_the_job_name(admin_client, make_job):
    make_job("jobsapp.noop", run_at=timezone.now() - timedelta(seconds=1))
    response = admin_client.post(reverse("admin:django_jobs_job_dashboard_run"),
                                 {"name": "jobsapp.noop"}, follow=True)
    assert "jobsapp.noop is already due" in response.content.decode()
    assert "Jobsapp.noop" not in response.content.decode()


def test_the_dashboard_says_just_now_and_shows_seconds(admin_client, make_job):
    now = timezone.now()
    make_job("jobsapp.noop", "cancelled", started_at=None, finished_at=now)
    make_job("jobsapp.echo", "succeeded", started_at=now - timedelta(seconds=3),
             finished_at=now - timedelta(seconds=2))
    html = admin_client.get(DASHBOARD).content.decode()
    assert "0\xa0minutes ago" not in html and "took \u2014" not in html
    assert "just now" in html and "never started" in html and "took 1 s" in html


@pytest.mark.parametrize("field", ["run_at", "created_at"])
def test_times_on_the_job_page_show_seconds(admin_client, make_job, field):
    job = make_job()
    html = admin_client.get(reverse("admin:django_jobs_job_change", args=[job.pk])).content
    assert timezone.localtime(getattr(job, field)).strftime("%Y-%m-%d %H:%M:%S") in html.decode()
