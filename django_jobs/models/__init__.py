from .job import Job, JobStatus, scheduled_state, unique_slot
from .lock import JobTypeLock
from .schedule import JobSchedule, PausedQueue

__all__ = [
    "Job", "JobSchedule", "JobStatus", "JobTypeLock", "PausedQueue", "scheduled_state",
    "unique_slot",
]
