"""Where a no-op job's time goes in a worker: Python, database round trips, commits.

Runs a burst worker in this process (``--concurrency 1``, so nothing overlaps) over ``--jobs``
queued no-op jobs on a scratch database and times every statement each connection sends:

    .venv/bin/python benchmarks/noop_profile.py --db postgres --jobs 3000

It prints, per job, the statements sent by kind (claim, start, outcome, heartbeat...), the time
spent waiting for the database, and the rest of the wall time, which is Python (the worker, the
ORM, the driver) and thread hand-offs.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

URLS = {
    "postgres": "postgres://postgres@127.0.0.1:5432/bench_noop_profile",
    "sqlite": "sqlite:////tmp/bench_noop_profile.sqlite3",
    "mariadb": "mysql://root@127.0.0.1:3306/bench_noop_profile",
}


def kind_of(sql: str) -> str:
    """A short name for a statement, from its first words."""
    head = sql.lstrip()[:200].upper()
    if head.startswith("WITH ME AS"):
        return "claim (one statement)"
    if "DJANGO_JOBS_WORKER" in head and head.startswith("UPDATE"):
        return "heartbeat"
    if head.startswith("UPDATE") and "STARTED_AT" in head and "STATUS" not in head:
        return "start"
    if head.startswith("UPDATE") and '"STATUS" = ' in head and "FINISHED_AT" in head:
        return "outcome"
    if head.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")):
        return head.split()[0].lower()
    return " ".join(head.split()[:3]).lower()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=sorted(URLS), default="postgres")
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--linger", type=float, default=None,
                   help="seconds the writer of outcomes waits for more endings "
                   "(default: django_jobs.outcomes.LINGER)")
    a = p.parse_args()
    os.environ["DATABASE_URL"] = URLS[a.db]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("JOBS_LOG_LEVEL", "WARNING")
    if a.db == "postgres":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             autocommit=True) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = "
                                 "'bench_noop_profile'").fetchone():
                admin.execute("CREATE DATABASE bench_noop_profile")
    elif a.db == "mariadb":
        import MySQLdb

        admin = MySQLdb.connect(host="127.0.0.1", user="root")
        admin.cursor().execute("CREATE DATABASE IF NOT EXISTS bench_noop_profile")
        admin.close()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db.backends.signals import connection_created

    call_command("migrate", verbosity=0)

    from django_jobs import outcomes, registry
    from django_jobs.models import Job, Worker
    from django_jobs.worker.loop import Worker as Loop

    stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    lock = threading.Lock()

    def timed(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - start
            with lock:
                entry = stats[kind_of(sql)]
                entry[0] += 1
                entry[1] += took

    wrapped: set[int] = set()

    def wrap(sender, connection, **kwargs):
        if id(connection) not in wrapped:
            wrapped.add(id(connection))
            connection.execute_wrappers.append(timed)

    connection_created.connect(wrap)
    from django.db import connections

    for connection in connections.all():
        wrap(None, connection)
    Job.objects.all().delete()
    Worker.objects.all().delete()
    registry.get("jobsapp.noop").enqueue_many([{"n": n} for n in range(a.jobs)])
    if a.linger is not None:
        outcomes.LINGER = a.linger
    stats.clear()
    loop = Loop(burst=True, install_signals=False, scheduler=False, concurrency=1)
    started = time.perf_counter()
    cpu = time.process_time()
    loop.run()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    done = Job.objects.filter(status="succeeded").count()
    assert done == a.jobs, f"{done} of {a.jobs} jobs ran"
    total_db = sum(seconds for _, seconds in stats.values())
    statements = sum(count for count, _ in stats.values())
    per_job = 1000 / a.jobs
    print(f"{a.jobs} no-op jobs on {a.db}, 1 worker x 1 thread: {a.jobs / wall:,.0f} jobs/s")
    print(f"  wall time per job:           {wall * per_job:.2f} ms")
    print(f"  waiting for the database:    {total_db * per_job:.2f} ms "
          f"({statements / a.jobs:.2f} statements)")
    print(f"  the rest (Python, threads):  {(wall - total_db) * per_job:.2f} ms "
          f"(CPU time of this process: {cpu * per_job:.2f} ms)")
    writer = loop.outcomes
    print(f"  outcomes written together:   {writer.written:,} in {writer.batches:,} "
          f"transactions ({writer.written / max(writer.batches, 1):.1f} per transaction)")
    print("  by statement, per job:")
    for kind, (count, seconds) in sorted(stats.items(), key=lambda item: -item[1][1]):
        print(f"    {kind:32s} {count / a.jobs:5.2f} x  {seconds * per_job:6.3f} ms")


if __name__ == "__main__":
    main()
