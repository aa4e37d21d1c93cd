"""The admin in a real browser: live progress from a real worker, cancel, and permissions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from django_jobs import clock
from django_jobs.models import Job, JobTypeLock

from ..conftest import wait_for
from ..jobsapp.jobs import explode, noop, progress_cancellable

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def bar_value(page, job: Job) -> float:
    return float(page.locator(f'[data-dj-job="{job.pk}"][data-dj-field="progress"] progress')
                 .first.get_attribute("value") or 0)


def wait_for_bar_above(page, job: Job, threshold: float) -> None:
    page.wait_for_function(
        """([id, threshold]) => {
            const bar = document.querySelector(
                `[data-dj-job="${id}"][data-dj-field="progress"] progress`);
            return bar && Number(bar.value) > threshold;
        }""",
        arg=[str(job.pk), threshold],
    )


def test_a_running_job_s_bar_advances_live_and_cancel_ends_it_cancelled(
    live_server, start_worker, new_page, login, screenshot
):
    job = progress_cancellable.enqueue(seconds=40, steps=400)
    page = login(new_page())
    start_worker("--concurrency", "2")
    page.goto(f"{live_server.url}/admin/django_jobs/job/")
    status = page.locator(f'[data-dj-job="{job.pk}"][data-dj-field="status"]')
    expect(status).to_have_text("running")
    # The bar moves without a page reload: the same document sees two increasing values.
    page.evaluate("window.__sameDocument = true")
    wait_for_bar_above(page, job, 2)
    first = bar_value(page, job)
    wait_for_bar_above(page, job, first)
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator(f'[data-dj-job="{job.pk}"][data-dj-field="message"]')).to_contain_text(
        re.compile(r"invoice \d+ of 400"))
    expect(page.locator(f'[data-dj-job="{job.pk}"][data-dj-field="elapsed"]')).to_have_text(
        re.compile(r"\d"))
    screenshot(page, "job-list-light")

    page.click(f'a[href$="/django_jobs/job/{job.pk}/change/"]')
    expect(page.locator("h1")).to_contain_text("View job")
    expect(page.locator(".field-finished_at_display .readonly")).to_have_text("\u2014")
    # Cancel asks first; dismissing it changes nothing, accepting it posts.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click('button[data-action="cancel"]')
    assert Job.objects.get(pk=job.pk).cancel_requested_at is None
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('button[data-action="cancel"]')
    expect(page.locator(".messagelist")).to_contain_text(
        "Asked jobsapp.progress_cancellable to stop")
    # Live refresh again: "cancelling", then "cancelled" once the job saw the request.
    expect(page.locator('.field-status_badge [data-dj-field="status"]')).to_have_text(
        "cancelled")
    expect(page.locator('button[data-action="cancel"]')).to_be_hidden()
    # The heading, the tab's title and the finish time follow the badge.
    expect(page.locator('h2[data-dj-field="title"]')).to_contain_text("(cancelled)")
    expect(page).to_have_title(re.compile(r"\(cancelled\)"))
    expect(page.locator(".field-finished_at_display .readonly")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    job.refresh_from_db()
    assert job.status == "cancelled"
    # Nothing runs any more: the page stops polling.
    expect(page.locator('[data-dj-field="progress"][data-dj-live="true"]')).to_have_count(0)


def test_the_dashboard_shows_the_running_run_and_cancels_it(
    live_server, start_worker, new_page, login, screenshot
):
    noop.enqueue()
    start_worker()
    wait_for(lambda: Job.objects.filter(status="succeeded").exists(), timeout=20)
    explode.enqueue(message="card declined")
    wait_for(lambda: Job.objects.filter(status="failed").exists(), timeout=20)
    job = progress_cancellable.enqueue(seconds=60, steps=600)
    page = login(new_page())
    page.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    row = page.locator('tr[data-dj-type="jobsapp.progress_cancellable"]')
    expect(row.locator('[data-dj-field="status"]')).to_have_text("running")
    wait_for_bar_above(page, job, 1)
    expect(page.locator('tr[data-dj-type="jobsapp.noop"] .dj-status-succeeded')).to_be_visible()
    screenshot(page, "dashboard-light", full_page=True)
    dark = login(new_page("dark"), username="night-operator")
    dark.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    wait_for_bar_above(dark, job, 1)
    screenshot(dark, "dashboard-dark", full_page=True)
    dark.goto(f"{live_server.url}/admin/django_jobs/job/")
    wait_for_bar_above(dark, job, 1)
    screenshot(dark, "job-list-dark")

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator('button[data-action="cancel"]').click()
    expect(page.locator(".messagelist")).to_contain_text("Asked jobsapp.progress_cancellable")
    expect(page).to_have_url(re.compile(r"/admin/django_jobs/job/types/$"))
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "cancelled", timeout=15)


def test_a_user_without_the_permission_cannot_cancel(live_server, new_page, login):
    job = Job.objects.create(name="jobsapp.cancellable", status="running",
                             started_at=clock.now(), worker="elsewhere:1",
                             locked_until=clock.now() + timedelta(minutes=5))
    page = login(new_page(), username="viewer", permissions=("view_job",))
    page.goto(f"{live_server.url}/admin/django_jobs/job/{job.pk}/change/")
    expect(page.locator('.field-status_badge [data-dj-field="status"]')).to_have_text("running")
    expect(page.locator('button[data-action="cancel"]')).to_have_count(0)
    page.goto(f"{live_server.url}/admin/django_jobs/job/")
    expect(page.locator('select[name="action"]')).to_have_count(0)
    page.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    expect(page.locator('button[data-action="cancel"]')).to_have_count(0)
    # Forging the POST (with a valid CSRF token) is refused too.
    status = page.evaluate(
        """async (url) => {
            const token = document.querySelector("[name=csrfmiddlewaretoken]")
                || {value: document.cookie.replace(/.*csrftoken=([^;]+).*/, "$1")};
            const body = new URLSearchParams({csrfmiddlewaretoken: token.value});
            const response = await fetch(url, {method: "POST", body, credentials: "same-origin"});
            return response.status;
        }""",
        f"{live_server.url}/admin/django_jobs/job/{job.pk}/cancel/",
    )
    assert status == 403
    job.refresh_from_db()
    assert job.cancel_requested_at is None


def test_payloads_and_errors_render_as_text_and_pages_look_right(
    live_server, new_page, login, screenshot
):
    evil = "<script>alert('payload')</script>"
    first = Job.objects.create(
        name="jobsapp.explode", status="failed", attempt=1, max_attempts=2,
        data={"message": evil, "customer": 42}, started_at=clock.now() - timedelta(seconds=3),
        finished_at=clock.now() - timedelta(seconds=2),
        error=("Traceback (most recent call last):\n"
               '  File "tests/jobsapp/jobs.py", line 58, in explode\n'
               f"    raise RuntimeError(message)\nRuntimeError: {evil}"),
    )
    second = first.retry()
    Job.objects.filter(pk=second.pk).update(status="succeeded", result={"invoices": 12},
                                            started_at=clock.now(), finished_at=clock.now())
    holder = Job.objects.create(name="billing:invoice-sync", status="running",
                                started_at=clock.now(), worker="web-1:4242", progress=0.3,
                                locked_until=clock.now() + timedelta(minutes=4))
    JobTypeLock.objects.create(key="billing:invoice-sync", job=holder, worker="web-1:4242",
                               locked_until=clock.now() + timedelta(minutes=4))
    dialogs = []
    for scheme in ("light", "dark"):
        page = login(new_page(scheme), username=f"op-{scheme}")
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{live_server.url}/admin/django_jobs/job/{first.pk}/change/")
        expect(page.locator(".field-payload pre")).to_contain_text(evil)
        expect(page.locator(".field-error_display pre")).to_contain_text(f"RuntimeError: {evil}")
        expect(page.locator(".dj-chain li")).to_have_count(2)
        screenshot(page, f"job-detail-{scheme}", full_page=True)
    page.goto(f"{live_server.url}/admin/django_jobs/jobtypelock/")
    expect(page.locator("#result_list")).to_contain_text("web-1:4242")
    screenshot(page, "locks-dark")
    page.goto(f"{live_server.url}/admin/django_jobs/jobtypelock/billing:invoice-sync/release/")
    expect(page.locator('input[name="confirm"]')).to_be_visible()
    screenshot(page, "lock-release-dark")
    assert dialogs == []
