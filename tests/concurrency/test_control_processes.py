"""The waiting parts of the control API against real ``runjobs`` processes: ``registry.stop()``
and ``manage.py jobs enqueue --wait`` / ``jobs stop`` as separate command-line processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from django_jobs import JobStillRunning, registry
from django_jobs.models import Job
from tests.conftest import ROOT

from .conftest import logs, wait_or_explain, worker_name

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def status(job: Job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


def cli(worker_env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "django", "jobs", *args], cwd=ROOT, env=worker_env,
        capture_output=True, text=True, timeout=timeout,
    )


def test_stop_returns_once_the_worker_process_has_ended_the_job(worker):
    proc = worker()
    job = registry.enqueue("jobsapp.cancellable", seconds=60)
    wait_or_explain(lambda: status(job) == "running", 30, proc, what="job never started")
    assert Job.objects.get(pk=job.pk).worker == worker_name(proc)
    infos = registry.stop(job.pk, timeout=20)
    assert [(i.id, i.status) for i in infos] == [(job.pk, "cancelled")], logs(proc)
    assert status(job) == "cancelled"


def test_stop_raises_when_the_worker_process_does_not_end_the_job_in_time(worker):
    proc = worker()
    job = registry.enqueue("jobsapp.drain", seconds=4)
    wait_or_explain(lambda: status(job) == "running", 30, proc, what="job never started")
    with pytest.raises(JobStillRunning):
        registry.stop(job.pk, timeout=0.5)
    wait_or_explain(lambda: status(job) == "succeeded", 30, proc, what="job never ended")


def test_enqueue_wait_follows_progress_until_success_and_exits_0(worker, worker_env):
    proc = worker()
    result = cli(worker_env, "enqueue", "jobsapp.progress_loop", "--data",
                 '{"steps": 10, "pause": 0.15}', "--wait")
    assert result.returncode == 0, result.stderr + logs(proc)
    lines = result.stdout.strip().splitlines()
    bars = [line for line in lines if line.startswith("[")]
    assert len(bars) >= 3  # several progress updates were drawn
    assert "100%" in bars[-1] and "succeeded" in bars[-1]
    assert lines[-1] == "10"


def test_enqueue_wait_exits_1_when_the_job_fails_in_the_worker(worker, worker_env):
    proc = worker()
    result = cli(worker_env, "enqueue", "jobsapp.explode", "--data", '{"message": "kaput"}',
                 "--wait")
    assert result.returncode == 1, result.stderr + logs(proc)
    assert "failed: RuntimeError: kaput" in result.stderr
    assert "Traceback" not in result.stderr


def test_jobs_stop_command_waits_for_the_worker_and_exits_0(worker, worker_env):
    proc = worker()
    job = registry.enqueue("jobsapp.cancellable", seconds=60)
    wait_or_explain(lambda: status(job) == "running", 30, proc, what="job never started")
    result = cli(worker_env, "stop", str(job.pk), "--timeout", "20")
    assert result.returncode == 0, result.stderr + logs(proc)
    assert f"{job.pk} jobsapp.cancellable: cancelled" in result.stdout
