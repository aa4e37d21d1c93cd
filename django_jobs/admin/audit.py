"""Every admin action goes to Django's admin log, so HISTORY and "Recent actions" show who did
what. ``LogEntry.objects.log_actions()`` is the API of Django 5.1 and later (``log_action()``
is gone in 6.0); actions on things that are not rows (a queue) are written as plain entries.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest

from ..models import Job, Workflow


def log_jobs(request: HttpRequest, jobs: Iterable[Job], message: str) -> None:
    """One ``CHANGE`` entry per job, on each job's history page."""
    ids = [job.pk for job in jobs]
    if not ids:
        return
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=Job.objects.filter(pk__in=ids).only("id", "name", "status"),
        action_flag=CHANGE,
        change_message=message,
        single_object=len(ids) == 1,
    )


def log_workflow(request: HttpRequest, workflow_id: object, message: str) -> None:
    """One ``CHANGE`` entry on the workflow's history page."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=Workflow.objects.filter(pk=workflow_id).only("id", "name"),
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


def log_other(
    request: HttpRequest, model: type[models.Model], object_id: str, label: str, message: str
) -> None:
    """An entry about something the admin has no page for (a paused queue, a schedule)."""
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type=ContentType.objects.get_for_model(model, for_concrete_model=False),
        object_id=object_id,
        object_repr=label[:200],
        action_flag=CHANGE,
        change_message=message,
    )
