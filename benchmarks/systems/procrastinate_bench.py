"""Harness for procrastinate through its Django integration (``procrastinate.contrib.django``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Harness, configure  # noqa: E402


class Procrastinate(Harness):
    system = "procrastinate"
    dbname = "bench_procrastinate"
    argv0 = __file__

    def setup_django(self):
        import os

        if self.db != "postgres":
            raise SystemExit("procrastinate runs on PostgreSQL only")
        os.environ.setdefault("BENCH_COUNT_PSYCOPG", "1")
        configure(self.db, self.dbname, ["procrastinate.contrib.django", "proc_app"])
        from proc_app.tasks import noop

        self.noop = noop

    def migrate(self):
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def clear(self):
        from django.db import connection

        with connection.cursor() as c:
            c.execute("TRUNCATE procrastinate_jobs CASCADE")

    def enqueue_one(self, **kwargs):
        self.noop.defer(**kwargs)

    def enqueue_bulk(self, payloads):
        self.noop.batch_defer(*payloads)

    def _count(self, status):
        from django.db import connection

        with connection.cursor() as c:
            c.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = %s", [status])
            return c.fetchone()[0]

    def pending(self):
        return self._count("todo")

    def done(self):
        return self._count("succeeded")

    def worker_args(self, *, threads, burst):
        # --concurrency: jobs run at once by one worker (sync tasks run in threads).
        return ["worker", "--concurrency", str(threads), *(["--one-shot"] if burst else [])]

    def run_worker(self, argv):
        from django.core.management import call_command

        call_command("procrastinate", *argv)


if __name__ == "__main__":
    Procrastinate(sys.argv[1] if len(sys.argv) > 1 else "postgres").main()
