"""The job list, the job page and the actions on jobs.

Operators read here and act through buttons and admin actions; nobody edits a row by hand. Every
action calls the API that user code calls (``registry.cancel()``, ``QuerySet.cancel()``,
``Job.retry()``, ``Job.run_now()``), sits behind its own permission and changes state only on
a POST that passed the CSRF check.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from .. import clock, workflows
from ..control import registry
from ..exceptions import InvalidJobState, JobNotFound, UnknownJob
from ..ids import SHORT_ID_MIN, short_id
from ..models import Job, JobSchedule, JobStatus, JobTypeLock, PausedQueue, Worker, Workflow
from ..models.querysets import id_prefix_q
from . import display
from .audit import log_jobs, log_other
from .dashboard import DashboardMixin
from .failures import FailuresMixin
from .overview import OverviewMixin

#: Never read on the list: they can be large (payloads, results, tracebacks).
LARGE_FIELDS = ("data", "result", "error", "meta")
#: Most ids one live request may ask about.
LIVE_MAX_IDS = 200
#: How often the pages ask about live jobs.
LIVE_INTERVAL_MS = 1000
#: How far the job page follows ``rescheduled_from`` back in time.
CHAIN_DEPTH = 20
#: How often the list asks whether new jobs arrived, and the most it counts.
NEW_ROWS_INTERVAL_MS = 3000
NEW_ROWS_MAX = 100


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None


class NameFilter(admin.SimpleListFilter):
    """Registered job names; no ``DISTINCT`` over the whole table."""

    title = _("name")
    parameter_name = "name"

    def lookups(self, request, model_admin):
        names = registry.names()
        current = self.value()
        if current and current not in names:
            names.append(current)
        return [(name, name) for name in names]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.for_name(self.value())
        return queryset


class QueueFilter(admin.SimpleListFilter):
    """Queues of the registered job types and paused queues."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        queues = {job_type.queue for job_type in registry}
        queues.update(PausedQueue.objects.values_list("queue", flat=True))
        if self.value():
            queues.add(self.value())
        return [(queue, queue) for queue in sorted(queues)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.in_queues([self.value()])
        return queryset


class WorkflowFilter(admin.SimpleListFilter):
    """The members of one workflow (``?workflow=<id>``, linked from the workflow's page and
    from its members' pages). Offered only while set: listing every workflow would read a
    whole table."""

    title = _("workflow")
    parameter_name = "workflow"

    def lookups(self, request, model_admin):
        if not self.value():
            return []
        return [(self.value(), short_id(self.value()))]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        workflow_id = as_uuid(self.value())
        return queryset.none() if workflow_id is None else queryset.in_workflow(workflow_id)


class JobChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        # The paused and retry states ride along as subqueries, and only the head of the
        # error is read: the page's query count stays fixed.
        return (
            super().get_queryset(request, exclude_parameters).defer(*LARGE_FIELDS)
            .with_pause_state().with_retry_state().with_error_head()
        )

    def get_results(self, request):
        if getattr(request, "dj_count_new_rows", False):
            # The new-rows poll needs the filtered queryset only, not a page of it.
            self.result_list, self.result_count, self.full_result_count = [], 0, None
            self.show_all = self.multi_page = self.can_show_all = False
            return
        super().get_results(request)


class JobAdmin(DashboardMixin, FailuresMixin, OverviewMixin, admin.ModelAdmin):
    # Seven columns that wrap: the list fits a 1280 px screen beside the admin's sidebars.
    list_display = (
        "job", "status_cell", "progress_cell", "times", "queue_display", "worker_display",
        "run_at_display",
    )
    list_display_links = ("job",)
    list_filter = ("status", NameFilter, QueueFilter, ("created_at", admin.DateFieldListFilter),
                   WorkflowFilter)
    search_fields = ("=id", "name", "=unique_key")
    search_help_text = _("Search by job id, name or unique key.")
    ordering = ("-created_at",)
    list_per_page = 50
    # A COUNT(*) of the whole table on every filtered page is what hurts at 100k rows.
    show_full_result_count = False
    actions = ("cancel_jobs", "retry_jobs", "run_jobs_now")
    readonly_fields = (
        "name", "status_badge", "progress_bar", "message", "eta_display", "elapsed", "queue",
        "priority", "attempt_display", "worker", "run_at_display", "created_at_display",
        "started_at_display", "finished_at_display", "heartbeat_at_display",
        "locked_until_display", "cancel_requested_at_display", "payload", "worker_link",
        "result_display", "error_display", "meta_display", "unique_key", "lock_key",
        "occurrence", "created_by", "history", "workflow_display", "workflow_link",
    )
    fieldsets = (
        (None, {"fields": (
            "name", "status_badge", "progress_bar", "message", "eta_display", "elapsed",
            "queue", "priority", "attempt_display", "worker", "workflow_display",
        )}),
        (_("Payload and outcome"), {"fields": ("payload", "result_display", "error_display")}),
        (_("Times"), {"fields": (
            "run_at_display", "created_at_display", "started_at_display", "finished_at_display",
            "heartbeat_at_display", "locked_until_display", "cancel_requested_at_display",
        )}),
        (_("History"), {"fields": ("history", "created_by", "occurrence")}),
        (_("Keys and meta"), {"fields": ("unique_key", "lock_key", "meta_display")}),
    )
    change_list_template = "admin/django_jobs/job/change_list.html"
    change_form_template = "admin/django_jobs/job/change_form.html"

    class Media:
        css = {"all": ("django_jobs/admin.css",)}
        js = ("django_jobs/live.js",)

    # -- read-only ---------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # Rows are history; pruning removes finished ones (``keep=``).
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_job")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_job")

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.run_job")

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.pause_job")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def can_view_workers(self, request: HttpRequest) -> bool:
        worker_admin = self.admin_site._registry.get(Worker)
        return worker_admin is not None and worker_admin.has_view_permission(request)

    def can_view_workflows(self, request: HttpRequest) -> bool:
        workflow_admin = self.admin_site._registry.get(Workflow)
        return workflow_admin is not None and workflow_admin.has_view_permission(request)

    def get_list_display(self, request: HttpRequest):
        # The worker column links to the worker's page for those who may open it.
        columns = super().get_list_display(request)
        if not self.can_view_workers(request):
            return columns
        return tuple("worker_link" if c == "worker_display" else c for c in columns)

    def get_fieldsets(self, request: HttpRequest, obj: Job | None = None):
        # The worker and the workflow link to their pages for those who may open them; the
        # workflow shows for members only.
        fieldsets = super().get_fieldsets(request, obj)
        swap = {}
        if self.can_view_workers(request):
            swap["worker"] = "worker_link"
        if self.can_view_workflows(request):
            swap["workflow_display"] = "workflow_link"
        drop = set() if obj is not None and obj.workflow_id else {"workflow_display"}
        return tuple(
            (title, {**options, "fields": tuple(
                swap.get(f, f) for f in options["fields"] if f not in drop
            )})
            for title, options in fieldsets
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(name__icontains=term) | Q(unique_key=term)
        job_id = as_uuid(term)
        if job_id is not None:
            match |= Q(pk=job_id)
        elif len(term.replace("-", "")) >= SHORT_ID_MIN:
            # The 8 characters the list shows find their job (a range on the primary key).
            prefix = id_prefix_q(term, queryset.db)
            if prefix is not None:
                match |= prefix
        return queryset.filter(match), False

    # -- columns -----------------------------------------------------------------------------

    @admin.display(description=_("job"), ordering="name")
    def job(self, obj: Job) -> str:
        paused = ""
        if getattr(obj, "schedule_paused", False):
            paused = format_html(
                ' <span class="dj-badge dj-paused" title="{}">{}</span>',
                _("this recurring job is paused: no new runs are created"), _("paused"),
            )
        return format_html(
            '<span class="dj-name">{}</span> <span class="dj-id">{}</span>{}',
            display.visible(obj.name), short_id(obj.pk), paused,
        )

    @admin.display(description=_("status"), ordering="status")
    def status_cell(self, obj: Job) -> str:
        """The badge, "will retry" or "final" for a failure, and the attempt."""
        return format_html(
            '{}<span class="dj-note">{} {}</span>', display.status_badge(obj), _("attempt"),
            self.attempt_display(obj),
        )

    @admin.display(description=_("queue"), ordering="queue")
    def queue_display(self, obj: Job) -> str:
        paused = ""
        if getattr(obj, "queue_paused", False):
            paused = format_html(
                ' <span class="dj-badge dj-paused" title="{}">{}</span>',
                _("this queue is paused: its jobs stay scheduled"), _("paused"),
            )
        priority = ""
        if obj.priority:
            priority = format_html(' <span class="dj-muted">{} {}</span>', _("prio"),
                                   obj.priority)
        return format_html("{}{}{}", obj.queue, priority, paused)

    @admin.display(description=_("time"))
    def times(self, obj: Job) -> str:
        """Elapsed time, and the ETA while the job runs."""
        now = clock.now()
        elapsed = display.live_text(obj, "elapsed", display.elapsed_words(obj, now))
        if obj.status != JobStatus.RUNNING:
            return elapsed
        return format_html(
            '{}<br><span class="dj-muted">{} {}</span>', elapsed, _("ETA"),
            display.live_text(obj, "eta", display.eta_words(obj, now)),
        )

    @admin.display(description=_("run at"), ordering="run_at")
    def run_at_display(self, obj: Job) -> str:
        return display.when(obj.run_at)

    @admin.display(description=_("created at"))
    def created_at_display(self, obj: Job) -> str:
        return display.when(obj.created_at)

    @admin.display(description=_("started at"))
    def started_at_display(self, obj: Job) -> str:
        return display.live_text(obj, "started_at", display.when(obj.started_at))

    @admin.display(description=_("finished at"))
    def finished_at_display(self, obj: Job) -> str:
        return display.live_text(obj, "finished_at", display.when(obj.finished_at))

    @admin.display(description=_("last heartbeat"))
    def heartbeat_at_display(self, obj: Job) -> str:
        return display.when(obj.heartbeat_at)

    @admin.display(description=_("locked until"))
    def locked_until_display(self, obj: Job) -> str:
        return display.when(obj.locked_until)

    @admin.display(description=_("cancel requested at"))
    def cancel_requested_at_display(self, obj: Job) -> str:
        return display.when(obj.cancel_requested_at)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Job) -> str:
        return display.status_badge(obj)

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, obj: Job) -> str:
        return display.progress_bar(obj)

    @admin.display(description=_("progress and message"), ordering="progress")
    def progress_cell(self, obj: Job) -> str:
        """The bar, the last message and, for a failed run, its error's first line."""
        return format_html(
            '{}<div class="dj-sub">{}{}</div>', display.progress_bar(obj), display.message(obj),
            display.error_summary(obj),
        )

    @admin.display(description=_("message"))
    def message(self, obj: Job) -> str:
        return display.message(obj)

    @admin.display(description=_("ETA"), ordering="eta")
    def eta_display(self, obj: Job) -> str:
        return display.live_text(obj, "eta", display.eta_words(obj, clock.now()))

    @admin.display(description=_("elapsed"))
    def elapsed(self, obj: Job) -> str:
        return display.live_text(obj, "elapsed", display.elapsed_words(obj, clock.now()))

    @admin.display(description=_("worker"), ordering="worker")
    def worker_display(self, obj: Job) -> str:
        return display.live_text(obj, "worker", obj.worker or display.DASH)

    @admin.display(description=_("worker"), ordering="worker")
    def worker_link(self, obj: Job) -> str:
        """``host:pid``; while the job runs, a link to the worker process that holds it."""
        text = display.live_text(obj, "worker", obj.worker or display.DASH)
        if obj.status != JobStatus.RUNNING or obj.owner_id is None:
            return text
        url = reverse(f"{self.admin_site.name}:django_jobs_worker_change", args=[obj.owner_id])
        return format_html('<a href="{}" class="dj-worker-link">{}</a>', url, text)

    @admin.display(description=_("attempt"), ordering="attempt")
    def attempt_display(self, obj: Job) -> str:
        return f"{obj.attempt} / {obj.max_attempts}"

    @admin.display(description=_("payload"))
    def payload(self, obj: Job) -> str:
        return display.pre(display.pretty_json(obj.data), "dj-json")

    @admin.display(description=_("workflow"))
    def workflow_display(self, obj: Job) -> str:
        """The workflow's name and short id, and a link to the list of its jobs."""
        return self._workflow(obj, None)

    @admin.display(description=_("workflow"))
    def workflow_link(self, obj: Job) -> str:
        """The same, the name linking to the workflow's page."""
        return self._workflow(obj, reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_workflow_change",
            args=[obj.workflow_id],
        ))

    def _workflow(self, obj: Job, page: str | None) -> str:
        workflow = Workflow.objects.only("id", "name").filter(pk=obj.workflow_id).first()
        text = format_html(
            '<span class="dj-name">{}</span> <span class="dj-id">{}</span>',
            display.visible(workflow.name) if workflow is not None else "",
            short_id(obj.workflow_id),
        )
        if page is not None:
            text = format_html('<a href="{}">{}</a>', page, text)
        members = self.admin_url("changelist") + "?" + urlencode(
            {"workflow": str(obj.workflow_id)})
        return format_html('{} <a href="{}" class="dj-muted">{}</a>', text, members,
                           _("all its jobs"))

    @admin.display(description=_("result"))
    def result_display(self, obj: Job) -> str:
        return display.pre(display.pretty_json(obj.result), "dj-json")

    @admin.display(description=_("error"))
    def error_display(self, obj: Job) -> str:
        return display.pre(obj.error, "dj-error")

    @admin.display(description=_("meta"))
    def meta_display(self, obj: Job) -> str:
        return display.pre(display.pretty_json(obj.meta), "dj-json")

    @admin.display(description=_("runs"))
    def history(self, obj: Job) -> str:
        """Earlier runs this one came from (retries, occurrences) and the runs that came from it."""
        columns = ("id", "name", "status", "attempt", "created_at", "cancel_requested_at",
                   "rescheduled_from_id")
        earlier: list[Job] = []
        cursor = obj.rescheduled_from_id
        seen = {obj.pk}
        # One query per hop, bounded; a chain is a handful of retries in practice.
        while cursor is not None and cursor not in seen and len(earlier) < CHAIN_DEPTH:
            seen.add(cursor)
            parent = Job.objects.only(*columns).filter(pk=cursor).first()
            if parent is None:
                break
            earlier.append(parent)
            cursor = parent.rescheduled_from_id
        later = list(
            Job.objects.only(*columns).filter(rescheduled_from_id=obj.pk)
            .order_by("created_at")[:CHAIN_DEPTH]
        )
        if not earlier and not later:
            return display.DASH
        rows = [(run, "") for run in reversed(earlier)] + [(obj, "this run")]
        rows += [(run, "") for run in later]
        return format_html(
            '<ol class="dj-chain">{}</ol>',
            format_html_join(
                "", '<li{}><a href="{}">{}</a> {} <span class="dj-muted">attempt {} · {}</span>'
                ' {}</li>',
                (
                    (
                        format_html(' class="{}"', "dj-current") if note else "",
                        self._change_url(run), str(run.pk)[:8], display.status_badge(run),
                        run.attempt, timezone.localtime(run.created_at).strftime(
                            "%Y-%m-%d %H:%M:%S"
                        ),
                        format_html("<strong>{}</strong>", note) if note else "",
                    )
                    for run, note in rows
                ),
            ),
        )

    def _change_url(self, job: Job) -> str:
        return self.admin_url("change", job.pk)

    # -- bulk actions (POST + CSRF by construction) ------------------------------------------

    @admin.action(permissions=["cancel"], description=_("Cancel selected jobs"))
    def cancel_jobs(self, request: HttpRequest, queryset) -> None:
        selected = queryset.count()
        pending = list(queryset.pending().filter(cancel_requested_at__isnull=True)
                       .only("id", "name", "status", "workflow_id"))
        cancelled, requested = queryset.cancel()
        # Jobs waiting for the cancelled workflow members learn it now.
        workflows.settle([job.pk for job in pending if job.workflow_id is not None])
        log_jobs(request, pending, "Cancelled (admin action).")
        self._report_cancel(request, cancelled, requested, selected - cancelled - requested)

    def _report_cancel(self, request, cancelled: int, requested: int, untouched: int) -> None:
        if cancelled:
            self.message_user(request, ngettext(
                "Cancelled %d scheduled job.", "Cancelled %d scheduled jobs.", cancelled
            ) % cancelled, messages.SUCCESS)
        if requested:
            self.message_user(request, ngettext(
                "Asked %d running job to stop; it ends cancelled at its next check.",
                "Asked %d running jobs to stop; they end cancelled at their next check.",
                requested,
            ) % requested, messages.SUCCESS)
        if untouched:
            self.message_user(request, ngettext(
                "%d job was left alone: already finished or already cancelling.",
                "%d jobs were left alone: already finished or already cancelling.",
                untouched,
            ) % untouched, messages.WARNING)

    @admin.action(permissions=["retry"], description=_("Retry selected jobs as new runs"))
    def retry_jobs(self, request: HttpRequest, queryset) -> None:
        created, refused, succeeded_later = [], [], []
        for job in queryset.defer(None).order_by("created_at"):
            if job.status == JobStatus.FAILED and self._succeeded_later(job):
                succeeded_later.append(job)
                continue
            try:
                created.append(self._retry(request, job))
            except InvalidJobState:
                refused.append(job)
        self._report_retry(request, created, refused)
        if succeeded_later:
            self.message_user(request, ngettext(
                "Did not retry %(n)d failed run whose chain later succeeded (%(names)s).",
                "Did not retry %(n)d failed runs whose chains later succeeded (%(names)s).",
                len(succeeded_later),
            ) % {"n": len(succeeded_later), "names": _describe(succeeded_later)},
                messages.WARNING)

    def _retry(self, request: HttpRequest, job: Job) -> Job:
        new = registry.retry(job.pk, created_by=request.user)
        log_jobs(request, [job], f"Retried as a new run {new.pk}.")
        log_jobs(request, [new], f"Created as a retry of {job.pk}.")
        return new

    @staticmethod
    def _succeeded_later(job: Job) -> bool:
        """Whether a later run of this run's chain (retry of a retry...) succeeded."""
        return any(run.status == JobStatus.SUCCEEDED
                   for run in Job.objects.runs_after(job.pk, CHAIN_DEPTH))

    def _report_retry(self, request, created: list[Job], refused: list[Job]) -> None:
        if len(created) == 1:
            self.message_user(request, format_html(
                'Retried {} as a new run: <a href="{}">{}</a>.',
                created[0].name, self._change_url(created[0]), str(created[0].pk)[:8],
            ), messages.SUCCESS)
        elif created:
            self.message_user(
                request, f"Retried {len(created)} jobs as new runs.", messages.SUCCESS
            )
        if refused:
            self.message_user(request, ngettext(
                "Refused to retry %(n)d job that is not finished (%(names)s); a running or "
                "scheduled job is never retried, so it cannot run twice at once.",
                "Refused to retry %(n)d jobs that are not finished (%(names)s); a running or "
                "scheduled job is never retried, so it cannot run twice at once.",
                len(refused),
            ) % {"n": len(refused), "names": _describe(refused)}, messages.ERROR)

    @admin.action(permissions=["run"], description=_("Run selected scheduled jobs now"))
    def run_jobs_now(self, request: HttpRequest, queryset) -> None:
        moved, refused = [], []
        for job in queryset.order_by("run_at"):
            (moved if job.run_now() else refused).append(job)
        log_jobs(request, moved, "Made due now (run now).")
        self._report_run_now(request, moved, refused)

    def _report_run_now(self, request, moved: list[Job], refused: list[Job]) -> None:
        if moved:
            self.message_user(request, ngettext(
                "%(n)d scheduled job is due now (%(names)s); a worker starts it next.",
                "%(n)d scheduled jobs are due now (%(names)s); workers start them next.",
                len(moved),
            ) % {"n": len(moved), "names": _describe(moved)}, messages.SUCCESS)
        if refused:
            self.message_user(request, ngettext(
                "Refused to run %(n)d job that is not scheduled (%(names)s): it is running or "
                "finished. Use retry for a finished job.",
                "Refused to run %(n)d jobs that are not scheduled (%(names)s): they are running "
                "or finished. Use retry for a finished job.",
                len(refused),
            ) % {"n": len(refused), "names": _describe(refused)}, messages.ERROR)

    # -- one job: buttons on its page --------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        urls = [
            path("live/", wrap(self.live_view), name=self.url_name("live")),
            path("new/", wrap(self.new_rows_view), name=self.url_name("new_rows")),
            path("pause/", wrap(self.pause_view), name=self.url_name("pause")),
            *self.dashboard_urls(),
            *self.failures_urls(),
            *self.overview_urls(),
            path("<path:object_id>/cancel/", wrap(self.cancel_view),
                 name=self.url_name("cancel")),
            path("<path:object_id>/retry/", wrap(self.retry_view), name=self.url_name("retry")),
            path("<path:object_id>/run-now/", wrap(self.run_now_view),
                 name=self.url_name("run_now")),
        ]
        return urls + super().get_urls()

    def _job_for(self, request: HttpRequest, object_id: str) -> Job:
        job_id = as_uuid(unquote(object_id))
        if job_id is None:
            raise Http404("no such job")
        return get_object_or_404(Job.objects.all(), pk=job_id)

    def _back(self, request: HttpRequest, job: Job | None) -> HttpResponseRedirect:
        """Back where the button was (the dashboard, the list), else to the job's page (or
        the dashboard)."""
        target = request.POST.get("next", "")
        if target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return HttpResponseRedirect(target)
        if job is None:
            return HttpResponseRedirect(self.dashboard_url())
        return HttpResponseRedirect(self._change_url(job))

    @method_decorator(require_POST)
    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        job = self._job_for(request, object_id)
        try:
            affected = registry.cancel(job.pk)
        except JobNotFound:
            raise Http404("no such job") from None
        job.refresh_from_db(fields=["status", "cancel_requested_at"])
        # Messages never start with the job's name: the admin capitalises a message's first
        # letter, and names are case-sensitive.
        if not affected:
            self.message_user(request, f"Not cancelled: {job.name} is already "
                              f"{display.status_label(job)}.", messages.WARNING)
        elif job.status == JobStatus.CANCELLED:
            log_jobs(request, [job], "Cancelled before it started.")
            self.message_user(request, f"Cancelled {job.name} before it started.",
                              messages.SUCCESS)
        else:
            log_jobs(request, [job], "Asked to stop (cancel requested while running).")
            self.message_user(request, f"Asked {job.name} to stop; it ends cancelled at its "
                              "next check.", messages.SUCCESS)
        return self._back(request, job)

    @method_decorator(require_POST)
    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_retry_permission(request):
            raise PermissionDenied
        job = self._job_for(request, object_id)
        if job.status == JobStatus.FAILED and self._succeeded_later(job):
            self.message_user(request, f"Not retried: a later run of {job.name} "
                              f"{short_id(job.pk)} already succeeded.", messages.WARNING)
            return self._back(request, job)
        try:
            new = self._retry(request, job)
        except InvalidJobState:
            self._report_retry(request, [], [job])
            return self._back(request, job)
        self._report_retry(request, [new], [])
        return HttpResponseRedirect(self._change_url(new))

    @method_decorator(require_POST)
    def run_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_run_permission(request):
            raise PermissionDenied
        job = self._job_for(request, object_id)
        if job.run_now():
            log_jobs(request, [job], "Made due now (run now).")
            self._report_run_now(request, [job], [])
        else:
            self._report_run_now(request, [], [job])
        return self._back(request, job)

    def nav_context(self, request: HttpRequest) -> dict[str, Any]:
        """Links between the jobs, job types and locks pages, and the live script's settings."""
        context: dict[str, Any] = {
            "dashboard_url": self.dashboard_url(),
            "failures_url": self.admin_url("failures"),
            "overview_url": self.admin_url("overview"),
            "dj_live": {
                "url": self.admin_url("live"),
                "interval": LIVE_INTERVAL_MS,
            },
        }
        lock_admin = self.admin_site._registry.get(JobTypeLock)
        if lock_admin is not None and lock_admin.has_view_permission(request):
            context["locks_url"] = reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_jobtypelock_changelist"
            )
        if self.can_view_workers(request):
            context["workers_url"] = reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_worker_changelist"
            )
        if self.can_view_workflows(request):
            context["workflows_url"] = reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_workflow_changelist"
            )
        return context

    def changelist_view(self, request, extra_context=None):
        context = self.nav_context(request)
        # New rows are counted from the moment this page was made, under the page's filters.
        context["dj_live"].update({
            "new_url": self.admin_url("new_rows"), "since": clock.now().isoformat(),
            "new_interval": NEW_ROWS_INTERVAL_MS,
        })
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def new_rows_view(self, request: HttpRequest) -> JsonResponse:
        """``GET ?since=ISO&<the list's filters>`` -> how many jobs arrived since; read-only."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        params = request.GET.copy()
        since = parse_datetime(params.pop("since", [""])[0])
        if since is None:
            return JsonResponse({"error": "since= must be an ISO 8601 time"}, status=400)
        # The admin's own ChangeList applies the filters and the search of the list page.
        request.GET = params
        request.dj_count_new_rows = True
        changelist = self.get_changelist_instance(request)
        ids = changelist.queryset.filter(created_at__gt=since).order_by().values_list(
            "pk", flat=True
        )[:NEW_ROWS_MAX]
        count = len(ids)
        return JsonResponse({"count": count, "more": count >= NEW_ROWS_MAX})

    @method_decorator(require_POST)
    def pause_view(self, request: HttpRequest) -> HttpResponse:
        """Pause or resume a queue or a recurring job, through the control API."""
        if not self.has_pause_permission(request):
            raise PermissionDenied
        kind, action = request.POST.get("kind"), request.POST.get("action")
        name = request.POST.get("name", "").strip()
        if kind not in ("queue", "job") or action not in ("pause", "resume") or not name:
            return HttpResponse("kind=queue|job, action=pause|resume and name= are required",
                                status=400, content_type="text/plain")
        back = self._back(request, None)
        if kind == "queue":
            (registry.pause_queue if action == "pause" else registry.resume_queue)(name)
            log_other(request, PausedQueue, name, f"queue {name}",
                      f"{action.capitalize()}d the queue {name}.")
            self.message_user(request, (
                f"Paused the queue {name}: its jobs stay scheduled until it is resumed."
                if action == "pause" else f"Resumed the queue {name}: workers take its jobs again."
            ), messages.SUCCESS)
            return back
        try:
            (registry.pause if action == "pause" else registry.resume)(name)
        except UnknownJob as exc:
            self.message_user(request, f"Nothing changed: {exc}.", messages.ERROR)
            return back
        except ValueError as exc:
            self.message_user(request, f"Nothing changed: {exc}.", messages.ERROR)
            return back
        log_other(request, JobSchedule, name, f"recurring job {name}",
                  f"{action.capitalize()}d the recurring job {name}.")
        self.message_user(request, (
            f"Paused the recurring job {name}: pending runs are cancelled and no new ones are "
            "made until it is resumed." if action == "pause"
            else f"Resumed the recurring job {name}: it runs again from its next occurrence."
        ), messages.SUCCESS)
        return back

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**self.nav_context(request), **(extra_context or {})}
        job_id = as_uuid(unquote(object_id))
        job = (Job.objects.only("id", "name", "status", "workflow").filter(pk=job_id).first()
               if job_id else None)
        if job is not None:
            extra_context["job_buttons"] = self.buttons(request, job)
            if job.workflow_id is not None and self.can_view_workflows(request):
                extra_context["workflow_url"] = reverse(
                    f"{self.admin_site.name}:{self.opts.app_label}_workflow_change",
                    args=[job.workflow_id],
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def buttons(self, request: HttpRequest, job: Job) -> list[dict[str, str]]:
        """The actions that make sense for ``job`` now and that this user may take."""
        found = []
        if job.status in (JobStatus.SCHEDULED, JobStatus.RUNNING) and \
                self.has_cancel_permission(request):
            found.append({"label": "Cancel", "action": "cancel", "danger": "true",
                          "url": self.admin_url("cancel", job.pk),
                          "confirm": f"Cancel {job.name} {short_id(job.pk)}?"})
        if job.status == JobStatus.SCHEDULED and self.has_run_permission(request):
            found.append({"label": "Run now", "action": "run-now", "danger": "",
                          "url": self.admin_url("run_now", job.pk), "confirm": ""})
        # A failed attempt whose chain went on to succeed needs no retry: offering one would
        # invite doing the work twice.
        if job.is_finished and self.has_retry_permission(request) and not (
            job.status == JobStatus.FAILED and self._succeeded_later(job)
        ):
            found.append({"label": "Retry as a new run", "action": "retry", "danger": "",
                          "url": self.admin_url("retry", job.pk), "confirm": ""})
        return found

    # -- live progress -----------------------------------------------------------------------

    def live_view(self, request: HttpRequest) -> JsonResponse:
        """``GET ?id=..&id=..`` -> the state of those jobs; read-only, for the page's script."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = [job_id for job_id in map(as_uuid, request.GET.getlist("id")[:LIVE_MAX_IDS])
               if job_id is not None]
        now = clock.now()
        jobs = (
            Job.objects.filter(pk__in=ids).only(*display.STATE_FIELDS).with_retry_state()
            if ids else []
        )
        # admin_view() adds never_cache: every poll reads the database.
        return JsonResponse({"jobs": [display.state(job, now) for job in jobs]})


def _describe(jobs: list[Job], limit: int = 3) -> str:
    names = [f"{job.name} {str(job.pk)[:8]}" for job in jobs[:limit]]
    if len(jobs) > limit:
        names.append(f"and {len(jobs) - limit} more")
    return ", ".join(names)
