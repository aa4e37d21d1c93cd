"""The overview and the workers page in a real browser: they fit a 1280 px screen in the light
and the dark theme, the charts draw with the theme's colours, and screenshots for docs/admin.md."""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from django_jobs import clock
from django_jobs.models import Job, JobSchedule, PausedQueue, Worker

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1280, "height": 800}
NAMES = ("billing:invoice-sync", "mail.send_digest", "reports.build_monthly_report",
         "search.reindex_catalogue")


@pytest.fixture
def laptop(browser):
    contexts = []

    def make(color_scheme: str):
        context = browser.new_context(viewport=LAPTOP, color_scheme=color_scheme)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def a_busy_day() -> None:
    """A day of finished runs, some failures, due and running jobs and four workers."""
    now = clock.now()
    rng = random.Random(3)
    rows = []
    for n in range(900):
        ago = timedelta(minutes=rng.random() ** 2 * 24 * 60)
        end = now - ago
        failed = rng.random() < (0.25 if timedelta(hours=5) < ago < timedelta(hours=6) else 0.04)
        rows.append(Job(
            name=NAMES[n % len(NAMES)], status="failed" if failed else "succeeded",
            started_at=end - timedelta(seconds=rng.random() * 40), finished_at=end,
            queue="mail" if n % 4 == 1 else "default",
        ))
    rows += [Job(name="mail.send_digest", queue="mail",
                 run_at=now - timedelta(minutes=rng.randint(0, 12))) for _ in range(14)]
    Job.objects.bulk_create(rows)
    workers = [
        Worker.objects.create(host=f"worker-{n}.example.internal", pid=4100 + n,
                              queues=queues, concurrency=4, busy=busy, version="0.1.0",
                              started_at=now - timedelta(hours=3),
                              heartbeat_at=now - timedelta(seconds=silent), state=state)
        for n, (queues, busy, silent, state) in enumerate((
            ([], 2, 1, "running"), (["mail"], 1, 2, "running"), (["reports"], 0, 45, "running"),
            ([], 0, 900, "lost"),
        ))
    ]
    for _ in range(2):
        Job.objects.create(name="reports.build_monthly_report", status="running",
                           started_at=now - timedelta(minutes=3), owner=workers[0],
                           worker=workers[0].label, progress=0.4,
                           locked_until=now + timedelta(minutes=5))
    PausedQueue.objects.create(queue="reports")
    JobSchedule.objects.create(name="billing:invoice-sync", paused=True)


def fits(page, selector: str) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    right = page.evaluate(
        f"document.querySelector('{selector}').getBoundingClientRect().right")
    assert right <= 1280


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_overview_and_the_workers_page_fit_1280_px(live_server, laptop, login, screenshot,
                                                       settings, scheme):
    # The live server runs in this process: production's 30 s, so that the workers beating a
    # second ago stay fresh while the page loads (the test settings use 3 s).
    settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, "WORKER_LOST_AFTER": 30.0}
    a_busy_day()
    page = login(laptop(scheme), username=f"overview-{scheme}")
    page.goto(f"{live_server.url}/admin/django_jobs/job/overview/")
    expect(page.locator("svg.dj-chart")).to_have_count(2)
    expect(page.locator('#dj-names tr[data-dj-name="mail.send_digest"]')).to_be_visible()
    expect(page.locator("#dj-workers tr")).to_have_count(5)  # header and four workers
    fits(page, "#dj-names")
    fits(page, "#dj-chart-day")
    # Bars are drawn in the theme's colours, not the browser's default black.
    fill = page.evaluate(
        "getComputedStyle(document.querySelector('rect.dj-chart-ok')).fill")
    assert fill not in ("", "none", "rgb(0, 0, 0)")
    if scheme == "dark":
        axis = page.evaluate(
            "getComputedStyle(document.querySelector('.dj-chart-axis')).fill")
        assert axis != "rgb(0, 0, 0)"  # axis labels readable on the dark background
    screenshot(page, f"overview-{scheme}", full_page=True)

    page.goto(f"{live_server.url}/admin/django_jobs/worker/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#result_list .dj-stale")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("lost")
    fits(page, "#result_list")
    screenshot(page, f"workers-{scheme}")

    # From a running job to the worker that holds it.
    page.goto(f"{live_server.url}/admin/django_jobs/job/?status__exact=running")
    page.locator("#result_list a.dj-worker-link").first.click()
    expect(page).to_have_url(re.compile(r"/admin/django_jobs/worker/[0-9a-f-]+/change/$"))
    expect(page.locator("#content")).to_contain_text("worker-0.example.internal:4100")
    expect(page.locator(".dj-held li")).to_have_count(2)
