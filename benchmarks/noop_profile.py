"""Where a no-op job's time goes in a worker: Python, database round trips, commits.

Runs a burst worker in this process (one thread by default, so nothing overlaps; more with
``--concurrency``) over ``--jobs`` queued no-op jobs on a scratch database and times every
statement each connection sends:

    .venv/bin/python benchmarks/noop_profile.py --db postgres --jobs 3000

It prints, per job, the statements sent by kind (claim, start, outcome, heartbeat...), the
transactions that wrote (a write in autocommit, or a commit), the time spent waiting for the
database, and the rest of the wall time, which is Python (the worker, the ORM, the driver) and
thread hand-offs.
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
    "postgres": "postgres://postgres@127.0.0.1:5432/{name}",
    "sqlite": "sqlite:////tmp/{name}.sqlite3",
    "mariadb": "mysql://root@127.0.0.1:3306/{name}",
}
WRITES = ("INSERT", "UPDATE", "DELETE", "WITH")


def without_lock_bound(sql: str) -> str:
    """The statement after a ``SET LOCAL lock_timeout = ...;`` sent in the same string."""
    sql = sql.lstrip()
    if sql.upper().startswith("SET LOCAL LOCK_TIMEOUT") and ";" in sql:
        return sql.split(";", 1)[1].lstrip()
    return sql


def kind_of(sql: str) -> str:
    """A short name for a statement, from its first words and what it sets."""
    text = without_lock_bound(sql).upper().replace("`", '"')
    head = text[:200]
    if head.startswith("WITH ME AS"):
        return "claim (one statement)"
    if "DJANGO_JOBS_WORKER" in head and head.startswith("UPDATE"):
        return "heartbeat"
    starts, ends = '"STARTED_AT" = ' in text, '"FINISHED_AT" = ' in text
    if head.startswith("UPDATE") and '"DJANGO_JOBS_JOB"' in head and (starts or ends):
        return "outcome" if ends else "start"
    if head.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")):
        return head.split()[0].lower()
    return " ".join(head.split()[:3]).lower()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=sorted(URLS), default="postgres")
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=1, help="the worker's job threads")
    p.add_argument("--name", default="bench_noop_profile",
                   help="the scratch database's name (created if missing, emptied)")
    p.add_argument("--linger", type=float, default=None,
                   help="seconds the writer of outcomes waits for more endings "
                   "(default: django_jobs.outcomes.LINGER)")
    a = p.parse_args()
    os.environ["DATABASE_URL"] = URLS[a.db].format(name=a.name)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("JOBS_LOG_LEVEL", "WARNING")
    if a.db == "postgres":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             autocommit=True) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 [a.name]).fetchone():
                admin.execute(f'CREATE DATABASE "{a.name}"')
    elif a.db == "mariadb":
        import MySQLdb

        admin = MySQLdb.connect(host="127.0.0.1", user="root")
        admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{a.name}`")
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
    # Transactions that wrote: a write in autocommit is one, a commit is one.
    commits = [0]

    def timed(execute, sql, params, many, context):
        start = time.perf_counter()
        alone = not context["connection"].in_atomic_block
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - start
            with lock:
                entry = stats[kind_of(sql)]
                entry[0] += 1
                entry[1] += took
                if alone and without_lock_bound(sql).upper().startswith(WRITES):
                    commits[0] += 1

    from django.db.backends.base.base import BaseDatabaseWrapper

    plain_commit = BaseDatabaseWrapper._commit

    def counted_commit(self):
        with lock:
            commits[0] += 1
        return plain_commit(self)

    BaseDatabaseWrapper._commit = counted_commit

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
    commits[0] = 0
    loop = Loop(burst=True, install_signals=False, scheduler=False, concurrency=a.concurrency)
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
    print(f"{a.jobs} no-op jobs on {a.db}, 1 worker x {a.concurrency} thread(s): "
          f"{a.jobs / wall:,.0f} jobs/s")
    print(f"  wall time per job:           {wall * per_job:.2f} ms")
    if a.concurrency == 1:
        print(f"  waiting for the database:    {total_db * per_job:.2f} ms "
              f"({statements / a.jobs:.2f} statements)")
        print(f"  the rest (Python, threads):  {(wall - total_db) * per_job:.2f} ms "
              f"(CPU time of this process: {cpu * per_job:.2f} ms)")
    else:  # the threads wait for the database at the same time: the sum is no share of wall
        print(f"  waiting for the database:    {total_db * per_job:.2f} ms, summed over the "
              f"threads ({statements / a.jobs:.2f} statements)")
        print(f"  CPU time of this process:    {cpu * per_job:.2f} ms")
    writer = loop.outcomes
    print(f"  transactions that wrote:     {commits[0] / a.jobs:.2f} per job")
    print(f"  outcomes written together:   {writer.written:,} in {writer.batches:,} "
          f"transactions ({writer.written / max(writer.batches, 1):.1f} per transaction)")
    print("  by statement, per job:")
    for kind, (count, seconds) in sorted(stats.items(), key=lambda item: -item[1][1]):
        print(f"    {kind:32s} {count / a.jobs:5.2f} x  {seconds * per_job:6.3f} ms")


if __name__ == "__main__":
    main()
