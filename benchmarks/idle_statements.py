"""Every statement one idle django-jobs worker sends to PostgreSQL, with its time.

    python benchmarks/idle_statements.py                    # 60 s, default settings
    python benchmarks/idle_statements.py --seconds 120 --workers 2 --list

Creates (or reuses) the scratch database ``idlecost``, turns ``log_statement = 'all'`` on for it
alone, migrates it, starts ``--workers`` idle ``runjobs`` processes with the default settings
(the benchmarks' one no-op job registered, no recurring job), lets them settle, then reads the
PostgreSQL server log for what they sent during ``--seconds``, and ``pg_stat_database``'s
``xact_commit`` for the same span. Prints the statements per kind and per minute, and the
transactions: a statement outside ``BEGIN``/``COMMIT`` is a transaction of its own.

Needs to read the server log (``/var/log/postgresql/postgresql-*-main.log``, root on Debian).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgres://postgres@127.0.0.1:5432"
LINE = re.compile(r"^(\S+ \S+) \S+ \[(\d+)\] \S+@(\S+) LOG:  statement: (.*)$")

WORKER = """
import sys
sys.path[:0] = [{root!r}, {systems!r}]
import django
from django.conf import settings
settings.configure(
    DATABASES={{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": {db!r},
                            "USER": "postgres", "HOST": "127.0.0.1", "PORT": 5432}}}},
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_jobs",
                    "djjobs_app"],
    USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.BigAutoField", SECRET_KEY="idle",
)
django.setup()
from django.core.management import call_command
call_command(*sys.argv[1:], verbosity=0)
"""


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["psql", f"{SERVER}/{db}", "-Atqc", sql], check=True, capture_output=True, text=True
    ).stdout.strip()


def xacts(db: str) -> int:
    # Read from another database, so that this read is not counted.
    psql("SELECT pg_stat_clear_snapshot()")
    return int(psql(f"SELECT xact_commit + xact_rollback FROM pg_stat_database "
                    f"WHERE datname = '{db}'"))


def normalize(sql: str) -> str:
    """A statement's kind: literals and lists of values folded away."""
    sql = re.sub(r"'[^']*'", "?", sql)
    sql = re.sub(r"\b\d+(\.\d+)?\b", "N", sql)
    sql = re.sub(r"\((\?|N)(, (\?|N))*\)", "(...)", sql)
    return sql if len(sql) <= 160 else sql[:157] + "..."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default="idlecost")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--warmup", type=float, default=15)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--list", action="store_true", help="print every statement with its time")
    a = p.parse_args()

    if not psql(f"SELECT 1 FROM pg_database WHERE datname = '{a.db}'"):
        psql(f"CREATE DATABASE {a.db}")
    psql(f"ALTER DATABASE {a.db} SET log_statement = 'all'")
    script = WORKER.format(root=str(ROOT), systems=str(ROOT / "benchmarks" / "systems"),
                           db=a.db)
    run = [sys.executable, "-c", script]
    subprocess.run([*run, "migrate"], check=True, capture_output=True)
    psql("TRUNCATE django_jobs_job, django_jobs_worker, django_jobs_jobschedule CASCADE", a.db)
    logs = sorted(glob.glob("/var/log/postgresql/postgresql-*-main.log"))
    if not logs:
        raise SystemExit("no PostgreSQL server log under /var/log/postgresql/")
    log = Path(logs[-1])

    procs = [subprocess.Popen([*run, "runjobs"]) for _ in range(a.workers)]
    try:
        time.sleep(a.warmup)
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit("a worker exited during the warm-up")
        start_offset, x0, t0 = log.stat().st_size, xacts(a.db), time.monotonic()
        time.sleep(a.seconds)
        end_offset, x1, t1 = log.stat().st_size, xacts(a.db), time.monotonic()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    with log.open("rb") as f:
        f.seek(start_offset)
        text = f.read(end_offset - start_offset).decode(errors="replace")
    span = t1 - t0

    statements: list[tuple[str, int, str]] = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m.group(3) == a.db:
            statements.append((m.group(1), int(m.group(2)), m.group(4)))
    # Transactions, per connection: BEGIN ... COMMIT/ROLLBACK is one; any other statement
    # outside one is one of its own.
    in_xact: dict[int, bool] = defaultdict(bool)
    transactions = 0
    kinds: Counter[str] = Counter()
    for _at, pid, sql in statements:
        word = sql.split(None, 1)[0].upper() if sql.strip() else ""
        if word in ("BEGIN", "START"):
            in_xact[pid] = True
            continue
        if word in ("COMMIT", "ROLLBACK", "END"):
            in_xact[pid] = False
            transactions += 1
            continue
        if not in_xact[pid]:
            transactions += 1
        kinds[normalize(sql)] += 1

    if a.list:
        for at, pid, sql in statements:
            print(f"{at} [{pid}] {sql[:200]}")
        print()
    minutes = span / 60
    print(f"{a.workers} idle worker(s), {span:.1f} s (after {a.warmup:.0f} s of warm-up)")
    print("  per minute  statement (BEGIN/COMMIT not counted)")
    for sql, n in kinds.most_common():
        print(f"  {n / minutes:10.1f}  {sql}")
    total = sum(kinds.values())
    print(f"statements (with BEGIN/COMMIT): {len(statements) / span:.2f}/s; "
          f"without: {total / span:.2f}/s")
    print(f"transactions from the log: {transactions / span:.2f}/s")
    print(f"transactions from pg_stat_database (xact_commit + xact_rollback): "
          f"{(x1 - x0) / span:.2f}/s")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
