"""The workflows: their list, and one page per workflow with its members in dependency order,
its graph, live progress and a Cancel button.

Read-only like the rest of the admin. The page reads ``registry.workflow_status()``, the
snapshot that ``manage.py jobs workflow`` prints and that the page's script asks for again, as
JSON, every few seconds. Cancelling calls ``registry.cancel_workflow()``, behind
``django_jobs.cancel_job`` (the permission that cancels the jobs themselves), on a POST that
passed the CSRF check. The list reads the workflow rows with their state annotated, and the
members of the page's rows in one grouped query: a fixed number of queries per page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from .. import clock
from ..control import registry
from ..exceptions import JobNotFound
from ..humanize import counts_words, duration_words
from ..ids import SHORT_ID_MIN, short_id
from ..models import FailurePolicy, Job, JobStatus, RunWhen, Workflow
from ..models.querysets import id_prefix_q
from ..types import WorkflowInfo, WorkflowMember
from . import display
from .audit import log_workflow
from .job import as_uuid

#: How often the workflow page asks for the workflow's state.
WORKFLOW_INTERVAL_MS = 2000
#: Members listed on a workflow's page; the job list filtered on the workflow has them all.
MEMBERS_SHOWN = 500
#: Deepest indentation of the graph (a long chain would push its tail off the screen).
GRAPH_INDENT_MAX = 16
#: What the status filter offers: a workflow runs until no member is left to run.
STATES = ("running", "succeeded", "failed", "cancelled")
ENDED = (JobStatus.SUCCEEDED, JobStatus.SKIPPED, JobStatus.FAILED, JobStatus.CANCELLED)
POLICY_HELP = {
    FailurePolicy.CANCEL: _("a member's final failure cancels every member not finished yet; "
                            "the callbacks that run on failure or on finish still run"),
    FailurePolicy.CONTINUE: _("a member's final failure cancels only what waits for it"),
}


@dataclass
class Members:
    """A page row's members by status, and their progress (an ended member counts as done),
    reckoned as ``registry.workflow_status()`` does."""

    counts: dict[str, int] = field(default_factory=dict)
    done: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else 1.0


def members_of(workflow_ids: list[Any]) -> dict[Any, Members]:
    """The members of these workflows, by status: one grouped query."""
    found: dict[Any, Members] = {}
    for workflow_id, status, n, progress in Job.objects.workflow_member_counts(workflow_ids):
        members = found.setdefault(workflow_id, Members())
        members.counts[status] = n
        members.done += n if status in ENDED else (progress or 0.0)
    return found


def eta_words(info: WorkflowInfo) -> str:
    """The ETA as the page's script writes it too: "in 1 min 5 s", "any moment" or a dash."""
    if info.status != JobStatus.RUNNING or info.eta is None:
        return display.DASH
    now = clock.now()
    if info.eta <= now:
        return "any moment"
    return "in " + duration_words(info.eta - now)


def label(name: str, workflow_id: Any) -> str:
    """``nightly-import 3f0c0e4e``, or the short id alone for a workflow without a name."""
    return f"{display.visible(name)} {short_id(workflow_id)}" if name else short_id(workflow_id)


class StatusFilter(admin.SimpleListFilter):
    """By state, open workflows included (``running`` until no member is left to run)."""

    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(state, state) for state in STATES]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        if self.value() == "running":
            # Only open workflows can be running: the partial index of open rows.
            queryset = queryset.open()
        return queryset.filter(state=self.value())


class WorkflowChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        found = members_of([workflow.pk for workflow in self.result_list])
        for workflow in self.result_list:
            workflow.members = found.get(workflow.pk, Members())


class WorkflowAdmin(admin.ModelAdmin):
    list_display = ("workflow", "status_cell", "progress_cell", "members_cell", "created",
                    "finished")
    list_display_links = ("workflow",)
    list_filter = (StatusFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "name")
    search_help_text = _("Search by workflow id (or its first 8 characters) or name.")
    ordering = ("-created_at",)
    list_per_page = 50
    show_full_result_count = False
    change_list_template = "admin/django_jobs/workflow/change_list.html"

    class Media:
        css = {"all": ("django_jobs/admin.css",)}
        js = ("django_jobs/live.js",)

    # -- read-only ---------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Workflow | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Workflow | None = None) -> bool:
        # Workflows go with their members, through pruning.
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_job")

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).with_state()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WorkflowChangeList

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(name__icontains=term)
        workflow_id = as_uuid(term)
        if workflow_id is not None:
            match |= Q(pk=workflow_id)
        elif len(term.replace("-", "")) >= SHORT_ID_MIN:
            # The 8 characters the pages show find their workflow (a range on the key).
            prefix = id_prefix_q(term, queryset.db)
            if prefix is not None:
                match |= prefix
        return queryset.filter(match), False

    # -- columns -----------------------------------------------------------------------------

    @admin.display(description=_("workflow"), ordering="name")
    def workflow(self, obj: Workflow) -> str:
        name = display.visible(obj.name) if obj.name else format_html(
            '<span class="dj-muted">{}</span>', _("(no name)"))
        return format_html('<span class="dj-name">{}</span> <span class="dj-id">{}</span>',
                           name, short_id(obj.pk))

    @admin.display(description=_("status"), ordering="state")
    def status_cell(self, obj: Workflow) -> str:
        return display.badge(obj.pk, obj.state)

    @admin.display(description=_("progress"))
    def progress_cell(self, obj: Workflow) -> str:
        return display.bar(obj.pk, obj.state, int(obj.members.progress * 100))

    @admin.display(description=_("members"))
    def members_cell(self, obj: Workflow) -> str:
        return counts_words(obj.members.counts)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: Workflow) -> str:
        return display.when(obj.created_at)

    @admin.display(description=_("finished"), ordering="finished_at")
    def finished(self, obj: Workflow) -> str:
        return display.when(obj.finished_at)

    # -- urls --------------------------------------------------------------------------------

    def url_name(self, suffix: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def admin_url(self, suffix: str, *args: Any) -> str:
        return reverse(f"{self.admin_site.name}:{self.url_name(suffix)}", args=args)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        urls = [
            path("<path:object_id>/state/", wrap(self.state_view), name=self.url_name("state")),
            path("<path:object_id>/cancel/", wrap(self.cancel_view),
                 name=self.url_name("cancel")),
        ]
        return urls + super().get_urls()

    def nav_context(self, request: HttpRequest) -> dict[str, Any]:
        """The links between the jobs app's pages, as the job admin gives them."""
        job_admin = self.admin_site._registry.get(Job)
        context = job_admin.nav_context(request) if hasattr(job_admin, "nav_context") else {}
        context.pop("dj_live", None)
        context["changelist_url"] = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_job_changelist")
        context["workflows_url"] = self.admin_url("changelist")
        return context

    def jobs_url(self, workflow_id: Any) -> str:
        """The job list, filtered on the members of this workflow."""
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_job_changelist") + \
            "?" + urlencode({"workflow": str(workflow_id)})

    def job_url(self, job_id: Any) -> str:
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_job_change",
                       args=[job_id])

    def _info(self, object_id: str) -> WorkflowInfo:
        workflow_id = as_uuid(unquote(object_id))
        if workflow_id is None:
            raise Http404("no such workflow")
        try:
            return registry.workflow_status(workflow_id)
        except JobNotFound:
            raise Http404("no such workflow") from None

    # -- pages -------------------------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {**self.nav_context(request), **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The workflow's page: read-only, so it answers ``GET`` only."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied
        info = self._info(object_id)
        ordered = info.in_dependency_order()
        positions = {member.id: n for n, (member, _depth) in enumerate(ordered, start=1)}
        shown = ordered[:MEMBERS_SHOWN]
        title = label(info.name, info.id)
        context = {
            **self.admin_site.each_context(request),
            **self.nav_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "info": info,
            "label": title,
            "status_badge": display.badge(info.id, info.status),
            "progress_bar": display.bar(info.id, info.status, int(info.progress * 100)),
            "eta": eta_words(info),
            "counts": counts_words(info.counts),
            "policy": FailurePolicy(info.on_failure).label
            if info.on_failure in FailurePolicy.values else info.on_failure,
            "policy_help": POLICY_HELP.get(info.on_failure, ""),
            "created": display.when(info.created_at),
            "cancelled": display.when(info.cancelled_at),
            "finished": display.when(info.finished_at),
            "members": [self.member_row(member, depth, positions) for member, depth in shown],
            "total": len(ordered),
            "hidden": len(ordered) - len(shown),
            "jobs_url": self.jobs_url(info.id),
            "can_cancel": self.has_cancel_permission(request),
            "cancel_url": self.admin_url("cancel", info.id),
            "history_url": self.admin_url("history", info.id),
            "dj_live": {
                "workflow_url": self.admin_url("state", info.id),
                "interval": WORKFLOW_INTERVAL_MS,
                "live": info.status == JobStatus.RUNNING,
                "members": len(ordered),
            },
            "media": self.media,
        }
        return TemplateResponse(request, "admin/django_jobs/workflow/detail.html", context)

    def member_row(self, member: WorkflowMember, depth: int,
                   positions: dict[Any, int]) -> dict[str, Any]:
        """One member, for its row of the table and its line of the graph."""
        after = []
        for pk in member.after:
            # A member it waits for has a row here; an attempt retried since, only a job page.
            href = f"#member-{pk}" if pk in positions else self.job_url(pk)
            after.append({"href": href, "short_id": short_id(pk), "position": positions.get(pk)})
        return {
            "id": member.id,
            "position": positions[member.id],
            "name": display.visible(member.name),
            "short_id": short_id(member.id),
            "url": self.job_url(member.id),
            "badge": display.badge(member.id, member.status),
            "bar": display.bar(member.id, member.status,
                               display.percent_of(member.status, member.progress)),
            "message": display.visible(member.message),
            "error": display.visible(member.error),
            "failed": member.status == JobStatus.FAILED,
            "attempt": member.attempt,
            "run_when": RunWhen(member.run_when).label if member.run_when in RunWhen.values
            else display.DASH,
            "after": after,
            "depth": depth,
            "indent": range(min(depth, GRAPH_INDENT_MAX)),
        }

    @method_decorator(require_GET)
    def state_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """``GET`` -> ``registry.workflow_status(id).as_dict()``, for the page's script."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            info = self._info(object_id)
        except Http404:
            return JsonResponse({"error": "no such workflow"}, status=404)
        # admin_view() adds never_cache: every poll reads the database.
        return JsonResponse(info.as_dict())

    @method_decorator(require_POST)
    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        info = self._info(object_id)
        back = HttpResponseRedirect(self.admin_url("change", info.id))
        name = label(info.name, info.id)
        # Messages never start with a name: the admin capitalises a message's first letter.
        if info.status != JobStatus.RUNNING:
            self.message_user(request, f"Not cancelled: the workflow {name} is already "
                              f"{info.status}.", messages.WARNING)
            return back
        running = info.counts.get(JobStatus.RUNNING, 0)
        cancelled = registry.cancel_workflow(info.id)
        log_workflow(request, info.id, f"Cancelled the workflow: {cancelled} member(s) "
                     f"cancelled, {running} running member(s) asked to stop.")
        self.message_user(request, ngettext(
            "Cancelled %(n)d job of the workflow %(name)s.",
            "Cancelled %(n)d jobs of the workflow %(name)s.", cancelled,
        ) % {"n": cancelled, "name": name}, messages.SUCCESS)
        if running:
            self.message_user(request, ngettext(
                "Asked %d running job to stop; it ends cancelled at its next check.",
                "Asked %d running jobs to stop; they end cancelled at their next check.",
                running,
            ) % running, messages.SUCCESS)
        return back
