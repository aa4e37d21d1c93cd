"""Exceptions raised by django-jobs."""

from __future__ import annotations

from datetime import timedelta


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


class Snooze(JobError):
    """Raised by a job (or ``ctx.snooze()``) to run again later: the run goes back to
    ``scheduled`` for ``seconds``, uses no attempt and is not a failure."""

    def __init__(self, seconds: float | timedelta = 0) -> None:
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"Snooze() takes a duration of zero or more seconds, not {seconds!r}")
        self.seconds = float(seconds)
        super().__init__(f"snoozed for {self.seconds:g}s")
