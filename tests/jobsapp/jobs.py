"""Jobs used by the test suite, found by autodiscovery like any project's ``jobs.py``."""

import os
import time
from datetime import timedelta

from django.db import IntegrityError

from django_jobs import JobContext, job

from .models import Execution, Interval

HOOK_CALLS: list[tuple[str, str, str]] = []


@job
def noop(ctx: JobContext, **data) -> None:
    return None


@job
def echo(ctx: JobContext, **data) -> dict:
    return {"data": data, "attempt": ctx.attempt}


@job
def record(ctx: JobContext, token: str, seconds: float = 0.0) -> str:
    """Insert a row with a unique token: a second run of the same token raises."""
    started = time.time()
    if seconds:
        time.sleep(seconds)
    Execution.objects.create(
        token=token, job_id=ctx.job.pk, worker=ctx.job.worker, started=started, ended=time.time()
    )
    return token


@job(max_attempts=3, retry_delay=timedelta(milliseconds=200), retry_backoff=2.0)
def flaky(ctx: JobContext, fail_times: int = 1) -> int:
    if ctx.attempt <= fail_times:
        raise ValueError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


def _on_error(job, exc):
    HOOK_CALLS.append(("on_error", job.name, type(exc).__name__ if exc else ""))


def _on_stale(job, exc):
    HOOK_CALLS.append(("on_stale", job.name, ""))


@job(on_error=_on_error)
def explode(ctx: JobContext, message: str = "boom") -> None:
    raise RuntimeError(message)


@job
def bad_result(ctx: JobContext) -> object:
    return {"when": {1, 2}}


@job
def exit_job(ctx: JobContext, kind: str = "exit") -> None:
    if kind == "exit":
        raise SystemExit(3)
    raise KeyboardInterrupt


@job(lock=True)
def locked_exit(ctx: JobContext) -> None:
    raise SystemExit(4)


@job(timeout=timedelta(seconds=1))
def ignores_timeout(ctx: JobContext, seconds: float = 2.5) -> str:
    time.sleep(seconds)
    return "late"


@job(timeout=timedelta(seconds=1), lock=True)
def checks_timeout(ctx: JobContext) -> None:
    while True:
        ctx.check_cancelled()
        time.sleep(0.05)


@job
def cancellable(ctx: JobContext, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    return "finished"


@job
def progress_loop(ctx: JobContext, steps: int = 100, pause: float = 0.01) -> int:
    for step in range(steps):
        ctx.progress((step + 1) / steps, message=f"step {step + 1}")
        time.sleep(pause)
    return steps


@job
def phased(ctx: JobContext) -> None:
    phases = ctx.phases({"download": 3, "parse": 1})
    with phases("download") as p:
        p.progress(0.5)
    with phases("parse") as p:
        p.progress(0.5, message="half")
        ctx.flush()


@job(lock=True, timeout=timedelta(seconds=3), on_stale=_on_stale, max_attempts=2,
     retry_delay=0)
def locked_sleep(ctx: JobContext, seconds: float = 0.3, token: str = "") -> str:
    """Records its interval; at most one runs at a time across every worker."""
    interval = Interval.objects.create(key="locked_sleep", job_id=ctx.job.pk, started=time.time())
    time.sleep(seconds)
    interval.ended = time.time()
    interval.save(update_fields=["ended"])
    if token:
        try:
            Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker)
        except IntegrityError:
            pass
    return token


@job(lock=lambda data: str(data["customer"]))
def per_customer(ctx: JobContext, customer: int, seconds: float = 0.2) -> int:
    Interval.objects.create(
        key=f"customer:{customer}", job_id=ctx.job.pk, started=time.time(), ended=None
    )
    time.sleep(seconds)
    Interval.objects.filter(job_id=ctx.job.pk).update(ended=time.time())
    return customer


@job(unique="skip")
def unique_skip(ctx: JobContext, n: int = 0) -> int:
    return n


@job(unique="replace")
def unique_replace(ctx: JobContext, n: int = 0) -> int:
    return n


@job(unique="skip", max_attempts=3, retry_delay=timedelta(minutes=10))
def unique_skip_retried(ctx: JobContext, n: int = 0) -> int:
    return n


@job(unique="replace", max_attempts=3, retry_delay=timedelta(minutes=10))
def unique_replace_retried(ctx: JobContext, n: int = 0) -> int:
    return n


@job(timeout=timedelta(seconds=2), max_attempts=2, retry_delay=0, on_stale=_on_stale)
def sleeper(ctx: JobContext, seconds: float = 5.0, token: str = "") -> str:
    """Sleeps (checking nothing) then records ``token``; used to kill workers mid-job."""
    marker = os.environ.get("DJANGO_JOBS_TEST_MARKER_DIR")
    if marker:
        with open(os.path.join(marker, f"{ctx.job.pk}.{ctx.attempt}"), "w") as fh:
            fh.write(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if ctx.cancelled and ctx._execution.lost:
            break
    if token:
        Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                                 ended=time.time())
    return token


@job(timeout=timedelta(seconds=30))
def drain(ctx: JobContext, seconds: float = 3.0, token: str = "") -> str:
    time.sleep(seconds)
    if token:
        Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                                 ended=time.time())
    return token


@job(precheck=lambda ctx: "already done" if ctx.data.get("done") else None)
def prechecked(ctx: JobContext, done: bool = False) -> str:
    return "ran"


@job(enabled=False)
def disabled_job(ctx: JobContext) -> None:
    return None


@job(name="billing:invoice-sync", cron="0 * * * *", max_attempts=3)
def invoice_sync(ctx: JobContext) -> None:
    return None


@job
def db_then_sleep(ctx: JobContext, seconds: float = 2.0, token: str = "") -> str:
    """Uses its connection, sleeps (while the test kills it), then writes again."""
    Interval.objects.create(key="db_then_sleep", job_id=ctx.job.pk, started=time.time())
    time.sleep(seconds)
    Execution.objects.create(token=token or str(ctx.job.pk), job_id=ctx.job.pk)
    return token


# -- added for tests/db/test_worker_*.py ---------------------------------------------------------


@job(lock=True)
def locked_raise(ctx: JobContext, kind: str = "error") -> None:
    """A locked job leaving by an exception (``kind="keyboard"``: ``KeyboardInterrupt``)."""
    if kind == "keyboard":
        raise KeyboardInterrupt
    raise RuntimeError("locked job fails on purpose")


@job(lock=True)
def locked_cancellable(ctx: JobContext, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    return "finished"


@job
def phased_observed(ctx: JobContext) -> list:
    """Runs weighted phases and returns what the row held after each flush."""
    from django_jobs.models import Job

    def stored():
        # flush() hands the progress to the worker's monitor thread, which writes it on its
        # own connection within a tick: wait until the row shows it.
        ctx.flush()
        wanted = [ctx.job.progress, ctx.job.progress_message]
        for _ in range(100):
            row = Job.objects.values("progress", "progress_message").get(pk=ctx.job.pk)
            if [row["progress"], row["progress_message"]] == wanted:
                break
            time.sleep(0.05)
        return [row["progress"], row["progress_message"]]

    seen = []
    phases = ctx.phases({"download": 3, "parse": 1})
    with phases("download") as p:
        p.progress(0.5)
        seen.append(stored())
    seen.append(stored())
    with phases("parse") as p:
        p.progress(0.5, message="half")
        seen.append(stored())
    seen.append(stored())
    return seen


# -- added for tests/concurrency/test_scheduler_processes.py -------------------------------------


# overlap: the next occurrences are created ahead of time even while one waits for a worker, so
# the test sees every occurrence of its window created by racing schedulers.
@job(every=timedelta(seconds=1), catch_up="all", overlap=5)
def scheduling_tick(ctx: JobContext) -> str:
    """Recurring every second; records its occurrence in a table where it is UNIQUE.

    Off unless ``JOBS_JOBSAPP_SCHEDULING_TICK_ENABLED=true`` (tests/settings.py defaults it to
    false), so only the workers of the scheduler tests create its rows."""
    from .models import OccurrenceRun

    OccurrenceRun.objects.create(
        occurrence=ctx.job.occurrence, job_id=ctx.job.pk, worker=ctx.job.worker
    )
    return ctx.job.occurrence.isoformat()


@job(max_attempts=2, retry_delay=0)
def db_then_sleep_retried(ctx: JobContext, seconds: float = 2.0, token: str = "") -> str:
    """``db_then_sleep`` with a second attempt: a run whose connection was killed may fail,
    and its retry must then run (once) on the same, reconnected, worker."""
    Interval.objects.create(key="db_then_sleep_retried", job_id=ctx.job.pk, started=time.time())
    time.sleep(seconds)
    Execution.objects.create(token=token or str(ctx.job.pk), job_id=ctx.job.pk)
    return token


# -- added for tests/browser/ ---------------------------------------------------------------------


@job
def progress_cancellable(ctx: JobContext, seconds: float = 30.0, steps: int = 300) -> int:
    """Reports progress at every step and stops when cancelled; the admin's live bar follows it."""
    for step in range(steps):
        ctx.check_cancelled()
        ctx.progress((step + 1) / steps, message=f"invoice {step + 1} of {steps}")
        time.sleep(seconds / steps)
    return steps


# -- added for tests/concurrency/test_liveness.py ------------------------------------------------


def _mark(ctx: JobContext, what: str = "") -> None:
    """A marker file ``<job id>.<attempt>`` holding this process's pid and the start time."""
    marker = os.environ.get("DJANGO_JOBS_TEST_MARKER_DIR")
    if marker:
        with open(os.path.join(marker, f"{ctx.job.pk}.{ctx.attempt}"), "w") as fh:
            fh.write(f"{os.getpid()} {time.time()} {what}")


@job(timeout=timedelta(hours=6), max_attempts=2, retry_delay=0)
def six_hours(ctx: JobContext, seconds: float = 3600.0, token: str = "") -> str:
    """A long job with a 6-hour timeout: its recovery after a crash must not wait for it.
    Only the first attempt is long."""
    _mark(ctx)
    if ctx.attempt > 1:
        seconds = 0.1
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.05)
    if token:
        Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                                 started=time.time(), ended=time.time())
    return token


@job(timeout=timedelta(seconds=60))
def holds_transaction(ctx: JobContext, seconds: float = 20.0, steps: int = 40) -> int:
    """Keeps a transaction open (and its own row locked in it) while reporting progress."""
    from django.db import transaction

    from django_jobs.models import Job

    _mark(ctx)
    with transaction.atomic():
        Job.objects.select_for_update().filter(pk=ctx.job.pk).first()
        for step in range(steps):
            ctx.progress((step + 1) / steps, message=f"step {step + 1} of {steps}")
            time.sleep(seconds / steps)
    return steps


@job(lock=True, timeout=timedelta(seconds=1))
def hangs(ctx: JobContext, seconds: float = 3600.0) -> str:
    """Ignores its timeout and never comes back (unless ``seconds`` is short)."""
    _mark(ctx)
    time.sleep(seconds)
    return "came back"


@job(lock=True, timeout=timedelta(seconds=30))
def hangs_then_next(ctx: JobContext, token: str = "") -> str:
    """Shares nothing with ``hangs``; used to prove the worker went on with other work."""
    Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                             started=time.time(), ended=time.time())
    return token


@job(timeout=timedelta(seconds=20), max_attempts=2, retry_delay=0)
def timed_record(ctx: JobContext, token: str, seconds: float = 0.0) -> str:
    """Records when it really started (by this host's real clock) and its token, once."""
    started = time.time()
    _mark(ctx)
    time.sleep(seconds)
    Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                             started=started, ended=time.time())
    return token


# Two versions of the code, side by side during a deploy: the new version defines these.
if os.environ.get("DJANGO_JOBS_TEST_NEW_CODE"):

    @job(name="jobsapp.new_job")
    def new_job(ctx: JobContext, token: str = "") -> str:
        Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                                 started=time.time(), ended=time.time())
        return token

    @job(name="jobsapp.new_every_second", every=timedelta(seconds=1), catch_up="all",
         lock=False)
    def new_every_second(ctx: JobContext) -> str:
        # Its token is unique: a second run of one occurrence would fail here.
        Execution.objects.create(token=f"every:{ctx.job.occurrence.isoformat()}",
                                 job_id=ctx.job.pk, worker=ctx.job.worker)
        return ctx.job.occurrence.isoformat()


# -- added for the defect tests (tests/db/test_defects.py, tests/concurrency/test_defects.py) ----


@job(timeout=timedelta(seconds=1), max_attempts=2, retry_delay=0)
def quick_with_short_timeout(ctx: JobContext, token: str) -> str:
    """Takes 0.1 s of its 1 s timeout; records its token (unique) when it runs."""
    time.sleep(0.1)
    Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                             started=time.time(), ended=time.time())
    return token


@job(timeout=timedelta(seconds=30), priority=10)
def slow_first(ctx: JobContext, seconds: float = 2.5) -> str:
    _mark(ctx)
    time.sleep(seconds)
    return "slow"


@job
def returns(ctx: JobContext, value=None, progress_message: str = "", error: str = ""):
    """Returns ``value``; reports ``progress_message``; raises with ``error`` if given.

    "<NUL>" in the texts becomes a NUL character here (a payload holding one could not even
    be stored on PostgreSQL)."""
    if progress_message:
        ctx.progress(0.5, message=progress_message.replace("<NUL>", "\x00"))
    if error:
        raise RuntimeError(error.replace("<NUL>", "\x00"))
    return value


@job
def leaves_autocommit_off(ctx: JobContext, token: str) -> str:
    """Switches autocommit off, writes, and returns without committing."""
    from django.db import transaction

    transaction.set_autocommit(False)
    Execution.objects.create(token=token, job_id=ctx.job.pk)
    return token


@job(max_attempts=2, retry_delay=0, timeout=timedelta(seconds=60))
def record_then_sleep(ctx: JobContext, token: str, seconds: float = 3.0) -> str:
    """Records its token first (a second run of it fails on the unique token), then sleeps."""
    Execution.objects.create(token=token, job_id=ctx.job.pk, worker=ctx.job.worker,
                             started=time.time())
    time.sleep(seconds)
    return token


def _limit_key(data) -> str:
    return str(data["key"])


@job(concurrency=2, concurrency_key=_limit_key)
def limited_per_key(ctx: JobContext, key: str, seconds: float = 0.05) -> str:
    """Records its interval under its key: at most 2 of a key may overlap."""
    Interval.objects.create(key=f"limited:{key}", job_id=ctx.job.pk, started=time.time())
    time.sleep(seconds)
    Interval.objects.filter(job_id=ctx.job.pk).update(ended=time.time())
    return key


@job(rate_limit="100/s")
def rate_limited(ctx: JobContext, n: int = 0) -> int:
    return n


@job(concurrency=2, max_attempts=2, retry_delay=0)
def limited_sleep(ctx: JobContext, seconds: float = 3600.0) -> str:
    time.sleep(seconds)
    return "slept"


@job(max_snoozes=2)
def snoozer(ctx: JobContext, times: int = 1, seconds: float = 0.0) -> int:
    """Snoozes ``times`` times, then returns how many snoozes its row counted."""
    if ctx.job.snoozes < times:
        ctx.snooze(seconds)
    return ctx.job.snoozes


@job(rate_limit="3/h", concurrency=1)
def slow_rate(ctx: JobContext, n: int = 0) -> int:
    return n


# -- workflows ---------------------------------------------------------------------------------


@job
def wf_add(ctx: JobContext, value: int) -> int:
    """A chain step: adds its value to the previous step's result."""
    return (ctx.previous_result or 0) + value


@job
def wf_collect(ctx: JobContext, label: str) -> dict:
    """A group callback: what the members returned, and how they ended."""
    return {"label": label, "results": ctx.dependency_results(),
            "counts": ctx.dependency_counts()}


@job
def wf_fail(ctx: JobContext, message: str = "member fails") -> None:
    raise RuntimeError(message)


@job(max_attempts=2, retry_delay=timedelta(0))
def wf_flaky(ctx: JobContext, token: str) -> str:
    """Fails on its first attempt, succeeds on its second."""
    if ctx.attempt == 1:
        raise ValueError("first attempt fails on purpose")
    return token
