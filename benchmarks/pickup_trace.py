"""Where a job's pickup time goes on PostgreSQL: from ``enqueue()`` to its first line of code.

Starts one long-running worker process (1 thread, LISTEN/NOTIFY) whose steps are timed by
wrapping them in that process only, then enqueues ``--jobs`` no-op jobs one at a time,
``--gap`` seconds apart, and prints the median and p95 of each step:

    .venv/bin/python benchmarks/pickup_trace.py --jobs 200 --gap 0.05

Steps (wall clock of this host, shared by both processes):

- enqueue: the ``enqueue()`` call, its INSERT and its commit (which sends the NOTIFY);
- notify: from the commit's return to the listener waking the worker's loop;
- loop: from that wake-up to the claim being sent;
- claim: the claim's round trip;
- hand-off: from the claim's return to the job thread starting the run;
- start: the fenced write of the run's start (a commit);
- to code: from there to the job's first line (``job_started``, the context).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

URL = "postgres://postgres@127.0.0.1:5432/bench_pickup_trace"


def traced_worker(trace_path: str) -> None:
    """The worker process: a ``Worker`` whose steps append their times to ``trace_path``."""
    import threading

    import django

    django.setup()
    from django_jobs import execution, registry
    from django_jobs.worker import loop

    out = open(trace_path, "a", buffering=1)
    lock = threading.Lock()
    woken: list[float] = []

    def note(**fields) -> None:
        with lock:
            out.write(json.dumps(fields) + "\n")

    class TimedEvent(threading.Event):
        def set(self) -> None:
            if not self.is_set():
                woken.append(time.time())
            super().set()

    claim = loop.claim

    def timed_claim(*args, **kwargs):
        sent = time.time()
        rows = claim(*args, **kwargs)
        back = time.time()
        wake = woken[-1] if woken else None
        for row in rows:
            note(job=str(row.pk), wake=wake, sent=sent, back=back)
        return rows

    loop.claim = timed_claim
    begin = execution.Execution.begin

    def timed_begin(self):
        started = time.time()
        won = begin(self)
        note(job=str(self.job.pk), begin=started, begun=time.time())
        return won

    execution.Execution.begin = timed_begin
    noop = registry.get("jobsapp.noop")

    def first_line(ctx, **data):
        note(job=str(ctx.job.pk), code=time.time())

    object.__setattr__(noop, "func", first_line)
    worker = loop.Worker(concurrency=1, scheduler=False)
    worker.wake = TimedEvent()
    worker.run()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--gap", type=float, default=0.05)
    p.add_argument("--worker", help=argparse.SUPPRESS)  # the traced process
    a = p.parse_args()
    os.environ["DATABASE_URL"] = URL
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("JOBS_LOG_LEVEL", "WARNING")
    if a.worker:
        traced_worker(a.worker)
        return
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                         autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = "
                             "'bench_pickup_trace'").fetchone():
            admin.execute("CREATE DATABASE bench_pickup_trace")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django_jobs import registry
    from django_jobs.models import Job, Worker

    Job.objects.all().delete()
    Worker.objects.all().delete()
    trace = tempfile.mktemp(prefix="pickup-trace-")
    proc = subprocess.Popen([sys.executable, __file__, "--worker", trace],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while not Worker.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # the listener connects and checks that it hears
        noop = registry.get("jobsapp.noop")
        enqueued = {}
        for _ in range(a.jobs):
            start = time.time()
            job = noop.enqueue()
            enqueued[str(job.pk)] = (start, time.time())
            time.sleep(a.gap)
        time.sleep(1.0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    steps: dict[str, dict] = {}
    with open(trace) as fh:
        for line in fh:
            record = json.loads(line)
            steps.setdefault(record.pop("job"), {}).update(record)
    os.unlink(trace)
    names = ["enqueue", "notify", "loop", "claim", "hand-off", "start", "to code", "total"]
    spans: dict[str, list[float]] = {name: [] for name in names}
    for pk, (start, committed) in enqueued.items():
        s = steps.get(pk, {})
        if not {"wake", "sent", "back", "begin", "begun", "code"} <= s.keys() or not s["wake"]:
            continue
        if s["wake"] < committed:  # woken by something else (a job's end): not a pickup
            continue
        for name, value in zip(names, [
            committed - start, s["wake"] - committed, s["sent"] - s["wake"],
            s["back"] - s["sent"], s["begin"] - s["back"], s["begun"] - s["begin"],
            s["code"] - s["begun"], s["code"] - start,
        ], strict=True):
            spans[name].append(value * 1000)
    count = len(spans["total"])
    print(f"{count} of {a.jobs} jobs traced, one at a time every {a.gap * 1000:.0f} ms, "
          "1 worker x 1 thread")
    print(f"  {'step':10s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name in names:
        values = sorted(spans[name])
        if not values:
            continue
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        print(f"  {name:10s} {statistics.median(values):8.2f} {p95:8.2f}")


if __name__ == "__main__":
    main()
