"""Retention: delete finished rows older than their job's ``keep``, in small batches.

Batches keep each transaction short so pruning never holds locks that the claim needs; only
finished rows are ever considered, never scheduled or running ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from . import clock
from .jobtypes import registry
from .models import Job

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
    querysets = [Job.objects.prunable(now - keep).filter(name__in=names)
                 for keep, names in groups.items()]
    querysets.append(Job.objects.prunable(now - DEFAULT_KEEP).exclude(name__in=list(registered)))
    for qs in querysets:
        while max_batches is None or batches < max_batches:
            ids = list(qs.order_by("finished_at").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            deleted += Job.objects.filter(pk__in=ids).finished().delete()[1].get(
                Job._meta.label, 0
            )
            batches += 1
    return deleted
