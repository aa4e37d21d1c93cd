"""The overview: throughput and failures over time, queues, runs per status, workers, pauses.

Built to stay cheap on a large table: every figure is one aggregate query (grouped in the
database, over an indexed range: finished rows by ``finished_at``, due rows by the due index),
counts of the whole table become estimates past ``ESTIMATE_ABOVE`` rows, and the number of
queries does not depend on the number of rows, job names, queues or workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from .. import clock
from ..control import registry
from ..humanize import duration_words
from ..models import Job, JobSchedule, PausedQueue
from ..models.querysets import StatusCount
from . import display
from .charts import Bar, bar_chart
from .worker import heartbeat_text, queues_text, state_badge

#: Above this many rows (by the engine's estimate), whole-table counts are estimated.
ESTIMATE_ABOVE = 50_000
#: The two charts: (periods, Trunc kind, length of one period, a label every n periods).
HOUR_BY_MINUTE = (60, "minute", timedelta(minutes=1), 10)
DAY_BY_HOUR = (24, "hour", timedelta(hours=1), 3)


@dataclass
class NameRow:
    """Finished runs of one job name in the last hour and the last day."""

    name: str
    hour: dict[str, int] = field(default_factory=dict)
    day: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def _other(counts: dict[str, int]) -> int:
        return counts.get("cancelled", 0) + counts.get("skipped", 0)

    @property
    def hour_other(self) -> int:
        return self._other(self.hour)

    @property
    def day_other(self) -> int:
        return self._other(self.day)

    @property
    def day_total(self) -> int:
        return sum(self.day.values())

    @property
    def day_failure_rate(self) -> str:
        total = self.day_total
        return f"{100 * self.day.get('failed', 0) / total:.1f}%" if total else display.DASH


@dataclass
class QueueRow:
    queue: str
    due: int
    oldest_due_age: timedelta | None
    running: int
    paused: bool

    @property
    def oldest_words(self) -> str:
        return duration_words(self.oldest_due_age) if self.oldest_due_age else display.DASH


def period_start(moment: datetime, length: timedelta) -> datetime:
    """The start of the UTC minute or hour holding ``moment`` (the database cuts the same)."""
    moment = moment.astimezone(UTC)
    if length >= timedelta(hours=1):
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def series(now: datetime, spec: tuple[int, str, timedelta, int]) -> list[Bar]:
    """The bars of one chart: one grouped query over the finished rows of its window."""
    periods, kind, length, _tick = spec
    first = period_start(now, length) - length * (periods - 1)
    counts: dict[datetime, dict[str, int]] = {}
    for start, status, n in Job.objects.finished_per_period(first, kind):
        counts.setdefault(start.astimezone(UTC), {})[status] = n
    bars = []
    for index in range(periods):
        start = first + length * index
        found = counts.get(start, {})
        bars.append(Bar(
            start=start, succeeded=found.get("succeeded", 0), failed=found.get("failed", 0),
            other=found.get("cancelled", 0) + found.get("skipped", 0),
        ))
    return bars


def name_rows(now: datetime) -> list[NameRow]:
    """Per job name: finished runs by status in the last hour and day (one grouped query)."""
    rows: dict[str, NameRow] = {}
    for name, status, day, hour in Job.objects.finished_by_name(
        now - timedelta(days=1), now - timedelta(hours=1)
    ):
        row = rows.setdefault(name, NameRow(name))
        row.day[status] = day
        if hour:
            row.hour[status] = hour
    return sorted(rows.values(), key=lambda row: (-row.day.get("failed", 0), row.name))


def queue_rows(now: datetime, paused: set[str]) -> list[QueueRow]:
    """Due rows, the oldest due wait and running rows per queue: two grouped queries."""
    due = Job.objects.alive().due_by_queue()
    running = Job.objects.running_by_queue()
    queues = set(due) | set(running) | paused | {job_type.queue for job_type in registry}
    rows = []
    for queue in sorted(queues):
        n, oldest = due.get(queue, (0, None))
        rows.append(QueueRow(
            queue=queue, due=n, running=running.get(queue, 0), paused=queue in paused,
            oldest_due_age=max(now - oldest, timedelta(0)) if oldest else None,
        ))
    return rows


def count_words(count: StatusCount) -> str:
    if count.estimated:
        return _("about %(n)s") % {"n": f"{count.count:,}"}
    if count.capped:
        return _("more than %(n)s") % {"n": f"{count.count - 1:,}"}
    return f"{count.count:,}"


def local_time(moment: datetime) -> str:
    """``14:05`` in the current time zone: the label of a minute or an hour."""
    return timezone.localtime(moment).strftime("%H:%M")


class OverviewMixin:
    """Mixed into ``JobAdmin``: ``<admin>/django_jobs/job/overview/``, behind ``view_job``."""

    def overview_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [path("overview/", wrap(self.overview_view), name=self.url_name("overview"))]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = clock.now()
        hour_bars, day_bars = series(now, HOUR_BY_MINUTE), series(now, DAY_BY_HOUR)
        paused_queues = set(PausedQueue.objects.values_list("queue", flat=True))
        paused_jobs = sorted(
            JobSchedule.objects.filter(paused=True).values_list("name", flat=True)
        )
        changelist = self.admin_url("changelist")
        names = name_rows(now)
        for row in names:
            row.list_url = changelist + "?" + urlencode({"name": row.name})
            row.failed_url = changelist + "?" + urlencode(
                {"name": row.name, "status__exact": "failed"}
            )
        statuses = []
        for count in Job.objects.status_counts(ESTIMATE_ABOVE):
            statuses.append({
                "status": count.status, "text": count_words(count),
                "url": changelist + "?" + urlencode({"status__exact": count.status}),
            })
        queues = queue_rows(now, paused_queues)
        workers = []
        can_view_workers = self.can_view_workers(request)
        if can_view_workers:
            for worker in registry.workers():
                workers.append({
                    "info": worker,
                    "url": reverse(f"{self.admin_site.name}:django_jobs_worker_change",
                                   args=[worker.id]),
                    "state": state_badge(worker.state, worker.stale),
                    "heartbeat": heartbeat_text(worker.last_heartbeat, worker.stale,
                                                worker.lost),
                    "queues": queues_text(list(worker.queues)),
                })
        hour_totals = Bar(start=now, succeeded=sum(b.succeeded for b in hour_bars),
                          failed=sum(b.failed for b in hour_bars),
                          other=sum(b.other for b in hour_bars))
        day_totals = Bar(start=now, succeeded=sum(b.succeeded for b in day_bars),
                         failed=sum(b.failed for b in day_bars),
                         other=sum(b.other for b in day_bars))
        oldest = [q.oldest_due_age for q in queues if q.oldest_due_age and not q.paused]
        context = {
            **self.admin_site.each_context(request),
            **self.nav_context(request),
            "title": _("Overview"),
            "subtitle": None,
            "opts": self.opts,
            "hour_chart": bar_chart(
                hour_bars, title=_("Runs finished per minute, last hour"), label=local_time,
                tick_every=HOUR_BY_MINUTE[3],
            ),
            "day_chart": bar_chart(
                day_bars, title=_("Runs finished per hour, last 24 hours"), label=local_time,
                tick_every=DAY_BY_HOUR[3],
            ),
            "hour_totals": hour_totals,
            "day_totals": day_totals,
            "names": names,
            "queues": queues,
            "due_total": sum(q.due for q in queues),
            "running_total": sum(q.running for q in queues),
            "oldest_due": duration_words(max(oldest)) if oldest else display.DASH,
            "statuses": statuses,
            "workers": workers,
            "can_view_workers": can_view_workers,
            "workers_alive": sum(1 for w in workers if w["info"].alive),
            "limits": registry.limits(),
            "paused_queues": sorted(paused_queues),
            "paused_jobs": paused_jobs,
            "time_zone": timezone.get_current_timezone_name(),
            "changelist_url": changelist,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/django_jobs/job/overview.html", context)
