"""The job types dashboard: every registered job, its schedule, its last and its running run.

A fixed handful of queries whatever the number of job types: one per concern (running runs, next
runs, last runs, paused schedules), never one per type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from .. import clock
from ..control import registry
from ..exceptions import JobError
from ..humanize import ago_words, cron_words, duration_words, every_words
from ..ids import short_id
from ..jobtypes import JobType
from ..models import Job, JobSchedule, PausedQueue
from . import display
from .audit import log_jobs


@dataclass
class JobTypeRow:
    job_type: JobType
    schedule: str
    schedule_words: str
    enabled: bool
    paused: bool
    next_run: datetime | None
    last: Job | None
    running: list[Job] = field(default_factory=list)
    needs_payload: bool = False

    # Templates call callables, and a JobType is one (it calls the job): expose plain values.
    @property
    def name(self) -> str:
        return self.job_type.name

    @property
    def queue(self) -> str:
        return self.job_type.queue

    @property
    def locked(self) -> bool:
        return self.job_type.uses_lock

    @property
    def recurring(self) -> bool:
        return self.job_type.is_recurring

    @property
    def last_duration(self) -> str:
        """``took 3 s``; empty when the last run never started (cancelled while scheduled)."""
        if self.last is None or self.last.started_at is None or self.last.finished_at is None:
            return ""
        return duration_words(self.last.finished_at - self.last.started_at)


@dataclass
class QueueRow:
    queue: str
    names: list[str]
    paused: bool


def schedule_text(job_type: JobType) -> tuple[str, str]:
    """``(technical, words)``: ``("0 * * * *", "every hour at minute 0")``."""
    if job_type.cron:
        zone = job_type.timezone or timezone.get_default_timezone_name()
        return job_type.cron, f"{cron_words(job_type.cron)} ({zone})"
    if job_type.every:
        return f"every={job_type.every}", every_words(job_type.every)
    if job_type.next_run:
        func = getattr(job_type.next_run, "__qualname__", repr(job_type.next_run))
        return f"next_run={func}", "computed by its next_run function"
    return "", "on demand"


def needs_payload(job_type: JobType) -> bool:
    """Whether the function has required arguments besides the context (run now can't guess)."""
    try:
        job_type.check_payload({})
    except TypeError:
        return True
    return False


def queue_rows(job_types: list[JobType]) -> list[QueueRow]:
    """Every queue a registered job uses, and every paused queue: one query."""
    paused = set(PausedQueue.objects.values_list("queue", flat=True))
    names: dict[str, list[str]] = {queue: [] for queue in paused}
    for job_type in job_types:
        names.setdefault(job_type.queue, []).append(job_type.name)
    return [QueueRow(queue=queue, names=sorted(names[queue]), paused=queue in paused)
            for queue in sorted(names)]


def dashboard_rows(job_types: list[JobType]) -> list[JobTypeRow]:
    names = [job_type.name for job_type in job_types]
    running: dict[str, list[Job]] = {}
    for job in Job.objects.running().filter(name__in=names).only(
        *display.STATE_FIELDS, "worker"
    ).order_by("started_at"):
        running.setdefault(job.name, []).append(job)
    next_runs = Job.objects.next_run_by_name(names)
    last = Job.objects.last_finished_by_name(names)
    paused = set(
        JobSchedule.objects.filter(name__in=names, paused=True).values_list("name", flat=True)
    )
    rows = []
    for job_type in job_types:
        technical, words = schedule_text(job_type)
        rows.append(JobTypeRow(
            job_type=job_type, schedule=technical, schedule_words=words,
            enabled=job_type.is_enabled, paused=job_type.name in paused,
            next_run=next_runs.get(job_type.name), last=last.get(job_type.name),
            running=running.get(job_type.name, []), needs_payload=needs_payload(job_type),
        ))
    return rows


class DashboardMixin:
    """Mixed into ``JobAdmin``: the dashboard lives under the job admin's URLs and permissions."""

    def url_name(self, suffix: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def admin_url(self, suffix: str, *args: Any) -> str:
        return reverse(f"{self.admin_site.name}:{self.url_name(suffix)}", args=args)

    def dashboard_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("types/", wrap(self.dashboard_view), name=self.url_name("dashboard")),
            path("types/run/", wrap(self.dashboard_run_view), name=self.url_name("dashboard_run")),
        ]

    def dashboard_url(self) -> str:
        return self.admin_url("dashboard")

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job_types = list(registry)
        rows = dashboard_rows(job_types)
        now = clock.now()
        for row in rows:
            if row.last is not None and row.last.finished_at is not None:
                row.last_ago = ago_words(now - row.last.finished_at)
                row.last_finished = display.when(row.last.finished_at)
            if row.next_run is not None:
                row.next_run_text = display.when(row.next_run)
                row.next_run_in = (
                    "in " + duration_words(row.next_run - now) if row.next_run > now
                    else _("due now")
                )
            for run in row.running:
                run.admin_progress = display.progress_bar(run, now)
                run.admin_status = display.status_badge(run)
                run.admin_message = display.message(run)
                run.admin_eta = display.live_text(run, "eta", display.eta_words(run, now))
                run.admin_cancel_url = self.admin_url("cancel", run.pk)
                run.short_id = short_id(run.pk)
        context = {
            **self.admin_site.each_context(request),
            **self.nav_context(request),
            "title": _("Job types"),
            "subtitle": None,
            "opts": self.opts,
            "rows": rows,
            "now": now,
            "can_run": self.has_run_permission(request),
            "can_cancel": self.has_cancel_permission(request),
            "can_pause": self.has_pause_permission(request),
            "queues": queue_rows(job_types),
            "limits": registry.limits(),
            "pause_url": self.admin_url("pause"),
            "run_url": self.admin_url("dashboard_run"),
            "changelist_url": self.admin_url("changelist"),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/django_jobs/job/dashboard.html", context)

    @method_decorator(require_POST)
    def dashboard_run_view(self, request: HttpRequest) -> HttpResponse:
        """Start one run of a job type now, unless that would make a second concurrent run."""
        if not self.has_run_permission(request):
            raise PermissionDenied
        back = HttpResponseRedirect(self.dashboard_url())
        name = request.POST.get("name", "")
        if name not in registry:
            self.message_user(request, _("No job named %s is registered.") % name,
                              messages.ERROR)
            return back
        job_type = registry.get(name)
        if not job_type.is_enabled:
            self.message_user(request, _("Not started: %s is disabled.") % name,
                              messages.ERROR)
            return back
        if needs_payload(job_type):
            self.message_user(request, _(
                "Not started: %s needs arguments; enqueue it from code or the jobs command."
            ) % name, messages.ERROR)
            return back
        now = clock.now()
        pending = Job.objects.for_name(name)
        if pending.running().exists():
            self.message_user(request, _(
                "Not started: %s is already running, and runs only once at a time here."
            ) % name, messages.ERROR)
            return back
        if pending.scheduled().filter(run_at__lte=now).exists():
            self.message_user(request, _(
                "Not started again: %s is already due; a worker starts it next."
            ) % name, messages.WARNING)
            return back
        try:
            job = registry.enqueue(name, created_by=request.user)
        except (JobError, TypeError, ValueError) as exc:
            self.message_user(request, _("Not started: %(name)s: %(error)s")
                              % {"name": name, "error": exc}, messages.ERROR)
            return back
        log_jobs(request, [job], "Started from the job types dashboard (run now).")
        self.message_user(request, _(
            "Queued %(name)s to run now (job %(id)s); a worker picks it up next."
        ) % {"name": name, "id": str(job.pk)[:8]}, messages.SUCCESS)
        return back
