"""The cost of flow control: drain no-op jobs with and without limits that never bind.

    .venv/bin/python benchmarks/limits.py --db postgres --jobs 3000 --runs 3

``limited_noop`` has ``concurrency=1000`` and ``rate_limit="100000/s"``: every claim takes a
slot and a rate token, but no run ever waits for one. Prints the median drain rate of each,
alternating runs, and their ratio.
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
sys.path.insert(0, str(ROOT))

from benchmarks.run import URLS, create_database  # noqa: E402  (needs ROOT on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=sorted(URLS), default="postgres")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = URLS[args.db]
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    create_database(args.db)
    import django

    django.setup()
    from django.core.management import call_command

    from benchmarks.bench_app.jobs import limited_noop, noop
    from django_jobs.models import Job, JobTypeLock, RateToken

    call_command("migrate", verbosity=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def drain(job_type) -> float:
        Job.objects.all().delete()
        JobTypeLock.objects.all().delete()
        RateToken.objects.all().delete()
        job_type.enqueue_many([{"n": i} for i in range(args.jobs)])
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "django", "runjobs", "--burst", "--no-scheduler",
                 "--concurrency", str(args.concurrency), "--verbosity", "0"],
                cwd=ROOT, env=env,
            )
            for _ in range(args.processes)
        ]
        for proc in procs:
            proc.wait()
        elapsed = time.perf_counter() - start
        left = Job.objects.exclude(status="succeeded").count()
        assert left == 0, f"{left} jobs not succeeded"
        assert not JobTypeLock.objects.exists(), "slots left held after the drain"
        return args.jobs / elapsed

    plain, limited = [], []
    for _ in range(args.runs):
        plain.append(drain(noop))
        limited.append(drain(limited_noop))
    p, m = statistics.median(plain), statistics.median(limited)
    print(f"django-jobs on {args.db}, {args.jobs} no-op jobs, {args.processes} processes x "
          f"{args.concurrency} threads, median of {args.runs} (incl. start-up)")
    print(f"  without limits:                         {p:7.0f} jobs/s  {sorted(plain)}")
    print(f"  concurrency=1000, rate_limit=100000/s:  {m:7.0f} jobs/s  {sorted(limited)}")
    print(f"  with limits / without:                  {m / p:7.0%}")


if __name__ == "__main__":
    main()
