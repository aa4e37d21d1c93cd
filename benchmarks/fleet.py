"""A fleet: 1 to 8 ``runjobs`` processes x 4 threads draining one queue on one database.

    .venv/bin/python benchmarks/fleet.py --db postgres --jobs 5000 --max-processes 8 \\
        --plot docs/img/fleet.png

For each number of processes, ``--jobs`` no-op jobs are queued, the long-running workers are
started, the queue is watched in the database until every job succeeded, and the workers are
stopped (SIGTERM). Each run of a job appends the job's id to a file of its process, so every
row is checked to have run exactly once (no loss, no double run) outside the database. Prints
jobs/s from the launch of the workers and from the first job to the last; ``--plot`` draws
them (needs matplotlib).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import URLS, create_database  # noqa: E402  (needs ROOT on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=sorted(URLS), default="postgres")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-processes", type=int, default=8)
    parser.add_argument("--plot", help="write a chart (PNG) here")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = URLS[args.db]
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    create_database(args.db)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Max, Min

    from benchmarks.bench_app.jobs import logged_noop
    from django_jobs.models import Job, Worker

    call_command("migrate", verbosity=0)
    results = []
    for processes in range(1, args.max_processes + 1):
        Job.objects.all().delete()
        Worker.objects.all().delete()
        logged_noop.enqueue_many([{"n": i} for i in range(args.jobs)])
        ids = set(Job.objects.values_list("pk", flat=True))
        connection.close()
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as logs:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_RUN_LOG_DIR": logs}
            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "django", "runjobs", "--no-scheduler",
                     "--concurrency", str(args.threads), "--verbosity", "0"],
                    cwd=ROOT, env=env, start_new_session=True,
                )
                for _ in range(processes)
            ]
            try:
                while Job.objects.filter(status="succeeded").count() < args.jobs:
                    if time.perf_counter() - start > 600:
                        raise SystemExit("the queue was not drained within 10 minutes")
                    time.sleep(0.01)
                elapsed = time.perf_counter() - start
            finally:
                for proc in procs:
                    os.killpg(proc.pid, signal.SIGTERM)
                for proc in procs:
                    proc.wait(timeout=60)
            runs = collections.Counter(
                line.strip() for path in Path(logs).iterdir() for line in path.open()
            )
        span = Job.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
        steady = args.jobs / (span["last"] - span["first"]).total_seconds()
        twice = [pk for pk, count in runs.items() if count > 1]
        missing = ids - {uuid.UUID(pk) for pk in runs}
        left = Job.objects.exclude(status="succeeded").count()
        attempts = set(Job.objects.values_list("attempt", flat=True))
        assert not twice, f"{len(twice)} jobs ran twice"
        assert not missing and not left, f"{len(missing)} never ran, {left} not succeeded"
        assert attempts == {1}, attempts
        results.append((processes, args.jobs / elapsed, steady))
        print(f"{processes} x {args.threads}: {args.jobs / elapsed:7.0f} jobs/s from launch, "
              f"{steady:7.0f} first job to last; every job ran once", flush=True)
    if args.plot:
        plot(results, args, Path(args.plot))


def plot(results, args, path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (an optional tool of this script only)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    counts = [r[0] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(counts, [r[1] for r in results], marker="o", label="from launch")
    ax.plot(counts, [r[2] for r in results], marker="s", label="first job to last")
    ax.set_xlabel(f"runjobs processes (x {args.threads} threads each)")
    ax.set_ylabel("no-op jobs per second")
    ax.set_title(f"django-jobs fleet on {args.db}, {args.jobs:,} jobs, 2 cores")
    ax.set_xticks(counts)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"chart written to {path}")


if __name__ == "__main__":
    main()
