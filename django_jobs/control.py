"""The control API on ``django_jobs.registry``: run, cancel and look up jobs by name or id."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Job


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


class ControlAPI:
    """Mixed into ``Registry``; every method goes through the same QuerySet vocabulary."""

    def get(self, name: str):  # provided by Registry
        raise NotImplementedError

    def run(self, name: str, /, **data: Any) -> Any:
        """Run the job ``name`` now in this process and return its result."""
        return self.get(name).run(**data)

    def enqueue(self, name: str, /, **data: Any) -> Job:
        return self.get(name).enqueue(**data)

    def cancel(self, job_id_or_name: Any) -> int:
        """Cancel a job by id, or every pending job of a name; return how many were affected.

        Scheduled jobs are cancelled outright; running ones are asked to stop and end
        ``cancelled`` when they next check ``ctx.cancelled``. Returns at once.
        """
        from .exceptions import JobNotFound
        from .models import Job

        job_id = _as_uuid(job_id_or_name)
        if job_id is not None:
            qs = Job.objects.filter(pk=job_id)
            if not qs.exists():
                raise JobNotFound(f"no job with id {job_id}")
        else:
            self.get(job_id_or_name)
            qs = Job.objects.for_name(job_id_or_name)
        cancelled, requested = qs.cancel()
        return cancelled + requested

    def running(self, name: str) -> Job | None:
        """The running job of ``name`` (the oldest if several run), or ``None``."""
        from .models import Job

        self.get(name)
        return Job.objects.for_name(name).running().order_by("started_at").first()

    def latest(self, name: str) -> Job | None:
        """The most recently created job of ``name``, or ``None``."""
        from .models import Job

        self.get(name)
        return Job.objects.latest_for(name)

    def pause(self, name: str) -> None:
        """Pause a recurring job on every worker: pending occurrences are cancelled and no new
        ones are created until ``resume(name)``, which starts again from the next occurrence."""
        from .models import JobSchedule
        from .worker.scheduler import reset

        job_type = self.get(name)
        if not job_type.is_recurring:
            raise ValueError(f"job {name!r} is not recurring; only recurring jobs are paused")
        JobSchedule.objects.update_or_create(name=name, defaults={"paused": True})
        reset(name, "paused")

    def resume(self, name: str) -> None:
        from .models import JobSchedule

        self.get(name)
        JobSchedule.objects.filter(name=name).update(paused=False)

    def pause_queue(self, queue: str) -> None:
        """Stop every worker from starting jobs of ``queue``; they stay scheduled."""
        from .models import PausedQueue

        PausedQueue.objects.get_or_create(queue=queue)

    def resume_queue(self, queue: str) -> None:
        from .models import PausedQueue

        PausedQueue.objects.filter(queue=queue).delete()

    def paused_queues(self) -> list[str]:
        from .models import PausedQueue

        return sorted(PausedQueue.objects.values_list("queue", flat=True))
