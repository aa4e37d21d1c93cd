"""Retention: delete finished rows older than their job's ``keep``, in small batches.

Batches keep each transaction short so pruning never holds locks that the claim needs; only
finished rows are ever considered, never scheduled or running ones. The members of a workflow
go together with it, once it has finished and its longest ``keep`` has passed: until then its
callbacks and its page still read them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from . import clock
from .conf import jobs_settings
from .jobtypes import registry
from .models import Job, JobDependency, Workflow

#: ``keep`` of rows whose job is no longer registered.
DEFAULT_KEEP = timedelta(days=7)


def prune(now: datetime | None = None, *, batch: int = 1000, max_batches: int | None = None) -> int:
    """Delete expired finished rows; return how many were deleted."""
    now = now or clock.now()
    deleted = 0
    batches = 0
    registered = {jt.name: jt.keep for jt in registry}
    # Registered jobs, each by its own keep (None keeps forever).
    groups: dict[timedelta, list[str]] = {}
    for name, keep in registered.items():
        if keep is not None:
            groups.setdefault(keep, []).append(name)
    alone = Job.objects.filter(workflow__isnull=True)
    querysets = [alone.prunable(now - keep).filter(name__in=names)
                 for keep, names in groups.items()]
    querysets.append(alone.prunable(now - DEFAULT_KEEP).exclude(name__in=list(registered)))
    for qs in querysets:
        while max_batches is None or batches < max_batches:
            ids = list(qs.order_by("finished_at").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            deleted += Job.objects.filter(pk__in=ids).finished().delete()[1].get(
                Job._meta.label, 0
            )
            batches += 1
    return deleted + prune_workflows(now, registered, batch=batch)


def prune_workflows(
    now: datetime, registered: dict[str, timedelta | None], *, batch: int = 1000
) -> int:
    """Delete finished workflows whose members' longest ``keep`` has passed, with their
    members and links, one workflow per transaction. Returns how many jobs went."""
    keeps = [keep for keep in registered.values() if keep is not None] + [DEFAULT_KEEP]
    deleted = 0
    db = jobs_settings.DATABASE
    for workflow_id, finished_at in (Workflow.objects.prunable(now - min(keeps))
                                     .order_by("finished_at")
                                     .values_list("pk", "finished_at")[:batch]):
        members = Job.objects.in_workflow(workflow_id)
        names = set(members.order_by().values_list("name", flat=True).distinct())
        member_keeps = [registered.get(name, DEFAULT_KEEP) for name in names]
        if None in member_keeps:
            continue  # a member is kept forever: so is its workflow
        if finished_at >= now - max(member_keeps, default=DEFAULT_KEEP):
            continue
        with transaction.atomic(using=db):
            if members.pending().exists():
                continue  # a member was retried by hand meanwhile
            JobDependency.objects.filter(workflow=workflow_id).delete()
            deleted += members.delete()[1].get(Job._meta.label, 0)
            Workflow.objects.filter(pk=workflow_id).delete()
    return deleted
