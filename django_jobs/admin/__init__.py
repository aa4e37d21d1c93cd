"""The django-jobs admin: the job list and pages, the job types dashboard, the overview, the
failures, workers, workflows and locks pages.

Read-only: operators act through actions and buttons that call the public API, each behind its
own permission (``django_jobs.cancel_job``, ``retry_job``, ``run_job``; releasing a lock takes
``delete_jobtypelock``; cancelling a workflow, ``cancel_job``).
"""

from django.contrib import admin

from ..models import Job, JobTypeLock, Worker, Workflow
from .job import JobAdmin
from .lock import JobTypeLockAdmin
from .worker import WorkerAdmin
from .workflow import WorkflowAdmin

admin.site.register(Job, JobAdmin)
admin.site.register(JobTypeLock, JobTypeLockAdmin)
admin.site.register(Worker, WorkerAdmin)
admin.site.register(Workflow, WorkflowAdmin)

__all__ = ["JobAdmin", "JobTypeLockAdmin", "WorkerAdmin", "WorkflowAdmin"]
