"""The workers page: read-only, behind ``view_worker``; stale and lost processes flagged; running
jobs link to the process that holds them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from django_jobs import clock
from django_jobs.models import Worker

LIST = reverse("admin:django_jobs_worker_changelist")


@pytest.fixture
def make_worker(db):
    def make(host: str = "web-1", pid: int = 4121, *, silent: float = 0.0, **fields) -> Worker:
        beat = clock.now() - timedelta(seconds=silent)
        fields.setdefault("started_at", beat - timedelta(minutes=5))
        return Worker.objects.create(host=host, pid=pid, heartbeat_at=beat, **fields)

    return make


def change_url(worker: Worker) -> str:
    return reverse("admin:django_jobs_worker_change", args=[worker.pk])


def test_the_list_shows_each_process_with_its_figures(admin_client, make_worker):
    make_worker(queues=["mail", "reports"], concurrency=4, busy=3, version="0.1.0",
                kind="worker")
    html = admin_client.get(LIST).content.decode()
    for text in ("web-1:4121", "mail, reports", "3 / 4", "0.1.0", "dj-status-running",
                 "running rows", "ago"):
        assert text in html
    assert "stale" not in html.split('id="result_list"')[1]


def test_stale_and_lost_processes_are_flagged(admin_client, make_worker):
    make_worker("quiet", 1, silent=60)
    make_worker("gone", 2, silent=900, state="lost")
    rows = admin_client.get(LIST).content.decode().split("<tr")
    quiet = next(row for row in rows if "quiet:1" in row)
    gone = next(row for row in rows if "gone:2" in row)
    assert "dj-stale" in quiet and "1 min" in quiet
    assert "dj-status-failed" in gone and ">lost<" in gone and "dj-stale" not in gone


def test_view_permission_is_needed_and_nothing_can_be_changed(staff, make_worker):
    worker = make_worker()
    viewer = staff("view_worker")
    assert viewer.get(LIST).status_code == 200
    assert viewer.get(change_url(worker)).status_code == 200
    assert staff("view_job").get(LIST).status_code == 403
    assert staff("view_job").get(change_url(worker)).status_code == 403
    # Not even a superuser adds, edits or deletes a row that belongs to a process.
    everything = staff("view_worker", "add_worker", "change_worker", "delete_worker")
    assert everything.get(reverse("admin:django_jobs_worker_add")).status_code == 403
    delete = reverse("admin:django_jobs_worker_delete", args=[worker.pk])
    assert everything.post(delete, {"post": "yes"}).status_code == 403
    assert everything.post(change_url(worker), {"host": "x"}).status_code == 403
    assert Worker.objects.get(pk=worker.pk).host == "web-1"
    assert "delete_selected" not in everything.get(LIST).content.decode()


def test_anonymous_users_are_sent_to_the_login_page(client, make_worker):
    response = client.get(LIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_hostile_text_is_escaped(admin_client, make_worker):
    worker = make_worker("<script>alert(1)</script>", 1, queues=["<b>q</b>"],
                         version="<i>v</i>", names=["<img src=x>"])
    for url in (LIST, change_url(worker)):
        html = admin_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<b>q</b>" not in html and "<i>v</i>" not in html and "<img src=x>" not in html


def test_the_worker_page_lists_the_jobs_it_holds(admin_client, make_worker, make_job):
    worker = make_worker()
    job = make_job("jobsapp.echo", "running", owner=worker, worker=worker.label)
    make_job("jobsapp.echo", "running", worker="other:1")  # someone else's
    html = admin_client.get(change_url(worker)).content.decode()
    assert reverse("admin:django_jobs_job_change", args=[job.pk]) in html
    assert html.count('class="dj-held"') == 1
    assert html.count('<li><a href="/admin/django_jobs/job/') == 1


def test_running_jobs_link_to_their_worker_for_those_who_may_see_it(staff, make_worker, make_job):
    worker = make_worker()
    job = make_job("jobsapp.echo", "running", owner=worker, worker=worker.label)
    done = make_job("jobsapp.echo", "succeeded", owner=worker, worker=worker.label)
    link = change_url(worker)
    jobs_list = reverse("admin:django_jobs_job_changelist")
    job_page = reverse("admin:django_jobs_job_change", args=[job.pk])
    both = staff("view_job", "view_worker")
    html = both.get(jobs_list).content.decode()
    assert html.count(f'href="{link}"') == 1  # the running job only, not the finished one
    assert f'href="{link}"' in both.get(job_page).content.decode()
    done_page = reverse("admin:django_jobs_job_change", args=[done.pk])
    assert f'href="{link}"' not in both.get(done_page).content.decode()
    jobs_only = staff("view_job")
    for url in (jobs_list, job_page):
        html = jobs_only.get(url).content.decode()
        assert f'href="{link}"' not in html and "web-1:4121" in html
