"""The workers page: every process that runs jobs, from its ``Worker`` row. Read-only.

A worker's liveness is its row's heartbeat, written with the database's clock. The page flags a
running or stopping process that has been silent for ``WORKER_LOST_AFTER`` ("stale": its peers
are about to write it off and recover its runs) and shows lost rows until they are removed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from .. import clock
from ..conf import jobs_settings
from ..humanize import duration_words
from ..ids import short_id
from ..models import Job, Worker
from . import display

#: Running jobs listed on a worker's page.
WORKER_JOBS_SHOWN = 50


def state_badge(state: str, stale: bool) -> str:
    """The state, and "stale" for a live process silent for ``WORKER_LOST_AFTER``."""
    hue = {"running": "running", "stopping": "cancelling", "lost": "failed"}.get(state, "")
    badge = format_html('<span class="dj-badge dj-status-{}">{}</span>', hue, state)
    if stale:
        badge = format_html(
            '{} <span class="dj-badge dj-status-failed dj-stale" title="{}">{}</span>', badge,
            _("no heartbeat for longer than WORKER_LOST_AFTER: its runs are about to be "
              "recovered"), _("stale"),
        )
    return badge


def heartbeat_text(heartbeat_at: datetime, stale: bool, lost: bool) -> str:
    """``14:03:22`` and ``4 s ago``, the age marked when the process is stale or lost."""
    age = max(clock.now() - heartbeat_at, timedelta(0))
    css = "dj-error-line" if stale or lost else "dj-muted"
    return format_html(
        '{}<br><span class="{}">{} {}</span>', display.when(heartbeat_at), css,
        duration_words(age), _("ago"),
    )


def queues_text(queues: list[str] | None) -> str:
    return ", ".join(queues) if queues else str(_("all queues"))


class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "process", "kind", "state_display", "queues_display", "runs", "heartbeat",
        "version_display", "started",
    )
    list_display_links = ("process",)
    list_filter = ("state", "kind")
    search_fields = ("host",)
    ordering = ("host", "pid")
    list_per_page = 100
    readonly_fields = (
        "process", "kind", "state_display", "queues_display", "runs", "heartbeat",
        "version_display", "started", "names_display", "disabled_display", "jobs_held",
    )
    fields = readonly_fields

    class Media:
        css = {"all": ("django_jobs/admin.css",)}

    def get_queryset(self, request: HttpRequest):
        # ``overdue`` by the database's clock, and the running rows each process owns, as
        # columns of the page's one query.
        return super().get_queryset(request).with_liveness(jobs_settings.WORKER_LOST_AFTER)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        # A row belongs to its process: it deletes it on a clean stop; peers remove lost ones.
        return False

    @staticmethod
    def is_stale(obj: Worker) -> bool:
        return bool(getattr(obj, "overdue", False)) and obj.state != "lost"

    @admin.display(description=_("worker"), ordering="host")
    def process(self, obj: Worker) -> str:
        return format_html('<span class="dj-name">{}</span>', obj.label)

    @admin.display(description=_("state"), ordering="state")
    def state_display(self, obj: Worker) -> str:
        return state_badge(obj.state, self.is_stale(obj))

    @admin.display(description=_("queues"))
    def queues_display(self, obj: Worker) -> str:
        return queues_text(obj.queues)

    @admin.display(description=_("runs held / concurrency"))
    def runs(self, obj: Worker) -> str:
        return format_html(
            '{} / {}<br><span class="dj-muted">{} {}</span>', obj.busy, obj.concurrency,
            getattr(obj, "running_jobs", 0), _("running rows"),
        )

    @admin.display(description=_("last heartbeat"), ordering="heartbeat_at")
    def heartbeat(self, obj: Worker) -> str:
        return heartbeat_text(obj.heartbeat_at, self.is_stale(obj), obj.state == "lost")

    @admin.display(description=_("version"), ordering="version")
    def version_display(self, obj: Worker) -> str:
        return obj.version or display.DASH

    @admin.display(description=_("started"), ordering="started_at")
    def started(self, obj: Worker) -> str:
        return display.when(obj.started_at)

    @admin.display(description=_("registered jobs"))
    def names_display(self, obj: Worker) -> str:
        return ", ".join(obj.names) if obj.names else display.DASH

    @admin.display(description=_("disabled here"))
    def disabled_display(self, obj: Worker) -> str:
        return ", ".join(obj.disabled) if obj.disabled else display.DASH

    @admin.display(description=_("running jobs"))
    def jobs_held(self, obj: Worker) -> str:
        jobs = list(
            Job.objects.owned_by([obj.pk]).only(*display.STATE_FIELDS).order_by("started_at")
            [:WORKER_JOBS_SHOWN]
        )
        if not jobs:
            return display.DASH
        site = self.admin_site.name
        return format_html(
            '<ul class="dj-held">{}</ul>',
            format_html_join("", '<li><a href="{}">{} <span class="dj-id">{}</span></a> {}</li>', (
                (reverse(f"{site}:django_jobs_job_change", args=[job.pk]),
                 display.visible(job.name), short_id(job.pk), display.status_badge(job))
                for job in jobs
            )),
        )
