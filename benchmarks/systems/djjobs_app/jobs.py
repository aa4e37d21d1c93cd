from common import noop_body

from django_jobs import JobContext, job


@job
def noop(ctx: JobContext, n: int = 0, t: float | None = None) -> None:
    noop_body(t)
