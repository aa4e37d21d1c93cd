"""Cancel, retry and run now: the API users call, one permission each, POST and CSRF only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from django_jobs import clock
from django_jobs.models import Job

LIST = reverse("admin:django_jobs_job_changelist")


def act(client, action: str, *jobs: Job, **extra):
    data = {"action": action, "_selected_action": [str(job.pk) for job in jobs], **extra}
    return client.post(LIST, data, follow=True)


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)] or [
        str(m) for m in response.context["messages"]
    ]


def button(job: Job, action: str) -> str:
    return reverse(f"admin:django_jobs_job_{action}", args=[job.pk])


# -- bulk actions -----------------------------------------------------------------------------


def test_cancel_cancels_scheduled_jobs_and_asks_running_ones_to_stop(admin_client, make_job):
    scheduled = make_job(run_at=timezone.now() + timedelta(hours=1))
    running = make_job("jobsapp.cancellable", "running")
    done = make_job(status="succeeded")
    response = act(admin_client, "cancel_jobs", scheduled, running, done)
    scheduled.refresh_from_db()
    running.refresh_from_db()
    done.refresh_from_db()
    assert scheduled.status == "cancelled"
    assert running.status == "running" and running.cancel_requested_at is not None
    assert done.status == "succeeded"
    messages = texts(response)
    assert "Cancelled 1 scheduled job." in messages
    assert any(m.startswith("Asked 1 running job to stop") for m in messages)
    assert any(m.startswith("1 job was left alone") for m in messages)


def test_retry_makes_a_new_run_linked_to_the_finished_one(admin_client, make_job, admin_user):
    failed = make_job("jobsapp.flaky", "failed", data={"fail_times": 0}, queue="mail",
                      priority=3)
    response = act(admin_client, "retry_jobs", failed)
    new = Job.objects.get(rescheduled_from=failed)
    assert (new.status, new.data, new.queue, new.priority) == ("scheduled", {"fail_times": 0},
                                                               "mail", 3)
    assert new.created_by_id == admin_user.pk
    assert any(m.startswith("Retried jobsapp.flaky as a new run") for m in texts(response))


@pytest.mark.parametrize("status", ["running", "scheduled"])
def test_retry_of_an_unfinished_job_is_refused_with_a_message(admin_client, make_job, status):
    job = make_job("jobsapp.cancellable", status)
    response = act(admin_client, "retry_jobs", job)
    assert Job.objects.count() == 1
    assert any(m.startswith("Refused to retry 1 job that is not finished")
               for m in texts(response))


def test_run_now_makes_a_scheduled_job_due(admin_client, make_job):
    later = make_job(run_at=timezone.now() + timedelta(days=1))
    response = act(admin_client, "run_jobs_now", later)
    later.refresh_from_db()
    assert later.run_at <= clock.now()  # the clock run_at is written with
    assert any("is due now" in m for m in texts(response))


@pytest.mark.parametrize("status", ["running", "succeeded"])
def test_run_now_of_a_job_that_is_not_scheduled_is_refused(admin_client, make_job, status):
    job = make_job("jobsapp.cancellable", status)
    before = Job.objects.values_list("run_at", "status").get(pk=job.pk)
    response = act(admin_client, "run_jobs_now", job)
    assert Job.objects.values_list("run_at", "status").get(pk=job.pk) == before
    assert Job.objects.count() == 1
    assert any(m.startswith("Refused to run 1 job that is not scheduled")
               for m in texts(response))


# -- permissions ------------------------------------------------------------------------------

ACTIONS = {"cancel_jobs": "cancel_job", "retry_jobs": "retry_job", "run_jobs_now": "run_job"}


def offered_actions(client) -> set[str]:
    response = client.get(LIST)
    assert response.status_code == 200
    form = response.context["action_form"]
    if form is None:  # no action at all: Django leaves out the form
        return set()
    return {name for name, _ in form.fields["action"].choices if name}


def test_a_viewer_is_offered_no_action(staff):
    assert offered_actions(staff("view_job")) == set()


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_action_is_offered_only_with_its_own_permission(staff, action):
    assert offered_actions(staff("view_job", ACTIONS[action])) == {action}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_posting_an_action_without_its_permission_changes_nothing(staff, make_job, action):
    others = [perm for name, perm in ACTIONS.items() if name != action]
    client = staff("view_job", *others)
    scheduled = make_job(run_at=timezone.now() + timedelta(hours=1))
    finished = make_job(status="failed")
    before = list(Job.objects.order_by("pk").values_list("pk", "status", "run_at"))
    act(client, action, scheduled, finished)
    assert list(Job.objects.order_by("pk").values_list("pk", "status", "run_at")) == before


@pytest.mark.parametrize(("action", "status"),
                         [("cancel", "scheduled"), ("retry", "failed"), ("run_now", "scheduled")])
def test_buttons_need_their_permission(staff, make_job, action, status):
    job = make_job(status=status, run_at=timezone.now() + timedelta(hours=1))
    client = staff("view_job")
    assert client.post(button(job, action)).status_code == 403
    html = client.get(reverse("admin:django_jobs_job_change", args=[job.pk])).content.decode()
    assert "data-action=" not in html
    assert Job.objects.count() == 1
    assert Job.objects.get(pk=job.pk).status == status


def test_a_user_without_view_permission_sees_nothing(staff, make_job):
    job = make_job()
    client = staff("cancel_job")
    assert client.get(LIST).status_code == 403
    assert client.get(reverse("admin:django_jobs_job_live"), {"id": str(job.pk)}).status_code \
        == 403
    assert client.get(reverse("admin:django_jobs_job_dashboard")).status_code == 403


# -- buttons: POST with CSRF only -------------------------------------------------------------


def test_buttons_do_the_same_as_the_actions(admin_client, make_job):
    scheduled = make_job(run_at=timezone.now() + timedelta(hours=1))
    response = admin_client.post(button(scheduled, "run_now"), follow=True)
    scheduled.refresh_from_db()
    assert scheduled.run_at <= clock.now()  # the clock run_at is written with
    assert any("is due now" in m for m in texts(response))
    response = admin_client.post(button(scheduled, "cancel"), follow=True)
    scheduled.refresh_from_db()
    assert scheduled.status == "cancelled"
    assert any(m.startswith("Cancelled jobsapp.noop before it started") for m in texts(response))
    response = admin_client.post(button(scheduled, "retry"), follow=True)
    new = Job.objects.get(rescheduled_from=scheduled)
    assert response.redirect_chain[-1][0] == reverse("admin:django_jobs_job_change",
                                                     args=[new.pk])


def test_buttons_refuse_a_second_run_of_a_running_job(admin_client, make_job):
    running = make_job("jobsapp.cancellable", "running")
    for action in ("retry", "run_now"):
        response = admin_client.post(button(running, action), follow=True)
        assert any(m.startswith("Refused") for m in texts(response)), action
    assert Job.objects.count() == 1
    assert Job.objects.get().status == "running"


@pytest.mark.parametrize("action", ["cancel", "retry", "run_now"])
def test_buttons_change_nothing_on_get(admin_client, make_job, action):
    job = make_job(status="failed" if action == "retry" else "scheduled")
    assert admin_client.get(button(job, action)).status_code == 405
    assert Job.objects.count() == 1
    assert Job.objects.get().status == job.status


@pytest.mark.parametrize("action", ["cancel", "retry", "run_now"])
def test_buttons_refuse_a_post_without_csrf_token(staff, make_job, action):
    client = staff("view_job", "cancel_job", "retry_job", "run_job", csrf=True)
    job = make_job(status="failed" if action == "retry" else "scheduled",
                   run_at=timezone.now() + timedelta(hours=1))
    before = list(Job.objects.values_list("pk", "status", "run_at"))
    assert client.post(button(job, action)).status_code == 403
    assert list(Job.objects.values_list("pk", "status", "run_at")) == before


def test_actions_refuse_a_post_without_csrf_token(staff, make_job):
    client = staff("view_job", "cancel_job", csrf=True)
    job = make_job()
    response = client.post(LIST, {"action": "cancel_jobs", "_selected_action": [str(job.pk)]})
    assert response.status_code == 403
    assert Job.objects.get().status == "scheduled"


def test_with_a_csrf_token_the_button_works(staff, make_job):
    client = staff("view_job", "cancel_job", csrf=True)
    job = make_job()
    page = client.get(reverse("admin:django_jobs_job_change", args=[job.pk]))
    token = page.context["csrf_token"]
    assert client.post(button(job, "cancel"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert Job.objects.get().status == "cancelled"


def test_the_next_redirect_stays_on_this_site(admin_client, make_job):
    job = make_job()
    response = admin_client.post(button(job, "cancel"), {"next": "https://evil.example/"})
    assert response["Location"] == reverse("admin:django_jobs_job_change", args=[job.pk])


# -- live endpoint ----------------------------------------------------------------------------


def test_the_live_endpoint_reports_state_of_the_asked_jobs(admin_client, make_job):
    running = make_job("jobsapp.progress_loop", "running", progress=0.5,
                       progress_message="<b>half</b>")
    other = make_job()
    response = admin_client.get(reverse("admin:django_jobs_job_live"),
                                {"id": [str(running.pk), "not-a-uuid"]})
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    (state,) = response.json()["jobs"]
    assert state["id"] == str(running.pk) and str(other.pk) != state["id"]
    assert state["status"] == "running" and state["percent"] == 50 and state["live"] is True
    assert state["message"] == "<b>half</b>"  # text for textContent, never innerHTML
    assert state["elapsed"].startswith("2 min")


def test_the_live_endpoint_needs_a_staff_login(client, make_job):
    job = make_job()
    response = client.get(reverse("admin:django_jobs_job_live"), {"id": str(job.pk)})
    assert response.status_code == 302
    assert "/login/" in response["Location"]
