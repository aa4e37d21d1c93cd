"""The job types dashboard: every registered job, a fixed number of queries, run now / cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_jobs import clock, registry
from django_jobs.conf import jobs_settings
from django_jobs.humanize import cron_words, every_words
from django_jobs.models import Job, JobSchedule

URL = reverse("admin:django_jobs_job_dashboard")
RUN = reverse("admin:django_jobs_job_dashboard_run")


def row_html(html: str, name: str) -> str:
    start = html.index(f'<tr data-dj-type="{name}">')
    return html[start:html.index("</tr>", start)]


def messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_every_registered_job_is_listed_with_its_schedule_in_words(admin_client):
    html = admin_client.get(URL).content.decode()
    for job_type in registry:
        assert f'<tr data-dj-type="{job_type.name}">' in html
    sync = row_html(html, "billing:invoice-sync")
    assert f"{cron_words('0 * * * *')} (UTC)" in sync and "<code>0 * * * *</code>" in sync
    assert every_words(timedelta(seconds=1)) in row_html(html, "jobsapp.scheduling_tick")
    assert "on demand" in row_html(html, "jobsapp.noop")
    assert "disabled" in row_html(html, "jobsapp.disabled_job")


def test_next_last_and_running_runs(admin_client, make_job):
    now = timezone.now()
    make_job("billing:invoice-sync", run_at=now + timedelta(minutes=30))
    make_job("billing:invoice-sync", run_at=now + timedelta(minutes=90))
    make_job("billing:invoice-sync", "failed", finished_at=now - timedelta(hours=2))
    last = make_job("billing:invoice-sync", "succeeded", started_at=now - timedelta(seconds=70),
                    finished_at=now - timedelta(seconds=5))
    running = make_job("billing:invoice-sync", "running", progress=0.25,
                       progress_message="invoice 12")
    JobSchedule.objects.create(name="billing:invoice-sync", paused=True)
    sync = row_html(admin_client.get(URL).content.decode(), "billing:invoice-sync")
    assert "in 29 min" in sync or "in 30 min" in sync
    assert f'href="/admin/django_jobs/job/{last.pk}/change/"' in sync
    assert "took 1 min 5 s" in sync
    assert f'data-dj-job="{running.pk}" data-dj-field="progress" data-dj-live="true"' in sync
    assert "25%" in sync and "invoice 12" in sync
    assert "paused" in sync
    assert 'data-action="cancel"' in sync


def _queries(client) -> int:
    with CaptureQueriesContext(connections[jobs_settings.DATABASE]) as captured:
        assert client.get(URL).status_code == 200
    return len(captured.captured_queries)


def test_the_query_count_does_not_depend_on_job_types_or_rows(admin_client, make_job):
    def add_rows(job_types):
        for job_type in job_types:
            make_job(job_type.name, "running")
            make_job(job_type.name, "succeeded")
            make_job(job_type.name, "scheduled")

    add_rows(list(registry)[:1])
    few = _queries(admin_client)
    add_rows(list(registry)[1:12])
    # session, user, running, next runs, last runs (2), paused schedules, paused queues,
    # limits (slots held, rate tokens used)
    assert _queries(admin_client) == few == 10


def test_run_now_enqueues_a_run_due_now(admin_client, admin_user):
    response = admin_client.post(RUN, {"name": "jobsapp.noop"})
    assert response["Location"] == URL
    job = Job.objects.get()
    assert (job.name, job.status, job.created_by_id) == ("jobsapp.noop", "scheduled",
                                                         admin_user.pk)
    assert job.run_at <= clock.now()  # the clock run_at is written with
    assert messages(response)[0].startswith("Queued jobsapp.noop to run now")


@pytest.mark.parametrize(("name", "state", "refusal"), [
    ("jobsapp.cancellable", "running", "is already running"),
    ("jobsapp.cancellable", "due", "is already due"),
    ("jobsapp.disabled_job", None, "is disabled"),
    ("jobsapp.record", None, "needs arguments"),
    ("jobsapp.<nope>", None, "No job named jobsapp.<nope>"),
])
def test_run_now_is_refused_rather_than_making_a_second_run(admin_client, make_job, name,
                                                             state, refusal):
    if state == "running":
        make_job(name, "running")
    elif state == "due":
        make_job(name, "scheduled")
    before = Job.objects.count()
    response = admin_client.post(RUN, {"name": name})
    assert Job.objects.count() == before
    assert refusal in messages(response)[0]


def test_run_now_needs_permission_post_and_csrf(staff):
    assert staff("view_job").post(RUN, {"name": "jobsapp.noop"}).status_code == 403
    assert staff("view_job", "run_job").get(RUN, {"name": "jobsapp.noop"}).status_code == 405
    assert staff("view_job", "run_job", csrf=True).post(RUN, {"name": "jobsapp.noop"}) \
        .status_code == 403
    assert not Job.objects.exists()
    html = staff("view_job").get(URL).content.decode()
    assert 'data-action="run-now"' not in html and 'data-action="cancel"' not in html


def test_the_app_index_and_the_job_list_link_to_the_dashboard(admin_client):
    index = admin_client.get(reverse("admin:app_list", args=["django_jobs"])).content.decode()
    assert f'href="{URL}"' in index
    listing = admin_client.get(reverse("admin:django_jobs_job_changelist")).content.decode()
    assert f'href="{URL}"' in listing
    assert f'href="{reverse("admin:django_jobs_jobtypelock_changelist")}"' in listing
