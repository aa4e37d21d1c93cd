"""A read-only admin for jobs and locks."""

from __future__ import annotations

from django.contrib import admin

from .models import Job, JobTypeLock


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "queue", "priority", "progress", "run_at", "started_at",
                    "finished_at", "attempt", "worker")
    list_filter = ("status", "queue", "name")
    search_fields = ("=id", "name", "unique_key")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JobTypeLock)
class JobTypeLockAdmin(admin.ModelAdmin):
    list_display = ("key", "job", "worker", "locked_until", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
