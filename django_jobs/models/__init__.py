from .job import Job, JobStatus
from .lock import JobTypeLock
from .schedule import JobSchedule, PausedQueue

__all__ = ["Job", "JobSchedule", "JobStatus", "JobTypeLock", "PausedQueue"]
