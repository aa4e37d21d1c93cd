from django_jobs import JobContext, job


@job
def noop(ctx: JobContext, n: int = 0) -> None:
    return None
