#!/usr/bin/env python3
"""django-jobs adapter for the postgresql-job-queue-benchmarking harness.

One long-running process per replica, as the harness's runtime contract asks
(CONTRIBUTING_ADAPTERS.md of the harness): stdout carries JSONL telemetry (one descriptor
line, then one line per metric every SAMPLE_EVERY_S), stderr carries logs.

Inside the process:

- the main thread runs a real django-jobs worker, ``manage.py runjobs`` through
  ``call_command`` (``--concurrency WORKER_COUNT``), with its own signal handling: SIGTERM
  stops it as it stops any deployed worker, then the adapter exits;
- a producer thread inserts jobs with ``JobType.enqueue_many()`` (one COPY per batch), paced
  either by the harness (``ENQUEUE <n>`` tokens on stdin, PRODUCER_PACING=harness, the
  harness's default) or by its own wall-clock credit loop (PRODUCER_PACING=adapter), at most
  PRODUCER_BATCH_MAX rows per call;
- a depth thread counts the due and running rows once a second on its own connection;
- a sampler thread prints the samples, aligned on wall-clock multiples of SAMPLE_EVERY_S.

The job body (bench_app/jobs.py) records the pickup latency (producer clock before the
insert -> first line of the body) and sleeps JOB_WORK_MS; a completion is counted when
django-jobs has written the outcome (``job_finished`` signal).

Scenarios (SCENARIO): ``long_horizon`` (the one every harness scenario uses, chaos ones
included: the harness does the killing), ``migrate_only``, ``worker_only`` (no producer).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_settings")

SYSTEM = os.environ.get("DJANGO_JOBS_BENCH_SYSTEM", "django-jobs")
EVENT_TABLES = ["public.django_jobs_job", "public.django_jobs_worker"]
EVENT_INDEXES = [
    "public.django_jobs_job_pkey",
    "public.django_jobs_due",
    "public.django_jobs_next_run",
    "public.django_jobs_lease",
    "public.django_jobs_owner",
    "public.django_jobs_finished",
    "public.django_jobs_name_status",
    "public.django_jobs_name_created",
]
# Metrics that describe the whole system rather than this replica: only replica 0 emits
# them, so a multi-replica run reports one observation per tick.
OBSERVER_METRICS = {"queue_depth", "running_depth", "producer_target_rate"}
MIGRATE_LOCK_KEY = 7_274_001  # pg_advisory_lock key: replicas migrate one at a time


def env_int(key: str, default: int) -> int:
    value = os.environ.get(key)
    return int(value) if value not in (None, "") else default


def env_float(key: str, default: float) -> float:
    value = os.environ.get(key)
    return float(value) if value not in (None, "") else default


class Config:
    def __init__(self) -> None:
        self.scenario = os.environ.get("SCENARIO", "long_horizon")
        self.producer_mode = os.environ.get("PRODUCER_MODE", "fixed")
        self.pacing = os.environ.get("PRODUCER_PACING", "adapter")
        self.rate = env_float("PRODUCER_RATE", 800)
        self.batch_max = max(1, env_int("PRODUCER_BATCH_MAX", 128))
        self.batch_ms = max(1, env_int("PRODUCER_BATCH_MS", 25))
        self.target_depth = env_int("TARGET_DEPTH", 1000)
        self.workers = max(1, env_int("WORKER_COUNT", 32))
        self.payload_bytes = max(0, env_int("JOB_PAYLOAD_BYTES", 256))
        self.sample_every = max(1, env_int("SAMPLE_EVERY_S", 5))
        self.instance = env_int("BENCH_INSTANCE_ID", 0)
        self.control_file = os.environ.get("PRODUCER_RATE_CONTROL_FILE") or None
        # SIGTERM: running jobs get this long to finish (the harness escalates to SIGKILL
        # after its own grace, 10 s by default).
        self.grace = env_float("DJANGO_JOBS_BENCH_GRACE", 5.0)
        url = os.environ.get("DATABASE_URL", "")
        self.db_name = (urlparse(url).path or "/").lstrip("/") or "django_jobs_bench"

    @property
    def observer(self) -> bool:
        return self.instance == 0


CFG = Config()
_print_lock = threading.Lock()
STOP = threading.Event()


def log(message: str) -> None:
    print(f"[{SYSTEM}-{CFG.instance}] {message}", file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    record.setdefault("instance_id", CFG.instance)
    line = json.dumps(record)
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def now_iso() -> str:
    return (
        dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class RateControl:
    """The producer's target rate: PRODUCER_RATE, or what the harness wrote into the control
    file (high-load phases), re-read at most once a second."""

    def __init__(self) -> None:
        self._rate = CFG.rate
        self._read_at = 0.0

    def current(self) -> float:
        now = time.monotonic()
        if CFG.control_file and now - self._read_at >= 1.0:
            self._read_at = now
            try:
                self._rate = float(Path(CFG.control_file).read_text().strip())
            except (OSError, ValueError):
                pass
        return self._rate


RATE = RateControl()
STATE = {"queue_depth": 0.0, "running_depth": 0.0, "target_rate": CFG.rate}


# --- setup ------------------------------------------------------------------------------------

def migrate() -> str:
    """Apply django-jobs's migrations (idempotent: a restarted replica finds them applied);
    return the latest applied migration of django_jobs."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK_KEY])
    try:
        call_command("migrate", verbosity=0, interactive=False)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK_KEY])
    latest = (
        MigrationRecorder.Migration.objects.filter(app="django_jobs")
        .order_by("-applied", "-id").values_list("name", flat=True).first()
    )
    return latest or "none"


def version() -> str:
    from django_jobs.version import __version__

    source = Path(__import__("django_jobs").__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "django_jobs"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    if sha:
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    return __version__


def descriptor(schema_version: str) -> dict:
    return {
        "kind": "descriptor",
        "system": SYSTEM,
        "event_tables": EVENT_TABLES,
        "event_indexes": EVENT_INDEXES,
        "extensions": [],
        "version": version(),
        "schema_version": schema_version,
        "db_name": CFG.db_name,
        "started_at": now_iso(),
        "worker_count": CFG.workers,
    }


# --- producer ---------------------------------------------------------------------------------

def _drop_connection() -> None:
    """After a database error: close this thread's connection, the next use reconnects."""
    from django.db import connection

    try:
        connection.close()
    except Exception:
        pass


class Producer:
    def __init__(self) -> None:
        from bench_app.jobs import bench_job

        self.job = bench_job
        self.seq = 0
        self.pad = "x" * max(0, CFG.payload_bytes - 40)  # ~40 bytes of seq + t + keys
        self._last_error_log = 0.0

    def insert(self, count: int) -> None:
        from bench_app.telemetry import TELEMETRY
        from django.db import Error

        while count > 0 and not STOP.is_set():
            n = min(count, CFG.batch_max)
            count -= n
            t = time.time()
            payloads = [{"seq": self.seq + i, "t": t, "pad": self.pad} for i in range(n)]
            started = time.perf_counter()
            try:
                self.job.enqueue_many(payloads)
            except Error as exc:
                TELEMETRY.add_enqueue_error(n)
                now = time.monotonic()
                if now - self._last_error_log > 1.0:
                    self._last_error_log = now
                    log(f"producer insert of {n} failed: {type(exc).__name__}: {exc}".strip())
                _drop_connection()
                continue
            TELEMETRY.add_enqueued(n, (time.perf_counter() - started) * 1000.0)
            self.seq += n

    def run_tokens(self, tokens: queue.Queue[int | None]) -> None:
        """Harness pacing: insert what the ENQUEUE tokens ask for, scaled by the control
        file's rate over PRODUCER_RATE (high-load phases); tokens that piled up while an
        insert was slow are merged into full batches."""
        credit = 0.0
        while not STOP.is_set():
            try:
                n = tokens.get(timeout=0.5)
            except queue.Empty:
                continue
            if n is None:
                return
            pending, eof = n, False
            while pending < CFG.batch_max:
                try:
                    more = tokens.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    eof = True
                    break
                pending += more
            target = RATE.current()
            STATE["target_rate"] = target
            credit += pending * (target / CFG.rate if CFG.rate > 0 else 1.0)
            whole = int(credit)
            credit -= whole
            if whole:
                self.insert(whole)
            if eof:
                return

    def run_paced(self) -> None:
        """Adapter pacing: credit rate x real elapsed time, insert every PRODUCER_BATCH_MS."""
        period = CFG.batch_ms / 1000.0
        last = time.monotonic()
        credit = 0.0
        while not STOP.is_set():
            if CFG.producer_mode == "depth-target":
                STATE["target_rate"] = 0.0
                room = int(CFG.target_depth - STATE["queue_depth"])
                if room <= 0:
                    STOP.wait(0.05)
                    continue
                self.insert(min(room, CFG.batch_max))
                STOP.wait(0.05)  # the depth is re-read every 0.2 s in this mode
                continue
            wait = period - (time.monotonic() - last)
            if wait > 0 and STOP.wait(wait):
                return
            now = time.monotonic()
            target = RATE.current()
            STATE["target_rate"] = target
            credit += target * (now - last)
            last = now
            whole = int(credit)
            if whole <= 0:
                continue
            credit -= whole
            self.insert(whole)


def read_tokens(tokens: queue.Queue[int | None]) -> None:
    """ENQUEUE <n> lines from the harness pacer, until EOF (the harness closes stdin at
    shutdown)."""
    for raw in sys.stdin:
        if STOP.is_set():
            break
        parts = raw.split()
        if len(parts) == 2 and parts[0] == "ENQUEUE":
            try:
                n = int(parts[1])
            except ValueError:
                continue
            if n > 0:
                tokens.put(n)
    tokens.put(None)


def wait_for_worker(timeout_s: float = 30.0) -> None:
    """Offer load once this process's worker has registered (its ``Worker`` row exists),
    as a deployment would not route work to a worker still booting. Without it the first
    second of jobs measures Django's start-up, not the queue."""
    from django.db import Error

    from django_jobs.models import Worker

    deadline = time.monotonic() + timeout_s
    while not STOP.is_set() and time.monotonic() < deadline:
        try:
            if Worker.objects.filter(pid=os.getpid()).exists():
                return
        except Error:
            _drop_connection()
        STOP.wait(0.05)
    log("the worker did not register within 30 s; producing anyway")


def producer_main() -> None:
    try:
        producer = Producer()
        if CFG.pacing == "harness" and CFG.producer_mode == "fixed":
            tokens: queue.Queue[int | None] = queue.Queue()
            threading.Thread(target=read_tokens, args=(tokens,), name="stdin-tokens",
                             daemon=True).start()
            wait_for_worker()
            # Tokens the pacer sent while the process was starting are not offered load.
            while True:
                try:
                    if tokens.get_nowait() is None:
                        return
                except queue.Empty:
                    break
            producer.run_tokens(tokens)
        else:
            wait_for_worker()
            producer.run_paced()
    except Exception as exc:  # the run must show it, not carry on silently without load
        log(f"producer stopped: {type(exc).__name__}: {exc}")
        raise
    finally:
        _drop_connection()


# --- depth ------------------------------------------------------------------------------------

def depth_main() -> None:
    from django.db import Error
    from django.db.models.functions import Now

    from django_jobs.models import Job

    period = 0.2 if CFG.producer_mode == "depth-target" else 1.0
    try:
        while not STOP.is_set():
            try:
                STATE["queue_depth"] = float(
                    Job.objects.filter(status="scheduled", run_at__lte=Now()).count()
                )
                STATE["running_depth"] = float(Job.objects.filter(status="running").count())
            except Error:
                _drop_connection()  # keep the last values; try again next tick
            STOP.wait(period)
    finally:
        _drop_connection()


# --- sampler ----------------------------------------------------------------------------------

def sampler_main() -> None:
    from bench_app.telemetry import TELEMETRY

    every = CFG.sample_every
    # First tick on the next wall-clock multiple of SAMPLE_EVERY_S, so that every system's
    # samples line up on the plots.
    first = (int(time.time()) // every + 1) * every
    if STOP.wait(max(0.0, first - time.time())):
        return
    last_tick = time.monotonic()
    last = TELEMETRY.counters()
    next_tick = first
    while True:
        # Each sample covers the SAMPLE_EVERY_S that end on its own wall-clock boundary.
        next_tick += every
        if STOP.wait(max(0.0, next_tick - time.time())):
            return
        now = time.monotonic()
        window = max(0.001, now - last_tick)
        last_tick = now
        counters = TELEMETRY.counters()
        enq, done, failed, errors = (c - p for c, p in zip(counters, last, strict=True))
        last = counters
        p50, p95, p99 = TELEMETRY.pickup.percentiles(0.50, 0.95, 0.99)
        c50, c95, c99 = TELEMETRY.producer_call.percentiles(0.50, 0.95, 0.99)
        t = now_iso()
        rows = [
            ("claim_p50_ms", p50, 30.0),
            ("claim_p95_ms", p95, 30.0),
            ("claim_p99_ms", p99, 30.0),
            ("enqueue_rate", enq / window, float(every)),
            ("completion_rate", done / window, float(every)),
            ("queue_depth", STATE["queue_depth"], 0.0),
            ("running_depth", STATE["running_depth"], 0.0),
            ("producer_target_rate", STATE["target_rate"], 0.0),
            ("producer_call_p50_ms", c50, 30.0),
            ("producer_call_p95_ms", c95, 30.0),
            ("producer_call_p99_ms", c99, 30.0),
            ("failed_rate", failed / window, float(every)),
            ("enqueue_error_rate", errors / window, float(every)),
        ]
        for metric, value, window_s in rows:
            if metric in OBSERVER_METRICS and not CFG.observer:
                continue
            emit({
                "t": t, "system": SYSTEM, "kind": "adapter", "subject_kind": "adapter",
                "subject": "", "metric": metric, "value": float(value), "window_s": window_s,
            })


# --- main -------------------------------------------------------------------------------------

def run_worker() -> int:
    """The django-jobs worker, exactly as ``manage.py runjobs`` runs it."""
    from django.core.management import call_command

    argv = ["--concurrency", str(CFG.workers), "--queue", "harness", "--grace", str(CFG.grace)]
    log(f"runjobs {' '.join(argv)}")
    try:
        call_command("runjobs", *argv)
    except SystemExit as exc:  # runjobs exits non-zero through sys.exit()
        return int(exc.code or 0)
    return 0


def main() -> int:
    import django

    if CFG.scenario not in ("long_horizon", "migrate_only", "worker_only"):
        log(f"unknown SCENARIO {CFG.scenario!r}: long_horizon, migrate_only or worker_only")
        return 2
    django.setup()
    schema = migrate()
    if CFG.scenario == "migrate_only":
        log(f"migrated ({schema})")
        return 0
    from django.db import connection

    connection.close()  # the main thread's connection is the worker's from here on
    emit(descriptor(schema))
    log(
        f"scenario={CFG.scenario} rate={CFG.rate:g}/s pacing={CFG.pacing} "
        f"batch_max={CFG.batch_max} workers={CFG.workers} payload={CFG.payload_bytes}B "
        f"work_ms={os.environ.get('JOB_WORK_MS', '1')}"
    )
    threads = [
        threading.Thread(target=sampler_main, name="sampler", daemon=True),
        threading.Thread(target=depth_main, name="depth", daemon=True),
    ]
    if CFG.scenario == "long_horizon":
        threads.append(threading.Thread(target=producer_main, name="producer", daemon=True))
    for thread in threads:
        thread.start()
    status = run_worker()
    STOP.set()
    for thread in threads:
        thread.join(timeout=2.0)
    log(f"worker exited with status {status}")
    # The worker stopped because of SIGTERM (the harness's shutdown) unless it says otherwise:
    # a status other than 0 or 75 (jobs released at shutdown) is a real failure.
    return 0 if status in (0, 75) else status


if __name__ == "__main__":
    sys.exit(main())
