"""What every per-system harness shares: settings, timing, worker processes, counters.

A harness runs inside its system's virtualenv and is started by ``benchmarks/suite.py``::

    python <system>_bench.py <db> setup
    python <system>_bench.py <db> enqueue --jobs 5000 --mode single|atomic|bulk
    python <system>_bench.py <db> drain --jobs 5000 --processes 2 --threads 4
    python <system>_bench.py <db> latency --jobs 200 --gap 0.05
    python <system>_bench.py <db> idle --seconds 30
    python <system>_bench.py <db> worker [worker arguments]   (used by the three above)

Each subcommand prints one JSON object on its last line of stdout. ``<db>`` is ``postgres``,
``sqlite`` or ``mariadb``; every system gets its own scratch database (``bench_<system>`` on the
servers, ``/tmp/bench_<system>.sqlite3`` for SQLite).
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# --- settings -------------------------------------------------------------------------------

def database_settings(db: str, name: str) -> dict:
    # Persistent connections for every system: without them db_worker (which closes old
    # connections around every task, as a request would) reconnects for each task.
    return {**_database_settings(db, name), "CONN_MAX_AGE": None}


def _database_settings(db: str, name: str) -> dict:
    if db == "postgres":
        return {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                "HOST": "127.0.0.1", "PORT": "5432"}
    if db == "mariadb":
        return {"ENGINE": "django.db.backends.mysql", "NAME": name, "USER": "root",
                "HOST": "127.0.0.1", "PORT": "3306", "OPTIONS": {"charset": "utf8mb4"}}
    if db == "sqlite":
        # The same SQLite settings for every system: WAL, a busy timeout, and write
        # transactions that take the lock when they begin.
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": f"/tmp/{name}.sqlite3",
                "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                            "init_command": "PRAGMA journal_mode=WAL;"}}
    raise SystemExit(f"unknown database {db!r}")


def create_database(db: str, name: str) -> None:
    """Create the scratch database on the server if it does not exist."""
    if db == "postgres":
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname=%s", [name]).fetchone():
                c.execute(f'CREATE DATABASE "{name}"')
    elif db == "mariadb":
        import MySQLdb

        c = MySQLdb.connect(host="127.0.0.1", user="root")
        c.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        c.close()


def configure(db: str, name: str, apps: list[str], **extra) -> None:
    import django
    from django.conf import settings

    sys.path.insert(0, str(HERE))
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmarks",
        USE_TZ=True,
        DATABASES={"default": database_settings(db, name)},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", *apps],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
        **extra,
    )
    django.setup()
    if os.environ.get("BENCH_COUNT_FILE"):
        install_statement_counter(os.environ["BENCH_COUNT_FILE"])


# --- the no-op task body --------------------------------------------------------------------

#: When this process ran its first and its last no-op (drains report the span between them).
_span = [0.0, 0.0]


def noop_body(t: float | None = None) -> None:
    """The body of every system's no-op task. With ``t`` (enqueue time), note when it started."""
    now = time.time()
    if not _span[0]:
        _span[0] = now
    _span[1] = now
    if t is not None:
        started = time.time()
        path = os.environ.get("BENCH_LATENCY_FILE")
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{started - t:.6f}\n".encode())
            finally:
                os.close(fd)


# --- statement counting (client side: every statement a process sends) --------------------

_counter = itertools.count()
_count = [0]


def _bump() -> None:
    _count[0] = next(_counter) + 1


def install_statement_counter(path: str) -> None:
    """Count statements sent by this process; write the count on SIGUSR1 and at exit.

    Django connections are counted with an execute wrapper; psycopg cursors opened outside
    Django (procrastinate's worker pool) by wrapping psycopg's cursor classes.
    """
    from django.db.backends.signals import connection_created

    def wrapper(execute, sql, params, many, context):
        _bump()
        return execute(sql, params, many, context)

    def on_connection(sender, connection, **kwargs):
        if wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)

    if os.environ.get("BENCH_COUNT_PSYCOPG"):
        # Django's PostgreSQL cursors are psycopg cursors too: counted once, here.
        import psycopg

        for cls in (psycopg.AsyncCursor, psycopg.Cursor):
            for meth in ("execute", "executemany"):
                _wrap_method(cls, meth)
    else:
        connection_created.connect(on_connection, weak=False)

    def dump(*_):
        Path(path).write_text(json.dumps({"statements": _count[0], "first": _span[0],
                                          "last": _span[1]}))

    signal.signal(signal.SIGUSR1, dump)
    atexit.register(dump)


def _wrap_method(cls, name):
    import inspect

    original = getattr(cls, name)
    if inspect.iscoroutinefunction(original):
        async def wrapped(self, *a, **k):
            _bump()
            return await original(self, *a, **k)
    else:
        def wrapped(self, *a, **k):
            _bump()
            return original(self, *a, **k)
    setattr(cls, name, wrapped)


# --- processes ------------------------------------------------------------------------------

def spawn_worker(argv0: str, db: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, argv0, db, "worker", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    proc.errfile = err
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    proc.errfile.seek(0)
    return proc.errfile.read().decode(errors="replace")[-3000:]


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_all(procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                stop(p)
            raise SystemExit(f"workers did not finish within {timeout:.0f} s") from None
    for proc in procs:
        if proc.returncode != 0:
            raise SystemExit(f"worker exited with {proc.returncode}: {stderr_of(proc)}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_settled(proc, quiet: float = 2.0, busy: float = 0.02, start_cpu: float = 0.3,
                       timeout: float = 120) -> float:
    """Seconds until a freshly spawned process, having used ``start_cpu`` seconds of CPU (its
    imports: a process starved by others has not started yet), then used less than ``busy``
    of a CPU over ``quiet`` seconds in a row: its start-up (registration, first sweep, LISTEN)
    is over. An idle worker uses well under 1 % of a CPU."""
    started = last = time.monotonic()
    cpu = cpu_seconds(proc.pid)
    while time.monotonic() - started < timeout:
        time.sleep(0.25)
        if proc.poll() is not None:
            raise SystemExit(f"worker exited: {stderr_of(proc)}")
        now, used = time.monotonic(), cpu_seconds(proc.pid)
        if used < start_cpu or used - cpu > busy * (now - last):
            last, cpu = now, used
        elif now - last >= quiet:
            return last - started
    raise SystemExit(f"the worker did not settle within {timeout:.0f} s")


def pg_xacts(name: str) -> int:
    """Committed + rolled back transactions of a PostgreSQL database (read from another one)."""
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute("SELECT pg_stat_clear_snapshot()")
        row = c.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname=%s", [name]
        ).fetchone()
        return int(row[0])


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


# --- the harness ----------------------------------------------------------------------------

class Harness:
    """Subclasses say how their system enqueues, empties its table and starts workers."""

    system = "?"
    dbname = "bench_x"
    argv0 = ""
    has_bulk = True
    count_psycopg = False

    def __init__(self, db: str):
        self.db = db

    # to implement
    def setup_django(self) -> None: ...
    def migrate(self) -> None: ...
    def clear(self) -> None: ...
    def enqueue_one(self, **kwargs) -> None: ...
    def enqueue_bulk(self, payloads: list[dict]) -> None: ...
    def pending(self) -> int: ...
    def done(self) -> int: ...
    def worker_args(self, *, threads: int, burst: bool) -> list[str]: ...
    def run_worker(self, argv: list[str]) -> None: ...

    # shared
    def atomic(self):
        from django.db import transaction

        return transaction.atomic()

    def cmd_setup(self, a) -> dict:
        create_database(self.db, self.dbname)
        self.setup_django()
        self.migrate()
        self.clear()
        return {"ok": True}

    def cmd_enqueue(self, a) -> dict:
        self.setup_django()
        self.clear()
        n = a.jobs
        if a.mode == "bulk":
            if not self.has_bulk:
                return {"rate": None, "note": "no bulk API"}
            start = time.perf_counter()
            self.enqueue_bulk([{"n": i} for i in range(n)])
        elif a.mode == "atomic":
            start = time.perf_counter()
            with self.atomic():
                for i in range(n):
                    self.enqueue_one(n=i)
        else:
            start = time.perf_counter()
            for i in range(n):
                self.enqueue_one(n=i)
        elapsed = time.perf_counter() - start
        assert self.pending() == n, f"expected {n} pending, found {self.pending()}"
        self.clear()
        return {"rate": n / elapsed, "seconds": elapsed}

    def cmd_drain(self, a) -> dict:
        """Drain ``--jobs`` queued no-ops with ``--processes`` workers.

        By default with the workers' own "until the queue is empty" mode (``--burst``,
        ``--one-shot``, ``--batch``), which exit by themselves. With ``--long``, with the
        long-running workers users deploy: the queue is watched in the database and the
        workers are stopped (SIGTERM) once it is empty. Either way the clock runs from the
        launch of the workers, and "first job to last" from the job bodies.
        """
        self.setup_django()
        from django.db import connection

        self.clear()
        self.enqueue_bulk_or_atomic([{"n": i} for i in range(a.jobs)])
        connection.close()
        counts = [tempfile.mktemp(prefix="bench-count-") for _ in range(a.processes)]
        xacts0 = pg_xacts(self.dbname) if self.db == "postgres" else None
        start = time.perf_counter()
        procs = [
            spawn_worker(self.argv0, self.db,
                         self.worker_args(threads=a.threads, burst=not a.long),
                         env={"BENCH_COUNT_FILE": c})
            for c in counts
        ]
        if a.long:
            self.watch_until_done(procs, a.jobs, a.timeout)
            elapsed = time.perf_counter() - start
            for proc in procs:
                stop(proc)
        else:
            wait_all(procs, a.timeout)
            elapsed = time.perf_counter() - start
        done = self.done()
        dumps = [json.loads(Path(c).read_text()) for c in counts if Path(c).exists()]
        for c in counts:
            Path(c).unlink(missing_ok=True)
        if done != a.jobs:
            raise SystemExit(f"only {done} of {a.jobs} jobs finished")
        statements = sum(d["statements"] for d in dumps)
        # Steady state: from the first job body to the last, across processes (no start-up,
        # no exit), beside the rate from launching the workers to their exit.
        firsts = [d["first"] for d in dumps if d["first"]]
        span = max(d["last"] for d in dumps) - min(firsts) if firsts else 0
        out = {"rate": a.jobs / elapsed, "seconds": elapsed,
               "steady_rate": (a.jobs - 1) / span if span > 0 else None,
               "statements_per_job": statements / a.jobs}
        if xacts0 is not None:
            time.sleep(0.6)  # let the workers' last statistics reach pg_stat_database
            out["xacts_per_job"] = (pg_xacts(self.dbname) - xacts0) / a.jobs
        self.clear()
        return out

    def watch_until_done(self, procs: list, jobs: int, timeout: float) -> None:
        """Poll the database every 10 ms until every job is done (the long-running drain)."""
        from django.db import connection

        deadline = time.monotonic() + timeout
        try:
            while self.done() < jobs:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the queue was not empty within {timeout:.0f} s")
                for proc in procs:
                    if proc.poll() is not None:
                        raise SystemExit(f"worker exited with {proc.returncode}: "
                                         f"{stderr_of(proc)}")
                time.sleep(0.01)
        except BaseException:
            for proc in procs:
                stop(proc)
            raise
        finally:
            connection.close()

    def enqueue_bulk_or_atomic(self, payloads):
        if self.has_bulk:
            self.enqueue_bulk(payloads)
        else:
            with self.atomic():
                for p in payloads:
                    self.enqueue_one(**p)

    def cmd_latency(self, a) -> dict:
        self.setup_django()
        self.clear()
        lat = tempfile.mktemp(prefix="bench-latency-")
        proc = spawn_worker(self.argv0, self.db, self.worker_args(threads=a.threads, burst=False),
                            env={"BENCH_LATENCY_FILE": lat})
        try:
            # Wait until the worker runs jobs: one probe job, then let it go idle.
            self.enqueue_one(t=time.time())
            deadline = time.monotonic() + 30
            while not Path(lat).exists() and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited: {stderr_of(proc)}")
                time.sleep(0.05)
            time.sleep(a.settle)
            Path(lat).unlink(missing_ok=True)
            for _ in range(a.jobs):
                self.enqueue_one(t=time.time())
                time.sleep(a.gap)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = Path(lat).read_text().split() if Path(lat).exists() else []
                if len(got) >= a.jobs:
                    break
                time.sleep(0.1)
        finally:
            stop(proc)
        values = [float(x) * 1000 for x in got]
        Path(lat).unlink(missing_ok=True)
        self.clear()
        return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
                "p99": percentile(values, 99), "max": max(values) if values else None}

    def cmd_idle(self, a) -> dict:
        self.setup_django()
        from django.db import connection

        self.clear()
        connection.close()
        count = tempfile.mktemp(prefix="bench-count-")
        proc = spawn_worker(self.argv0, self.db, self.worker_args(threads=a.threads, burst=False),
                            env={"BENCH_COUNT_FILE": count})
        try:
            # The warm-up counts from the end of the worker's start-up, not from its spawn:
            # PostgreSQL reports an idle backend's transactions to pg_stat_database up to 10 s
            # after they commit, and a start-up slowed by other processes (the suite starts
            # every idle harness at once) ended late enough for its transactions to be counted
            # in the window (0.69 and 0.86 transactions/s for a worker that sent 0.33).
            settled_after = wait_until_settled(proc)
            time.sleep(a.warmup)
            if proc.poll() is not None:
                raise SystemExit(f"worker exited: {stderr_of(proc)}")

            def snapshot():
                os.kill(proc.pid, signal.SIGUSR1)
                time.sleep(0.3)
                stmts = json.loads(Path(count).read_text())["statements"]
                return (time.monotonic(), cpu_seconds(proc.pid), stmts,
                        pg_xacts(self.dbname) if self.db == "postgres" else None)

            t0, c0, s0, x0 = snapshot()
            time.sleep(a.seconds)
            t1, c1, s1, x1 = snapshot()
        finally:
            stop(proc)
            Path(count).unlink(missing_ok=True)
        span = t1 - t0
        return {"seconds": span, "settled_after": settled_after,
                "cpu_percent": 100 * (c1 - c0) / span,
                "statements_per_s": (s1 - s0) / span,
                "xacts_per_s": (x1 - x0) / span if x0 is not None else None}

    def cmd_worker(self, argv: list[str]) -> None:
        self.setup_django()
        self.run_worker(argv)

    def main(self) -> None:
        if len(sys.argv) > 2 and sys.argv[2] == "worker":
            self.db = sys.argv[1]
            self.cmd_worker(sys.argv[3:])
            return
        p = argparse.ArgumentParser()
        p.add_argument("db", choices=["postgres", "sqlite", "mariadb"])
        sub = p.add_subparsers(dest="cmd", required=True)
        sub.add_parser("setup")
        e = sub.add_parser("enqueue")
        e.add_argument("--jobs", type=int, default=5000)
        e.add_argument("--mode", choices=["single", "atomic", "bulk"], default="single")
        d = sub.add_parser("drain")
        d.add_argument("--jobs", type=int, default=5000)
        d.add_argument("--processes", type=int, default=1)
        d.add_argument("--threads", type=int, default=1)
        d.add_argument("--timeout", type=float, default=300)
        d.add_argument("--long", action="store_true",
                       help="long-running workers, stopped once the queue is empty")
        lt = sub.add_parser("latency")
        lt.add_argument("--jobs", type=int, default=200)
        lt.add_argument("--gap", type=float, default=0.05)
        lt.add_argument("--threads", type=int, default=1)
        lt.add_argument("--settle", type=float, default=1.0)
        i = sub.add_parser("idle")
        i.add_argument("--seconds", type=float, default=30)
        # After the worker settled (see cmd_idle), and longer than PostgreSQL's 10 s: an idle
        # backend reports its transactions to pg_stat_database up to 10 s late, so a shorter
        # warm-up counts the set-up's and the worker's start-up in the idle window (3 s from
        # the spawn made 0.43 transactions/s read as 1.25).
        i.add_argument("--warmup", type=float, default=12)
        i.add_argument("--threads", type=int, default=1)
        self.add_arguments(sub)
        a = p.parse_args()
        self.db = a.db
        emit({"system": self.system, "db": self.db, **getattr(self, f"cmd_{a.cmd}")(a)})

    def add_arguments(self, sub) -> None:
        pass
