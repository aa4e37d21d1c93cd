from .job import Job, JobStatus
from .lock import JobTypeLock

__all__ = ["Job", "JobStatus", "JobTypeLock"]
