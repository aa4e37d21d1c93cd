import os

from django_jobs import JobContext, job


@job
def noop(ctx: JobContext, n: int = 0) -> None:
    return None


@job(concurrency=1000, rate_limit="100000/s")
def limited_noop(ctx: JobContext, n: int = 0) -> None:
    """A no-op under a concurrency and a rate limit set too high to bind (benchmarks/limits.py)."""
    return None


@job
def logged_noop(ctx: JobContext, n: int = 0) -> None:
    """A no-op that appends its job id to a file of this process (``BENCH_RUN_LOG_DIR``): the
    fleet benchmark counts the runs of every row there, outside the database it checks."""
    directory = os.environ.get("BENCH_RUN_LOG_DIR")
    if directory:
        with open(os.path.join(directory, f"{os.getpid()}.log"), "a") as log:
            log.write(f"{ctx.job.pk}\n")
