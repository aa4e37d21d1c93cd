"""Queue bloat pressure: a session idle in a transaction pins PostgreSQL's xmin horizon.

    .venv/bin/python benchmarks/pressure.py --minutes 5 --rate 200

Jobs are enqueued at a steady ``--rate`` while ``--processes`` long-running workers run them.
After a baseline, one session opens a transaction, takes a snapshot and stays idle for
``--minutes`` (the classic cause of queue-table bloat: no row version it may see can be
vacuumed away); then it ends, and the run goes on for a recovery period. Every ``--window``
seconds the script prints the throughput, the pickup latency (the time from a job's enqueue to
its start: p50/p99) and the dead row versions of the job table (``pg_stat_user_tables``).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import URLS, create_database  # noqa: E402  (needs ROOT on sys.path)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long xmin is pinned")
    parser.add_argument("--baseline", type=float, default=60.0, help="seconds before and after")
    parser.add_argument("--rate", type=float, default=200.0, help="jobs enqueued per second")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = URLS["postgres"]
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    create_database("postgres")
    import django

    django.setup()
    import psycopg
    from django.core.management import call_command
    from django.db import connection, connections
    from django.utils import timezone

    from benchmarks.bench_app.jobs import noop
    from django_jobs.models import Job, Worker

    call_command("migrate", verbosity=0)
    Job.objects.all().delete()
    Worker.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE django_jobs_job")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "django", "runjobs", "--no-scheduler",
             "--concurrency", str(args.threads), "--verbosity", "0"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        for _ in range(args.processes)
    ]
    stop = threading.Event()

    def produce() -> None:
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        while not stop.is_set():
            noop.enqueue()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        connections.close_all()

    producer = threading.Thread(target=produce, daemon=True)
    time.sleep(2)  # the workers start
    producer.start()
    dsn = "postgresql://postgres@127.0.0.1:5432/" + connection.settings_dict["NAME"]
    pin = None
    phases = [("before", args.baseline), ("xmin pinned", args.minutes * 60),
              ("after", args.baseline)]
    print(f"{args.processes} workers x {args.threads} threads, {args.rate:g} jobs/s enqueued; "
          f"windows of {args.window:g} s", flush=True)
    print(f"{'phase':12s} {'t (s)':>6s} {'jobs/s':>7s} {'pickup p50':>11s} {'p99':>8s} "
          f"{'dead rows':>10s} {'live rows':>10s}", flush=True)
    summary: dict[str, list[tuple[float, float, float, int]]] = {}
    started = time.monotonic()
    try:
        for phase, seconds in phases:
            if phase == "xmin pinned":
                pin = psycopg.connect(dsn)
                # A snapshot held open: REPEATABLE READ keeps it for the whole transaction.
                pin.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                pin.execute("SELECT count(*) FROM django_jobs_job").fetchone()
            elif pin is not None:
                pin.rollback()
                pin.close()
                pin = None
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                window_start = time.monotonic()
                since = timezone.now()
                time.sleep(args.window)
                rows = list(Job.objects.filter(started_at__gte=since, status="succeeded")
                            .values_list("created_at", "started_at"))
                pickups = [(s - c) / timedelta(milliseconds=1) for c, s in rows]
                with connection.cursor() as cursor:
                    cursor.execute("SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables "
                                   "WHERE relname = 'django_jobs_job'")
                    dead, live = cursor.fetchone()
                rate = len(rows) / (time.monotonic() - window_start)
                p50, p99 = percentile(pickups, 50), percentile(pickups, 99)
                summary.setdefault(phase, []).append((rate, p50, p99, dead))
                print(f"{phase:12s} {time.monotonic() - started:6.0f} {rate:7.0f} "
                      f"{p50:9.1f} ms {p99:6.1f} ms {dead:10,d} {live:10,d}", flush=True)
    finally:
        stop.set()
        producer.join(timeout=10)
        if pin is not None:
            pin.close()
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    print("\nmedians per phase:")
    for phase, windows in summary.items():
        print(f"  {phase:12s} {statistics.median(w[0] for w in windows):7.0f} jobs/s, pickup "
              f"p50 {statistics.median(w[1] for w in windows):.1f} ms, p99 "
              f"{statistics.median(w[2] for w in windows):.1f} ms, dead rows at the end "
              f"{windows[-1][3]:,d}")


if __name__ == "__main__":
    main()
