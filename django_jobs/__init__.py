"""django-jobs: durable background jobs for Django, run from the project's own database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import JobContext
from .exceptions import (
    AmbiguousJobId,
    InvalidJobState,
    JobAlreadyRunning,
    JobCancelled,
    JobDisabled,
    JobError,
    JobNotFound,
    JobStillRunning,
    JobTablesMissing,
    JobTimeout,
    LockKeyError,
    Snooze,
    UnknownJob,
)
from .jobtypes import JobType, job, registry
from .version import __version__

if TYPE_CHECKING:
    from .models import Job


__all__ = [
    "__version__",
    "AmbiguousJobId",
    "JobAlreadyRunning",
    "JobCancelled",
    "JobContext",
    "JobDisabled",
    "JobError",
    "JobNotFound",
    "JobStillRunning",
    "JobTablesMissing",
    "JobTimeout",
    "JobType",
    "InvalidJobState",
    "LockKeyError",
    "Snooze",
    "UnknownJob",
    "enqueue",
    "job",
    "registry",
]


def enqueue(name: str, /, *args: Any, **data: Any) -> Job:
    """Enqueue the registered job ``name`` with ``data``; options as for ``fn.enqueue()``."""
    from .enqueuing import enqueue as _enqueue

    return _enqueue(name, *args, **data)
