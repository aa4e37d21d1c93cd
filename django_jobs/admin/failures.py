"""Failure triage: recent failures grouped by job name and exception class.

The grouping is done here, over at most ``FAILURES_SCANNED`` of the newest failed rows of the
window, reading only the start of each error: the same page works on every engine and never
pulls whole tracebacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from .. import clock
from ..humanize import duration_words
from ..ids import short_id
from ..models import Job
from . import display

#: Windows the page offers: hours and words.
WINDOWS = {1: "1 hour", 24: "24 hours", 24 * 7: "7 days"}
DEFAULT_WINDOW = 24
#: Newest failed rows read per page view, whatever the window.
FAILURES_SCANNED = 5000


@dataclass
class FailureGroup:
    name: str
    kind: str
    count: int
    retrying: int
    latest_at: datetime
    latest_id: Any
    latest_line: str

    @property
    def final(self) -> int:
        return self.count - self.retrying

    @property
    def latest_short_id(self) -> str:
        return short_id(self.latest_id)


def failure_groups(rows: list[tuple[Any, str, str, datetime, bool]]) -> list[FailureGroup]:
    """``(id, name, error_head, finished_at, retry_pending)`` rows, newest first -> groups,
    the most frequent first."""
    groups: dict[tuple[str, str], FailureGroup] = {}
    for pk, name, head, finished_at, retrying in rows:
        key = (name, display.error_kind(head) or "(no error text)")
        group = groups.get(key)
        if group is None:
            groups[key] = FailureGroup(
                name=name, kind=key[1], count=1, retrying=int(bool(retrying)),
                latest_at=finished_at, latest_id=pk, latest_line=display.error_line(head),
            )
        else:
            group.count += 1
            group.retrying += int(bool(retrying))
    return sorted(groups.values(), key=lambda g: (-g.count, -g.latest_at.timestamp(), g.name))


class FailuresMixin:
    """Mixed into ``JobAdmin``: ``<admin>/django_jobs/job/failures/``, behind ``view_job``."""

    def failures_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [path("failures/", wrap(self.failures_view), name=self.url_name("failures"))]

    def failures_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            hours = int(request.GET.get("hours", DEFAULT_WINDOW))
        except ValueError:
            hours = DEFAULT_WINDOW
        if hours not in WINDOWS:
            hours = DEFAULT_WINDOW
        now = clock.now()
        since = now - timedelta(hours=hours)
        rows = list(
            Job.objects.alive().failed_since(since).with_retry_state().with_error_head()
            .values_list("pk", "name", "error_head", "finished_at", "retry_pending")
            [:FAILURES_SCANNED]
        )
        groups = failure_groups(rows)
        changelist = self.admin_url("changelist")
        for group in groups:
            group.list_url = changelist + "?" + urlencode(
                {"status__exact": "failed", "name": group.name}
            )
            group.latest_url = self.admin_url("change", group.latest_id)
            group.ago = duration_words(now - group.latest_at) + " ago"
        context = {
            **self.admin_site.each_context(request),
            **self.nav_context(request),
            "title": _("Failures"),
            "subtitle": None,
            "opts": self.opts,
            "groups": groups,
            "hours": hours,
            "windows": list(WINDOWS.items()),
            "window_words": WINDOWS[hours],
            "scanned": len(rows),
            "capped": len(rows) >= FAILURES_SCANNED,
            "limit": FAILURES_SCANNED,
            "changelist_url": changelist,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/django_jobs/job/failures.html", context)
