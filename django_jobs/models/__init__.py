from .job import Job, JobStatus
from .lock import JobTypeLock
from .schedule import JobSchedule, PausedQueue
from .worker import LIVE_STATES, Worker, WorkerState

__all__ = [
    "LIVE_STATES", "Job", "JobSchedule", "JobStatus", "JobTypeLock", "PausedQueue", "Worker",
    "WorkerState",
]
