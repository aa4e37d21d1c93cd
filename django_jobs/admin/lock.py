"""The locks page: who holds each ``JobTypeLock`` and until when, and a careful release.

Releasing an expired lock is routine (its holder stopped heartbeating; a worker would take it
over anyway). Releasing a held one can let a second run start beside a live one, so it takes the
release permission, a confirmation page and a POST naming the holder the operator saw.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import clock
from ..humanize import duration_words
from ..models import JobTypeLock
from . import display
from .audit import log_other


class JobTypeLockAdmin(admin.ModelAdmin):
    list_display = ("key", "holder", "worker", "locked_until", "expiry", "updated_at", "release")
    list_select_related = ("job",)
    search_fields = ("key", "worker")
    actions = ("release_expired",)
    readonly_fields = ("key", "holder", "worker", "locked_until", "expiry", "updated_at")
    fields = readonly_fields

    class Media:
        css = {"all": ("django_jobs/admin.css",)}

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).with_holder_state().defer(
            "job__data", "job__result", "job__error", "job__meta"
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Deleting a lock row *is* releasing it; that goes through the release page only.
        return False

    def has_release_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_jobtypelock")

    @admin.display(description=_("holder job"))
    def holder(self, obj: JobTypeLock) -> str:
        job = obj.job
        if job is None:
            return display.DASH
        url = reverse(f"{self.admin_site.name}:django_jobs_job_change", args=[job.pk])
        return format_html(
            '<a href="{}">{} <span class="dj-id">{}</span></a> {}',
            url, job.name, str(job.pk)[:8], display.status_badge(job),
        )

    @admin.display(description=_("expiry"), ordering="locked_until")
    def expiry(self, obj: JobTypeLock) -> str:
        now = clock.now()
        if obj.owner_id is not None:
            if getattr(obj, "owner_live", True):
                return format_html(
                    '<span class="dj-badge dj-status-running">{}</span>',
                    _("held while its worker lives"),
                )
            return format_html(
                '<span class="dj-badge dj-status-failed">{}</span>',
                _("stale: its worker is lost; freed by the next sweep"),
            )
        if obj.locked_until is None:
            return format_html('<span class="dj-badge dj-status-running">{}</span>', _("held"))
        if obj.locked_until <= now:
            return format_html(
                '<span class="dj-badge dj-status-failed">expired {} ago</span>',
                duration_words(now - obj.locked_until),
            )
        return format_html(
            '<span class="dj-badge dj-status-running">held, expires in {}</span>',
            duration_words(obj.locked_until - now),
        )

    @admin.display(description=_("release"))
    def release(self, obj: JobTypeLock) -> str:
        url = reverse(
            f"{self.admin_site.name}:django_jobs_jobtypelock_release", args=[quote(obj.pk)]
        )
        return format_html('<a class="dj-link-button" href="{}">{}</a>', url, _("Release…"))

    @admin.action(permissions=["release"], description=_("Release selected locks if expired"))
    def release_expired(self, request: HttpRequest, queryset) -> None:
        keys = list(queryset.values_list("pk", flat=True))
        selected = len(keys)
        expired = JobTypeLock.objects.stale().filter(pk__in=keys)
        expired_keys = list(expired.values_list("pk", flat=True))
        released = expired.delete()[0]
        if released:
            for key in expired_keys:
                log_other(request, JobTypeLock, key, f"lock {key}",
                          "Released the expired lock (bulk action).")
        if released:
            self.message_user(request, ngettext(
                "Released %d expired lock.", "Released %d expired locks.", released
            ) % released, messages.SUCCESS)
        if selected - released:
            self.message_user(request, ngettext(
                "%d lock is still held and was kept; use its Release page to force it.",
                "%d locks are still held and were kept; use their Release pages to force them.",
                selected - released,
            ) % (selected - released), messages.WARNING)

    def get_urls(self):
        return [
            path("<path:object_id>/release/", self.admin_site.admin_view(self.release_view),
                 name=f"{self.opts.app_label}_{self.opts.model_name}_release"),
        ] + super().get_urls()

    def release_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what releasing would mean. POST: release, if expired or explicitly confirmed."""
        if not self.has_release_permission(request):
            raise PermissionDenied
        key = unquote(object_id)
        lock = self.get_queryset(request).filter(pk=key).first()
        changelist = reverse(f"{self.admin_site.name}:django_jobs_jobtypelock_changelist")
        if lock is None:
            if request.method == "POST":
                self.message_user(request, f"The lock {key} is no longer held.", messages.INFO)
                return HttpResponseRedirect(changelist)
            raise Http404("no such lock")
        expired = JobTypeLock.objects.stale().filter(pk=lock.pk).exists()
        if request.method == "POST":
            return self._release(request, lock, expired, changelist)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Release lock %s") % key,
            "opts": self.opts,
            "lock": lock,
            "expired": expired,
            "holder": self.holder(lock),
            "expiry": self.expiry(lock),
            "changelist_url": changelist,
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/django_jobs/jobtypelock/release.html", context
        )

    def _release(self, request, lock: JobTypeLock, expired: bool, changelist: str):
        rows = JobTypeLock.objects.filter(pk=lock.pk)
        if expired:
            released = rows.stale().delete()[0]
        elif request.POST.get("confirm") == "yes":
            # Only the holder the operator saw: if another run took the lock since, keep it.
            seen = request.POST.get("claim_id") or None
            released = rows.filter(claim_id=seen).delete()[0] if seen else 0
        else:
            self.message_user(request, _(
                "The lock is held and was kept: tick the confirmation to release a held lock."
            ), messages.ERROR)
            return HttpResponseRedirect(request.path)
        if released:
            log_other(request, JobTypeLock, lock.pk, f"lock {lock.pk}",
                      "Released the expired lock." if expired
                      else f"Released the held lock (holder job {lock.job_id}).")
            self.message_user(request, f"Released the lock {lock.pk}.", messages.SUCCESS)
        else:
            self.message_user(request, f"The lock {lock.pk} changed hands meanwhile and was "
                              "kept; look again before releasing it.", messages.WARNING)
        return HttpResponseRedirect(changelist)
