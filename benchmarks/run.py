"""Measure django-jobs: bulk enqueue, drain rate with 1 and N worker processes, pickup latency.

    .venv/bin/python benchmarks/run.py --db postgres
    .venv/bin/python benchmarks/run.py --db sqlite --jobs 2000

Prints one line per figure. The database is emptied first; it is a scratch database
(``django_jobs_bench``), never the test or demo one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URLS = {
    "sqlite": "sqlite:////tmp/django-jobs-bench.sqlite3",
    "postgres": "postgres://postgres@127.0.0.1:5432/django_jobs_bench",
    "mariadb": "mysql://root@127.0.0.1:3306/django_jobs_bench",
}


def create_database(db: str) -> None:
    if db == "postgres":
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            exists = "SELECT 1 FROM pg_database WHERE datname='django_jobs_bench'"
            if not c.execute(exists).fetchone():
                c.execute("CREATE DATABASE django_jobs_bench")
    elif db == "mariadb":
        import MySQLdb

        c = MySQLdb.connect(host="127.0.0.1", user="root")
        c.cursor().execute("CREATE DATABASE IF NOT EXISTS django_jobs_bench CHARACTER SET utf8mb4")
        c.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=sorted(URLS), default="postgres")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--latency-jobs", type=int, default=200)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = URLS[args.db]
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    sys.path.insert(0, str(ROOT))
    create_database(args.db)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from benchmarks.bench_app.jobs import noop
    from django_jobs.models import Job

    call_command("migrate", verbosity=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def empty() -> None:
        Job.objects.all().delete()

    def drain(processes: int, concurrency: int) -> float:
        empty()
        noop.enqueue_many([{"n": i} for i in range(args.jobs)])
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "django", "runjobs", "--burst", "--no-scheduler",
                 "--concurrency", str(concurrency), "--verbosity", "0"],
                cwd=ROOT, env=env,
            )
            for _ in range(processes)
        ]
        for proc in procs:
            proc.wait()
        elapsed = time.perf_counter() - start
        left = Job.objects.exclude(status="succeeded").count()
        assert left == 0, f"{left} jobs not succeeded"
        return args.jobs / elapsed

    print(f"django-jobs on {args.db}, {args.jobs} no-op jobs")
    empty()
    start = time.perf_counter()
    noop.enqueue_many([{"n": i} for i in range(args.jobs)])
    rate = args.jobs / (time.perf_counter() - start)
    print(f"  bulk enqueue (enqueue_many):     {rate:9.0f} jobs/s")
    empty()
    start = time.perf_counter()
    for i in range(min(args.jobs, 2000)):
        noop.enqueue(n=i)
    print(f"  single enqueue (autocommit):     "
          f"{min(args.jobs, 2000) / (time.perf_counter() - start):9.0f} jobs/s")
    empty()
    start = time.perf_counter()
    with transaction.atomic():
        for i in range(min(args.jobs, 2000)):
            noop.enqueue(n=i)
    print(f"  single enqueue (one transaction):"
          f"{min(args.jobs, 2000) / (time.perf_counter() - start):9.0f} jobs/s")
    print(f"  drain, 1 process x 1 thread:     {drain(1, 1):9.0f} jobs/s (incl. start-up)")
    print(f"  drain, {args.processes} processes x {args.concurrency} threads: "
          f"{drain(args.processes, args.concurrency):9.0f} jobs/s (incl. start-up)")

    # Pickup latency: an idle worker, jobs enqueued one by one 50 ms apart.
    empty()
    poll = "30" if args.db == "postgres" else "1.0"
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "runjobs", "--no-scheduler", "--poll-interval", poll,
         "--verbosity", "0"],
        cwd=ROOT, env=env,
    )
    try:
        time.sleep(2)
        for i in range(args.latency_jobs):
            noop.enqueue(n=i)
            time.sleep(0.05)
        deadline = time.time() + 30
        while Job.objects.exclude(status="succeeded").exists() and time.time() < deadline:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait()
    lat = sorted(
        (j.started_at - j.created_at).total_seconds() * 1000
        for j in Job.objects.filter(status="succeeded")
    )
    q = statistics.quantiles(lat, n=100)
    print(f"  pickup latency (poll {poll}s):    p50 {q[49]:.1f} ms  p95 {q[94]:.1f} ms  "
          f"p99 {q[98]:.1f} ms  (n={len(lat)})")
    empty()


if __name__ == "__main__":
    main()
