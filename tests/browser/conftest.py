"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

The live server and the ``runjobs`` subprocesses share the test database, so the tests using
them are ``django_db(transaction=True)``: their rows are committed where other processes see them.
Screenshots for docs/admin.md are written when ``DJANGO_JOBS_SCREENSHOTS`` names a folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api as playwright_api

CHROMIUM = os.environ.get("DJANGO_JOBS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 1600, "height": 900}
#: Every wait in these tests is bounded by this (milliseconds).
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install it, point DJANGO_JOBS_CHROMIUM at one, "
                    "or deselect these tests with -m 'not browser'")
    # Playwright's sync API keeps an asyncio loop on this thread, which makes Django refuse ORM
    # calls here (the tests' own, and the database flush after each test) although they are
    # plain synchronous calls. Allowed for as long as the browser lives.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser):
    """``new_page(color_scheme="light"|"dark")``: a fresh context (cookies) and page."""
    contexts = []

    def make(color_scheme: str = "light"):
        context = browser.new_context(viewport=VIEWPORT, color_scheme=color_scheme)
        context.set_default_timeout(TIMEOUT_MS)
        # The admin's navigation sidebar folded, so the job list's columns fit the screenshots.
        context.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def login(live_server, django_user_model):
    """Create a staff user (superuser unless permissions are given) and log in through the form."""

    def do(page, *, username: str = "operator", permissions: tuple[str, ...] | None = None):
        from django.contrib.auth.models import Permission

        if permissions is None:
            django_user_model.objects.create_superuser(username, f"{username}@example.com", "pw")
        else:
            user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
            user.user_permissions.set(Permission.objects.filter(
                content_type__app_label="django_jobs", codename__in=permissions))
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        playwright_api.expect(page.locator("#user-tools")).to_contain_text(username)
        return page

    return do


@pytest.fixture
def screenshot():
    """``screenshot(page, "job-list-light")``: <folder>/job-list-light.png, if a folder is set."""
    folder = os.environ.get("DJANGO_JOBS_SCREENSHOTS")

    def take(page, name: str, *, full_page: bool = False) -> None:
        if not folder:
            return
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path / f"{name}.png"), full_page=full_page)

    return take
