from django_jobs import JobContext, job


@job
def noop(ctx: JobContext, n: int = 0) -> None:
    return None


@job(concurrency=1000, rate_limit="100000/s")
def limited_noop(ctx: JobContext, n: int = 0) -> None:
    """A no-op under a concurrency and a rate limit set too high to bind (benchmarks/limits.py)."""
    return None
