"""Harness for django-tasks-db (Django's Tasks framework, database backend, ``db_worker``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Harness, configure  # noqa: E402


class TasksDb(Harness):
    system = "django-tasks-db"
    dbname = "bench_tasksdb"
    argv0 = __file__
    has_bulk = False  # Django's Tasks API enqueues one task per call

    def setup_django(self):
        configure(self.db, self.dbname, ["django_tasks_db", "tdb_app"],
                  TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}})
        from tdb_app.tasks import noop

        self.noop = noop

    def migrate(self):
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def clear(self):
        from django.db import connection
        from django_tasks_db.models import DBTaskResult

        table = DBTaskResult._meta.db_table
        with connection.cursor() as c:
            c.execute(f"TRUNCATE {table}" if self.db == "postgres" else f"DELETE FROM {table}")

    def enqueue_one(self, **kwargs):
        self.noop.enqueue(**kwargs)

    def pending(self):
        from django_tasks_db.models import DBTaskResult

        return DBTaskResult.objects.filter(status="READY").count()

    def done(self):
        from django_tasks_db.models import DBTaskResult

        return DBTaskResult.objects.filter(status="SUCCESSFUL").count()

    def worker_args(self, *, threads, burst):
        # db_worker runs one task at a time per process: parallelism is processes only.
        assert threads == 1, "db_worker has no thread option"
        return ["--no-startup-delay", "--no-reload", *(["--batch"] if burst else [])]

    def run_worker(self, argv):
        from django.core.management import call_command

        call_command("db_worker", *argv, verbosity=0)


if __name__ == "__main__":
    TasksDb(sys.argv[1] if len(sys.argv) > 1 else "postgres").main()
