"""The django-jobs admin: the job list and pages, the job types dashboard and the locks page.

Read-only: operators act through actions and buttons that call the public API, each behind its
own permission (``django_jobs.cancel_job``, ``retry_job``, ``run_job``; releasing a lock takes
``delete_jobtypelock``).
"""

from django.contrib import admin

from ..models import Job, JobTypeLock
from .job import JobAdmin
from .lock import JobTypeLockAdmin

admin.site.register(Job, JobAdmin)
admin.site.register(JobTypeLock, JobTypeLockAdmin)

__all__ = ["JobAdmin", "JobTypeLockAdmin"]
