"""Operators in a real browser: pause and resume, failure groups, new rows appearing without a
reload, and pages that fit a 1280 px screen and a 390 px phone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from django_jobs import clock
from django_jobs.models import Job, JobSchedule, PausedQueue

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}


@pytest.fixture
def sized_page(browser):
    """A page of a given viewport, with the admin's navigation sidebar as a new user has it."""
    contexts = []

    def make(viewport: dict, color_scheme: str = "light"):
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme,
                                      is_mobile=viewport["width"] < 500)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def busy_rows() -> None:
    """Rows in every state, with long names, messages and errors: the widest a list gets."""
    now = clock.now()
    for n in range(4):
        Job.objects.create(
            name="jobsapp.progress_cancellable", status="running", progress=0.1 * (n + 1),
            progress_message=f"customer {n}: importing invoices, credit notes and payments " * 2,
            started_at=now - timedelta(minutes=n + 1), eta=now + timedelta(minutes=5),
            worker=f"worker-host-{n}.example.internal:{4000 + n}", queue="mail", priority=5,
            locked_until=now + timedelta(minutes=5),
        )
    Job.objects.create(
        name="billing:invoice-sync", status="failed", attempt=2, max_attempts=3,
        started_at=now - timedelta(seconds=9), finished_at=now - timedelta(seconds=8),
        error="RuntimeError: the payment provider answered 503 Service Unavailable after 3 "
              "tries on https://payments.example.com/api/v2/invoices/2026-05/settle\n\nTraceback",
    )
    Job.objects.create(name="jobsapp.echo", run_at=now + timedelta(hours=2), queue="mail")


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def table_right(page, selector: str) -> float:
    return page.evaluate(f"document.querySelector('{selector}').getBoundingClientRect().right")


def test_pause_and_resume_a_recurring_job_and_a_queue_from_the_dashboard(
    live_server, new_page, login, screenshot
):
    Job.objects.create(name="billing:invoice-sync", run_at=clock.now() + timedelta(minutes=20))
    Job.objects.create(name="jobsapp.echo")
    page = login(new_page())
    page.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    row = page.locator('tr[data-dj-type="billing:invoice-sync"]')
    row.locator('button[data-action="pause"]').click()
    expect(page.locator(".messagelist")).to_contain_text(
        "Paused the recurring job billing:invoice-sync")
    expect(row.locator(".dj-paused")).to_have_text("paused")
    assert JobSchedule.objects.get(name="billing:invoice-sync").paused
    page.locator('tr[data-dj-queue="default"] button[data-action="pause-queue"]').click()
    expect(page.locator(".messagelist")).to_contain_text("Paused the queue default")
    assert PausedQueue.objects.filter(queue="default").exists()
    screenshot(page, "dashboard-paused-light", full_page=True)
    dark = login(new_page("dark"), username="night-operator")
    dark.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    screenshot(dark, "dashboard-paused-dark", full_page=True)

    page.goto(f"{live_server.url}/admin/django_jobs/job/")
    mail_row = page.locator("#result_list tr", has_text="jobsapp.echo")
    expect(mail_row.locator(".field-queue_display .dj-paused")).to_have_text("paused")
    screenshot(page, "job-list-paused-light")

    page.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    page.locator('tr[data-dj-queue="default"] button[data-action="resume-queue"]').click()
    expect(page.locator(".messagelist")).to_contain_text("Resumed the queue default")
    row.locator('button[data-action="resume"]').click()
    expect(page.locator(".messagelist")).to_contain_text("Resumed the recurring job")
    expect(row.locator(".dj-paused")).to_have_count(0)
    assert not PausedQueue.objects.exists()
    assert not JobSchedule.objects.get(name="billing:invoice-sync").paused


def test_a_viewer_gets_no_pause_button_and_a_forged_post_gets_403(live_server, new_page, login):
    page = login(new_page(), username="viewer", permissions=("view_job",))
    page.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    expect(page.locator('button[data-action="pause-queue"]')).to_have_count(0)
    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.replace(/.*csrftoken=([^;]+).*/, "$1");
            const body = new URLSearchParams({csrfmiddlewaretoken: token, kind: "queue",
                                              name: "default", action: "pause"});
            const response = await fetch(url, {method: "POST", body, credentials: "same-origin"});
            return response.status;
        }""",
        f"{live_server.url}/admin/django_jobs/job/pause/",
    )
    assert status == 403
    assert not PausedQueue.objects.exists()


def test_failures_are_grouped_with_counts_and_the_latest(live_server, new_page, login,
                                                         screenshot):
    now = clock.now()
    for n in range(3):
        Job.objects.create(name="jobsapp.explode", status="failed",
                           finished_at=now - timedelta(minutes=n), started_at=now,
                           error=f"RuntimeError: card declined for order {n}\n\nTraceback")
    first = Job.objects.create(name="jobsapp.flaky", status="failed", attempt=1, max_attempts=3,
                               finished_at=now, started_at=now,
                               error="ConnectionError: upstream timed out\n\nTraceback")
    Job.objects.create(name="jobsapp.flaky", rescheduled_from=first, attempt=2, max_attempts=3)
    for scheme in ("light", "dark"):
        page = login(new_page(scheme), username=f"triage-{scheme}")
        page.goto(f"{live_server.url}/admin/django_jobs/job/failures/")
        groups = page.locator("#dj-failures tbody tr")
        expect(groups).to_have_count(2)
        expect(groups.nth(0)).to_contain_text("RuntimeError")
        expect(groups.nth(0).locator(".dj-count strong")).to_have_text("3")
        expect(groups.nth(1)).to_contain_text("0 final · 1 will retry")
        screenshot(page, f"failures-{scheme}", full_page=True)
    groups.nth(0).locator("a.dj-name").click()
    expect(page).to_have_url(re.compile(r"status__exact=failed"))
    expect(page.locator("#result_list .dj-error-line").first).to_contain_text("RuntimeError")


def test_new_jobs_are_announced_on_the_list_without_a_reload(live_server, new_page, login,
                                                            screenshot):
    Job.objects.create(name="jobsapp.echo", status="succeeded", started_at=clock.now(),
                       finished_at=clock.now())
    page = login(new_page())
    page.goto(f"{live_server.url}/admin/django_jobs/job/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.evaluate("window.__sameDocument = true")
    for n in range(2):
        Job.objects.create(name="jobsapp.noop", data={"n": n})
    notice = page.locator("#dj-new-rows")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("2 new jobs")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "job-list-new-rows-light")
    notice.locator("a").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    expect(page.locator("#dj-new-rows")).to_be_hidden()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_list_and_the_dashboard_fit_1280_px(live_server, sized_page, login, screenshot,
                                                scheme):
    busy_rows()
    PausedQueue.objects.create(queue="mail")
    page = login(sized_page(LAPTOP, scheme), username=f"laptop-{scheme}")
    page.goto(f"{live_server.url}/admin/django_jobs/job/")
    expect(page.locator("#result_list tbody tr")).to_have_count(6)
    assert page.locator("#nav-sidebar").is_visible()  # the sidebar open, as it is by default
    assert page_width(page) <= 1280
    # Every column is on screen: the table does not scroll inside its box either.
    assert table_right(page, "#result_list") <= 1280
    expect(page.locator("th.column-run_at_display")).to_be_in_viewport()
    screenshot(page, f"job-list-1280-{scheme}")
    page.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    row = page.locator('tr[data-dj-type="jobsapp.progress_cancellable"]')
    expect(row.locator(".dj-run")).to_have_count(4)
    assert page_width(page) <= 1280
    assert table_right(page, "#dj-types") <= 1280
    # Each Cancel sits in its run's block and says which run it cancels.
    for run in row.locator(".dj-run").all():
        button = run.locator('button[data-action="cancel"]')
        label = button.get_attribute("aria-label")
        short = run.locator(".dj-id").inner_text()
        assert label == f"Cancel run {short} of jobsapp.progress_cancellable"
        expect(button).to_have_text(f"Cancel {short}")
    screenshot(page, f"dashboard-1280-{scheme}", full_page=True)


def test_the_list_and_the_dashboard_fit_a_phone(live_server, sized_page, login, screenshot):
    busy_rows()
    page = login(sized_page(PHONE), username="phone")
    for path, name in (("job/", "job-list"), ("job/types/", "dashboard"),
                       ("job/failures/", "failures")):
        page.goto(f"{live_server.url}/admin/django_jobs/{path}")
        assert page_width(page) <= PHONE["width"], path
        screenshot(page, f"phone-{name}-light", full_page=True)
    dark = login(sized_page(PHONE, "dark"), username="phone-dark")
    dark.goto(f"{live_server.url}/admin/django_jobs/job/types/")
    assert page_width(dark) <= PHONE["width"]
    screenshot(dark, "phone-dashboard-dark", full_page=True)
