"""The overview page: charts and tables from aggregate queries, a fixed number of them, and
estimated counts past a threshold."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_jobs import clock
from django_jobs.admin import overview
from django_jobs.admin.charts import Bar, bar_chart, nice_ceiling
from django_jobs.models import Job, JobSchedule, PausedQueue, Worker

URL = reverse("admin:django_jobs_job_overview")


def finished(name: str, status: str, ago: timedelta, **fields) -> Job:
    end = timezone.now() - ago
    return Job.objects.create(name=name, status=status, started_at=end - timedelta(seconds=2),
                              finished_at=end, **fields)


@pytest.fixture
def data(db):
    finished("jobsapp.echo", "succeeded", timedelta(minutes=1))
    finished("jobsapp.echo", "succeeded", timedelta(minutes=2))
    finished("jobsapp.echo", "failed", timedelta(minutes=3))
    finished("jobsapp.explode", "failed", timedelta(hours=5))
    finished("jobsapp.echo", "cancelled", timedelta(hours=2))
    finished("jobsapp.echo", "succeeded", timedelta(days=3))  # outside both charts
    Job.objects.create(name="jobsapp.echo", queue="mail",
                       run_at=timezone.now() - timedelta(minutes=7))
    PausedQueue.objects.create(queue="mail")
    JobSchedule.objects.create(name="billing:invoice-sync", paused=True)
    now = clock.now()
    Worker.objects.create(host="web-1", pid=7, started_at=now, heartbeat_at=now,
                          queues=["mail"], concurrency=3, busy=1)


def cell(html: str, table: str, row: str) -> str:
    """The text of the row ``row`` (its data attribute) of the table ``table``."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    match = re.search(rf'<tr {row}>(.*?)</tr>', body, re.S)
    assert match, (table, row)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def test_the_overview_shows_throughput_queues_statuses_workers_and_pauses(admin_client, data):
    response = admin_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="dj-chart"') == 2
    hour = html.split('id="dj-chart-hour"', 1)[1].split("</figure>", 1)[0]
    assert "2 succeeded · 1 failed · 0 cancelled or skipped" in hour
    day = html.split('id="dj-chart-day"', 1)[1].split("</figure>", 1)[0]
    assert "2 succeeded · 2 failed · 1 cancelled or skipped" in day
    assert hour.count('class="dj-chart-hit"') == 60 and day.count('class="dj-chart-hit"') == 24
    assert cell(html, "dj-names", 'data-dj-name="jobsapp.echo"') == (
        "jobsapp.echo 2 1 0 2 1 1 25.0%")
    assert cell(html, "dj-names", 'data-dj-name="jobsapp.explode"') == (
        "jobsapp.explode 0 0 0 0 1 0 100.0%")
    assert cell(html, "dj-queues", 'data-dj-queue="mail"') == "mail paused 1 7 min 0"
    assert cell(html, "dj-statuses", 'data-dj-status="succeeded"') == "succeeded 3"
    assert cell(html, "dj-statuses", 'data-dj-status="scheduled"') == "scheduled 1"
    assert "billing:invoice-sync" in html.split('id="dj-paused"', 1)[1]
    worker = cell(html, "dj-workers", 'data-dj-worker="web-1:7"')
    assert worker.startswith("web-1:7 worker running mail 1 / 3")
    # The oldest due job of a paused queue waits on purpose: not the headline figure.
    assert "7 min" not in html.split('id="dj-figures"', 1)[1].split("</ul>", 1)[0]


def test_the_overview_needs_view_job_and_shows_workers_only_with_view_worker(staff, data):
    assert staff("view_worker").get(URL).status_code == 403
    jobs_only = staff("view_job").get(URL)
    assert jobs_only.status_code == 200
    assert 'id="dj-workers"' not in jobs_only.content.decode()
    assert 'id="dj-workers"' in staff("view_job", "view_worker").get(URL).content.decode()


def test_the_overview_is_linked_from_the_app_index_and_the_other_pages(admin_client, db):
    for url in (reverse("admin:app_list", args=["django_jobs"]),
                reverse("admin:django_jobs_job_changelist"),
                reverse("admin:django_jobs_job_dashboard"),
                reverse("admin:django_jobs_job_failures")):
        assert f'href="{URL}"' in admin_client.get(url).content.decode(), url


def test_names_and_queues_are_escaped(admin_client, db):
    finished("<script>alert(1)</script>", "failed", timedelta(minutes=1),
             queue="<b>queue</b>")
    PausedQueue.objects.create(queue="<i>q</i>")
    now = clock.now()
    Worker.objects.create(host="<img src=x>", pid=1, started_at=now, heartbeat_at=now)
    html = admin_client.get(URL).content.decode()
    assert "<script>alert(1)</script>" not in html and "<i>q</i>" not in html
    assert "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;i&gt;q&lt;/i&gt;" in html


def test_the_number_of_queries_does_not_grow_with_names_rows_queues_or_workers(
    admin_client, data
):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(URL).status_code == 200
        captured_last[:] = captured.captured_queries
        return len(captured)

    captured_last: list[dict] = []
    if connection.vendor == "postgresql":
        # As autovacuum would have: with statistics, the table's size is read, not counted.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")
    few = queries()
    now = clock.now()
    for n in range(25):
        for status in ("succeeded", "failed", "skipped"):
            finished(f"jobsapp.generated_{n}", status, timedelta(minutes=n), queue=f"q{n}")
        Job.objects.create(name=f"jobsapp.generated_{n}", queue=f"q{n}")
        Worker.objects.create(host=f"host-{n}", pid=n, started_at=now, heartbeat_at=now)
    assert queries() == few, "\n".join(q["sql"][:150] for q in captured_last)
    # session, user, then: two charts, paused queues and schedules, names, status counts
    # (the table's size, by estimate or a bounded count, and one grouped count), due and
    # running per queue, workers, limits (slots held, rate tokens used).
    assert few == 14, "\n".join(q["sql"][:150] for q in captured_last)


def test_counts_past_the_threshold_are_estimated_or_bounded(db):
    for n in range(6):
        finished("jobsapp.echo", "succeeded", timedelta(minutes=n))
    Job.objects.create(name="jobsapp.echo")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")
    counts = {count.status: count for count in Job.objects.status_counts(cap=3)}
    if connection.vendor == "postgresql":
        assert counts["succeeded"].estimated and counts["succeeded"].count == 6
        assert overview.count_words(counts["succeeded"]) == "about 6"
    else:
        assert counts["succeeded"].capped and counts["succeeded"].count == 4
        assert overview.count_words(counts["succeeded"]) == "more than 3"
    assert (counts["scheduled"].count, counts["scheduled"].capped) == (1, False)
    assert overview.count_words(counts["scheduled"]) == "1"
    exact = {count.status: count.count for count in Job.objects.status_counts(cap=100)}
    assert exact == {"waiting": 0, "scheduled": 1, "running": 0, "succeeded": 6, "failed": 0,
                     "cancelled": 0, "skipped": 0}


def test_charts_are_svg_with_escaped_labels_and_round_scales():
    start = timezone.now()
    svg = bar_chart([Bar(start, 3, 1, 0), Bar(start, 0, 0, 0)], title="<t>",
                    label=lambda moment: "<x>", tick_every=1)
    assert svg.startswith('<svg class="dj-chart"') and "<t>" not in svg and "<x>" not in svg
    assert svg.count('class="dj-chart-ok"') == 1 and svg.count('class="dj-chart-fail"') == 1
    assert "&lt;x&gt;: 3 succeeded, 1 failed" in svg
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 11, 24, 260)] == [1, 1, 5, 10, 20, 25, 500]
