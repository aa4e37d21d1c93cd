"""Time the admin overview and the metrics scrape on a large job table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/overview.py
    ... benchmarks/overview.py --rows 100000 --names 40 --runs 7

Uses the test settings and a scratch test database (created, then dropped). Rows: most
finished within the last day (so both charts and every grouped count have work), a tenth
scheduled and due, a few running. Prints the median time of each page.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_jobs.models import Job  # noqa: E402


def fill(rows: int, names: int) -> None:
    now = timezone.now()
    rng = random.Random(7)
    batch = []
    for n in range(rows):
        name = f"bench.job_{n % names}"
        kind = rng.random()
        if kind < 0.1:
            batch.append(Job(name=name, queue=f"q{n % 5}",
                             run_at=now - timedelta(seconds=rng.randint(0, 3600))))
        elif kind < 0.1005:
            batch.append(Job(name=name, status="running", started_at=now,
                             locked_until=now + timedelta(minutes=5)))
        else:
            end = now - timedelta(seconds=rng.randint(0, 86400))
            status = "failed" if rng.random() < 0.05 else "succeeded"
            batch.append(Job(name=name, status=status, finished_at=end,
                             started_at=end - timedelta(seconds=rng.random() * 30)))
        if len(batch) == 5000:
            Job.objects.bulk_create(batch)
            batch = []
    Job.objects.bulk_create(batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")  # as autovacuum would


def median_ms(client: Client, url: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        assert client.get(url).status_code == 200
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--names", type=int, default=40)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        started = time.perf_counter()
        fill(args.rows, args.names)
        print(f"{connection.vendor}: {args.rows} rows, {args.names} names "
              f"(filled in {time.perf_counter() - started:.1f} s)")
        user = User.objects.create_superuser("bench", "bench@example.com", "pw")
        client = Client()
        client.force_login(user)
        for label, url in (("admin overview", "/admin/django_jobs/job/overview/"),
                           ("metrics scrape", "/metrics/")):
            client.get(url)  # warm up
            print(f"{label}: median {median_ms(client, url, args.runs):.0f} ms "
                  f"of {args.runs} runs")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
