"""django-jobs: durable background jobs for Django, run from the project's own database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .composition import chain, group
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
from .jobtypes import JobType, job
from .jobtypes import registry as _job_types
from .version import __version__

if TYPE_CHECKING:
    from .control import ControlAPI
    from .models import Job

    registry: ControlAPI


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
    "chain",
    "enqueue",
    "group",
    "job",
    "registry",
    "workflow",
]


def enqueue(name: str, /, *args: Any, **data: Any) -> Job:
    """Enqueue the registered job ``name`` with ``data``; options as for ``fn.enqueue()``."""
    return _job_types.get(name).enqueue(*args, **data)


def __getattr__(name: str) -> Any:
    if name == "registry":
        # The control API reads and writes rows, so it loads on first use: this package is
        # imported while Django populates its apps, before the models exist.
        from .control import registry

        return registry
    if name == "workflow":
        # Writes rows: loaded on first use, like the registry.
        from .workflows import workflow

        return workflow
    raise AttributeError(f"module 'django_jobs' has no attribute {name!r}")
