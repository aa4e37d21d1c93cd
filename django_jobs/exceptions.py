"""Exceptions raised by django-jobs."""

from __future__ import annotations


class JobError(Exception):
    """Base class of the errors django-jobs raises on purpose."""


class JobInterrupted(JobError):
    """A running job was asked to stop; raised by ``ctx.check_cancelled()``."""


class JobCancelled(JobInterrupted):
    """Somebody requested cancellation; the run ends with status ``cancelled``."""


class JobTimeout(JobInterrupted):
    """The run went past its ``timeout``; it ends ``failed`` ("timed out")."""


class JobAlreadyRunning(JobError):
    """A job of this type (or lock key) is already running somewhere."""


class JobStillRunning(JobError, TimeoutError):
    """``registry.stop()`` gave up: the job was still running when its timeout passed."""


class JobDisabled(JobError):
    """The job type is disabled by ``enabled=False`` or ``JOBS_<NAME>_ENABLED``."""


class UnknownJob(JobError, LookupError):
    """No job of that name is registered."""


class JobNotFound(JobError, LookupError):
    """No job row has that id."""


class InvalidJobState(JobError, ValueError):
    """The job is not in a state that allows this (e.g. retrying a running job)."""


class AmbiguousJobId(JobError, LookupError):
    """A short job id (a prefix of the UUID) matches more than one job."""


class JobTablesMissing(JobError):
    """The django-jobs tables are not in the database: ``manage.py migrate`` has not run."""


class LockKeyError(JobError, ValueError):
    """The ``lock=`` function of a job raised while computing a payload's lock key."""
