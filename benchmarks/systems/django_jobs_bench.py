"""Harness for django-jobs (installed from this working tree). See common.py for the commands."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Harness, configure  # noqa: E402


class DjangoJobs(Harness):
    system = "django-jobs"
    dbname = "bench_djangojobs"
    argv0 = __file__

    def setup_django(self):
        configure(self.db, self.dbname, ["django_jobs", "djjobs_app"])
        from djjobs_app.jobs import noop

        self.noop = noop

    def migrate(self):
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def clear(self):
        from django.db import connection

        with connection.cursor() as c:
            if self.db == "postgres":
                c.execute("TRUNCATE django_jobs_job, django_jobs_jobtypelock")
            else:
                c.execute("DELETE FROM django_jobs_jobtypelock")
                c.execute("DELETE FROM django_jobs_job")

    def enqueue_one(self, **kwargs):
        self.noop.enqueue(**kwargs)

    def enqueue_bulk(self, payloads):
        self.noop.enqueue_many(payloads)

    def pending(self):
        from django_jobs.models import Job

        return Job.objects.filter(status="scheduled").count()

    def done(self):
        from django_jobs.models import Job

        return Job.objects.filter(status="succeeded").count()

    def worker_args(self, *, threads, burst):
        return ["--concurrency", str(threads), *(["--burst"] if burst else [])]

    def run_worker(self, argv):
        from django.core.management import call_command

        call_command("runjobs", *argv, verbosity=0)

    # --- claim cost against table size (django-jobs only) ----------------------------------

    def add_arguments(self, sub):
        c = sub.add_parser("claimdepth")
        c.add_argument("--depths", default="1000,100000,1000000")
        c.add_argument("--claims", type=int, default=20,
                       help="claims of 1 job timed (and half as many of 10 jobs)")
        c.add_argument("--scheduled-every", type=int, default=5,
                       help="one row in N is scheduled (due), the rest finished")

    def cmd_claimdepth(self, a):
        self.setup_django()
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from django_jobs.models import Job
        from django_jobs.worker.claim import claim

        out = {}
        for depth in [int(x) for x in a.depths.split(",")]:
            self.clear()
            t0 = time.perf_counter()
            self._fill(depth, a.scheduled_every)
            fill = time.perf_counter() - t0
            assert Job.objects.count() == depth
            # Claim one job at a time (the latency-sensitive case) and a batch of 10.
            times = {}
            for limit in (1, 10):
                samples = []
                for _ in range(a.claims if limit == 1 else max(1, a.claims // 2)):
                    s = time.perf_counter()
                    got = claim("bench:1", limit)
                    samples.append((time.perf_counter() - s) * 1000)
                    assert len(got) == limit
                times[limit] = statistics.median(samples)
            with CaptureQueriesContext(connection) as ctx:
                claim("bench:1", 1)
            select = next(q["sql"] for q in ctx.captured_queries
                          if q["sql"].lstrip().upper().startswith("SELECT")
                          and "django_jobs_job" in q["sql"])
            plan = self._explain(select)
            out[str(depth)] = {"fill_seconds": fill, "claim1_ms": times[1],
                               "claim10_ms": times[10], "plan": plan,
                               "uses_index": self._uses_index(plan)}
        self.clear()
        return {"depths": out}

    def _fill(self, depth, every):
        """depth rows: 1 in ``every`` scheduled and due, the others succeeded; one SQL statement."""
        from django.db import connection
        from django.utils import timezone

        from django_jobs.models import Job

        tmpl = self.noop.enqueue(n=0)
        Job.objects.filter(pk=tmpl.pk).update(
            status="succeeded", started_at=timezone.now(), finished_at=timezone.now()
        )
        vendor = connection.vendor
        cols, exprs = [], []
        for f in Job._meta.concrete_fields:
            cols.append(connection.ops.quote_name(f.column))
            if f.name == "id":
                exprs.append({"postgresql": "gen_random_uuid()",
                              "sqlite": "lower(hex(randomblob(16)))",
                              "mysql": "REPLACE(UUID(), '-', '')"}[vendor])
            elif f.name == "status":
                exprs.append(f"CASE WHEN s.i % {every} = 0 THEN 'scheduled' ELSE 'succeeded' END")
            elif f.name in ("started_at", "finished_at"):
                exprs.append(f"CASE WHEN s.i % {every} = 0 THEN NULL ELSE t.{cols[-1]} END")
            else:
                exprs.append(f"t.{cols[-1]}")
        table = Job._meta.db_table
        stage = "bench_template"
        series = {
            "postgresql": f"generate_series(1, {depth}) AS s(i)",
            "sqlite": f"(WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g "
                      f"WHERE i < {depth}) SELECT i FROM g) s",
            "mysql": f"(SELECT seq AS i FROM seq_1_to_{depth}) s",
        }[vendor]
        with connection.cursor() as c:
            # Keep the template row in a one-row table, then expand it into ``depth`` rows.
            c.execute(f"DROP TABLE IF EXISTS {stage}")
            c.execute(f"CREATE TABLE {stage} AS SELECT * FROM {table}")
            c.execute(f"DELETE FROM {table}")
            c.execute(f"INSERT INTO {table} ({', '.join(cols)}) "
                      f"SELECT {', '.join(exprs)} FROM {stage} t, {series}")
            c.execute(f"DROP TABLE {stage}")
            if vendor == "postgresql":
                c.execute(f"ANALYZE {table}")
            elif vendor == "sqlite":
                c.execute("ANALYZE")
            else:
                c.execute(f"ANALYZE TABLE {table}")
                c.fetchall()

    def _explain(self, sql):
        from django.db import connection

        prefix = {"postgresql": "EXPLAIN", "sqlite": "EXPLAIN QUERY PLAN",
                  "mysql": "EXPLAIN"}[connection.vendor]
        with connection.cursor() as c:
            c.execute(f"{prefix} {sql}")
            rows = c.fetchall()
            if connection.vendor == "mysql":
                names = [d[0] for d in c.description]
                return "\n".join(
                    ", ".join(f"{k}={v}" for k, v in zip(names, r, strict=False)
                              if k in ("table", "type", "key", "rows", "Extra"))
                    for r in rows)
        if connection.vendor == "sqlite":
            return "\n".join(str(r[-1]) for r in rows)
        return "\n".join(r[0] for r in rows)

    @staticmethod
    def _uses_index(plan):
        """How the claim SELECT reads the job table: which index, and whether it sorts."""
        import re

        m = (re.search(r"Index (?:Only )?Scan using (\w+) on django_jobs_job\b", plan)  # PostgreSQL
             or re.search(r"SEARCH django_jobs_job USING (?:COVERING )?INDEX (\w+)", plan)  # SQLite
             or re.search(r"table=django_jobs_job, type=\w+, key=(\w+)", plan))  # MariaDB
        if not m or m.group(1) == "None":
            return "NO (full scan)"
        sort = re.search(r"^\s*(?:->\s*)?Sort\b|TEMP B-TREE FOR ORDER BY|filesort", plan, re.M)
        return f"{m.group(1)}" + (" + sort of the due rows" if sort else "")


if __name__ == "__main__":
    DjangoJobs(sys.argv[1] if len(sys.argv) > 1 else "postgres").main()
