"""``registry.workers()``, ``manage.py jobs workers`` and ``manage.py jobs health``.

Freshness is made by writing ``heartbeat_at`` directly: a worker is beating when its row's
heartbeat is within ``WORKER_LOST_AFTER`` (3 s in the test settings) by the database's clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from django_jobs import clock, registry
from django_jobs.models import Job, PausedQueue, Worker
from django_jobs.types import WorkerInfo
from django_jobs.worker.claim import claim
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def worker(host: str = "web-1", pid: int = 4121, *, silent: float = 0.0, **fields) -> Worker:
    """A worker row whose last heartbeat was ``silent`` seconds ago."""
    beat = clock.now() - timedelta(seconds=silent)
    fields.setdefault("started_at", beat - timedelta(minutes=10))
    return Worker.objects.create(host=host, pid=pid, heartbeat_at=beat, **fields)


def jobs(*args: str) -> tuple[int, str]:
    """Run ``manage.py jobs``; return its exit status and output."""
    out = StringIO()
    try:
        call_command("jobs", *args, stdout=out, stderr=StringIO())
    except SystemExit as exit:
        return int(exit.code), out.getvalue()
    return 0, out.getvalue()


# -- registry.workers() ---------------------------------------------------------------------


def test_workers_are_read_from_worker_rows_with_their_runs_and_staleness():
    fresh = worker("web-1", 10, queues=["mail"], concurrency=4, busy=1, version="0.1.0")
    stale = worker("web-2", 20, silent=60)
    lost = worker("web-3", 30, silent=600, state="lost")
    job = registry.enqueue("jobsapp.echo")
    claim(fresh.label, 1, ids=[job.pk], owner=fresh.pk)
    infos = {info.worker: info for info in registry.workers()}
    assert list(infos) == ["web-1:10", "web-2:20", "web-3:30"]
    assert all(isinstance(info, WorkerInfo) for info in infos.values())
    one = infos["web-1:10"]
    assert (one.queues, one.concurrency, one.busy, one.running, one.version) == (
        ("mail",), 4, 1, 1, "0.1.0")
    assert one.alive and not one.stale and one.heartbeat_age < timedelta(seconds=3)
    assert infos["web-2:20"].stale and not infos["web-2:20"].alive
    assert infos["web-3:30"].lost and not infos["web-3:30"].stale
    assert infos["web-2:20"].heartbeat_age >= timedelta(seconds=60)
    assert [info.worker for info in registry.workers(include_lost=False)] == [
        fresh.label, stale.label]
    assert lost.label not in {info.worker for info in registry.workers(include_lost=False)}


# -- manage.py jobs workers -----------------------------------------------------------------


def test_jobs_workers_prints_a_table_and_flags_stale_and_lost_rows():
    worker("web-1", 10, queues=["mail", "reports"], concurrency=4, busy=2)
    worker("web-2", 20, silent=60)
    worker("web-3", 30, silent=600, state="lost")
    status, out = jobs("workers")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["WORKER", "KIND", "STATE", "QUEUES", "BUSY", "RUNNING"]
    assert "web-1:10" in lines[1] and "mail,reports" in lines[1] and "2/4" in lines[1]
    assert "running (stale)" in lines[2] and "1 min" in lines[2]
    assert "lost" in lines[3] and "stale" not in lines[3]


def test_jobs_workers_json_gives_every_field():
    row = worker("web-1", 10, concurrency=2)
    status, out = jobs("workers", "--json")
    [data] = json.loads(out)
    assert status == 0
    assert data["id"] == str(row.pk) and data["worker"] == "web-1:10"
    assert (data["kind"], data["state"], data["queues"], data["stale"]) == (
        "worker", "running", [], False)
    assert data["concurrency"] == 2 and isinstance(data["heartbeat_age"], float)


def test_jobs_workers_says_so_when_there_is_none():
    assert jobs("workers") == (0, "No worker process has a row: is `manage.py runjobs` "
                                  "running?\n")


# -- manage.py jobs health ------------------------------------------------------------------


def test_health_is_0_with_a_beating_worker_and_no_late_job():
    worker(silent=1)
    registry.enqueue("jobsapp.echo")  # due now: waited less than --max-wait
    status, out = jobs("health")
    assert status == 0
    assert out.splitlines() == [
        "database: ok: the jobs database 'default' answers",
        "workers: ok: 1 runjobs worker(s) beat within 3 s",
        out.splitlines()[2],
    ]
    assert out.splitlines()[2].startswith("queue wait: ok: the oldest due job has waited")


def test_health_is_1_when_no_worker_beat_within_worker_lost_after():
    worker(silent=10)  # stale: older than WORKER_LOST_AFTER (3 s)
    worker("other", 2, silent=0, kind=Worker.Kind.RUN)  # fn.run() processes do not count
    status, out = jobs("health")
    assert status == 1
    assert "workers: FAIL: no runjobs worker has beaten within 3 s" in out
    Worker.objects.filter(kind="worker").update(heartbeat_at=clock.sql_now())
    assert jobs("health")[0] == 0


def test_health_is_1_when_the_oldest_due_job_waited_longer_than_max_wait():
    worker()
    Job.objects.create(name="jobsapp.echo", run_at=timezone.now() - timedelta(minutes=10))
    status, out = jobs("health")
    assert status == 1
    assert "queue wait: FAIL: the oldest due job has waited 10 min" in out
    assert "(limit 5 min)" in out
    assert jobs("health", "--max-wait", "900")[0] == 0
    # A paused queue's jobs wait on purpose.
    PausedQueue.objects.create(queue="default")
    assert jobs("health")[0] == 0


def test_health_json_lists_every_check():
    status, out = jobs("health", "--json")
    data = json.loads(out)
    assert status == 1  # no worker
    assert data["ok"] is False and data["reachable"] is True
    assert [(c["name"], c["ok"]) for c in data["checks"]] == [
        ("database", True), ("workers", False), ("queue wait", True)]


def test_health_is_2_when_the_jobs_database_is_unreachable(worker_env):
    # A real process whose database is a port nobody listens on.
    env = {**worker_env, "DATABASE_URL": "postgres://postgres@127.0.0.1:9/nowhere",
           "DJANGO_JOBS_TEST_DB": "nowhere"}
    result = subprocess.run(
        [sys.executable, "-m", "django", "jobs", "health"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout.startswith("database: FAIL: the jobs database 'default' is "
                                    "unreachable: ")
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "django", "jobs", "health", "--json"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )
    data = json.loads(result.stdout)
    assert result.returncode == 2 and data["reachable"] is False and data["ok"] is False
