from .job import Job, JobStatus, scheduled_state, unique_slot
from .lock import JobTypeLock, RateToken
from .schedule import JobSchedule, PausedQueue
from .worker import LIVE_STATES, Worker, WorkerState
from .workflow import FailurePolicy, JobDependency, RunWhen, Workflow

__all__ = [
    "LIVE_STATES", "FailurePolicy", "Job", "JobDependency", "JobSchedule", "JobStatus",
    "JobTypeLock", "PausedQueue", "RateToken", "RunWhen", "Worker", "WorkerState", "Workflow",
    "scheduled_state", "unique_slot",
]
