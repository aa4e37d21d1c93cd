"""``manage.py jobs``: every subcommand, its output, its ``--json`` and its exit status.

Most tests go through ``call_command`` (a ``CommandError`` carries the exit status); a few run
the real command line to prove that errors print one line and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_jobs import registry
from django_jobs.models import Job, JobSchedule, JobStatus, PausedQueue, Worker
from django_jobs.testing import frozen_clock
from django_jobs.worker.claim import claim
from tests.conftest import ROOT

from .worker_helpers import run_burst, started, status_of, worker_thread

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)


def jobs(*args: str) -> str:
    out = StringIO()
    call_command("jobs", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def jobs_json(*args: str):
    return json.loads(jobs(*args, "--json"))


def exit_status(*args: str) -> tuple[int, str]:
    with pytest.raises(CommandError) as info:
        jobs(*args)
    return info.value.returncode, str(info.value)


# -- list -----------------------------------------------------------------------------------


def test_list_prints_a_table_with_schedule_next_run_and_last_outcome():
    with frozen_clock(T0) as clock:
        registry.enqueue("jobsapp.explode")
        run_burst()
        clock.advance(minutes=2)
        out = jobs("list")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split() == ["NAME", "SCHEDULE", "NEXT", "RUN", "LAST", "RUN",
                                           "RUNNING", "STATE"]
    assert set(lines) == set(registry.names())
    assert "0 * * * *  (at minute 0 of every hour)" in lines["billing:invoice-sync"]
    assert "disabled" in lines["billing:invoice-sync"]
    assert "failed 2 min ago" in lines["jobsapp.explode"]


def test_list_json_gives_every_job_with_its_fields():
    data = jobs_json("list")
    assert [item["name"] for item in data] == registry.names()
    sync = next(item for item in data if item["name"] == "billing:invoice-sync")
    assert (sync["cron"], sync["schedule"], sync["enabled"]) == (
        "0 * * * *", "at minute 0 of every hour", False
    )


# -- status ---------------------------------------------------------------------------------


def test_status_prints_progress_message_and_elapsed_in_words():
    with frozen_clock(T0) as clock:
        job = registry.enqueue("jobsapp.echo", n=1)
        started(claim("host:1", 1, ids=[job.pk]))
        Job.objects.filter(pk=job.pk).update(progress=0.5, progress_message="half way",
                                             eta=T0 + timedelta(seconds=90))
        clock.advance(seconds=65)
        out = jobs("status", str(job.pk))
    assert "running (attempt 1/1)" in out
    assert "50% half way" in out
    assert "eta       in 25 s" in out
    assert "elapsed   1 min 5 s" in out
    assert "host:1" in out


def test_status_json_is_the_status_snapshot():
    job = registry.enqueue("jobsapp.echo", n=1)
    run_burst()
    data = jobs_json("status", str(job.pk))
    assert (data["id"], data["status"], data["result"]) == (
        str(job.pk), "succeeded", {"data": {"n": 1}, "attempt": 1}
    )


def test_status_of_unknown_or_malformed_id_exits_3():
    code, message = exit_status("status", str(uuid.uuid4()))
    assert code == 3 and "no job with id" in message
    code, message = exit_status("status", "nope")
    assert code == 3 and "not a job id" in message


# -- enqueue --------------------------------------------------------------------------------


def test_enqueue_prints_the_id_of_a_scheduled_job_with_payload_and_options():
    with frozen_clock(T0):
        out = jobs("enqueue", "jobsapp.echo", "--data", '{"n": 5}', "--delay", "1h30m",
                   "--queue", "mail", "--priority", "7")
    job = Job.objects.get(pk=out.strip())
    assert (job.status, job.data, job.queue, job.priority) == ("scheduled", {"n": 5}, "mail", 7)
    assert job.run_at == T0 + timedelta(hours=1, minutes=30)


def test_enqueue_json_prints_the_new_job_status():
    data = jobs_json("enqueue", "jobsapp.noop")
    assert data["status"] == "scheduled" and Job.objects.filter(pk=data["id"]).exists()


def test_enqueue_of_unknown_job_exits_3_and_suggests_close_names():
    code, message = exit_status("enqueue", "jobsapp.ecoh")
    assert code == 3 and "did you mean 'jobsapp.echo'" in message
    assert not Job.objects.exists()


def test_enqueue_with_bad_json_or_bad_delay_exits_2():
    code, message = exit_status("enqueue", "jobsapp.echo", "--data", "{n: 1}")
    assert code == 2 and "--data is not valid JSON" in message
    code, message = exit_status("enqueue", "jobsapp.echo", "--data", "[1, 2]")
    assert code == 2 and "JSON object" in message
    code, message = exit_status("enqueue", "jobsapp.echo", "--delay", "soon")
    assert code == 2 and "duration" in message
    code, message = exit_status("enqueue", "jobsapp.record", "--data", '{"token": {"a": {1}}}')
    assert code == 2
    assert not Job.objects.exists()


def test_enqueue_wait_shows_progress_and_prints_the_result():
    with worker_thread():
        out = jobs("enqueue", "jobsapp.progress_loop", "--data",
                   '{"steps": 5, "pause": 0.2}', "--wait")
    lines = out.strip().splitlines()
    assert any("[" in line and "%" in line and "step" in line for line in lines)
    assert "100%" in lines[-2] and "succeeded in" in lines[-2]
    assert lines[-1] == "5"


def test_enqueue_wait_exits_1_when_the_job_fails():
    with worker_thread():
        code, message = exit_status("enqueue", "jobsapp.explode", "--data",
                                    '{"message": "kaput"}', "--wait")
    assert code == 1 and "failed: RuntimeError: kaput" in message


def test_enqueue_wait_gives_up_after_its_timeout_with_exit_1():
    code, message = exit_status("enqueue", "jobsapp.echo", "--wait", "--timeout", "0.3")
    assert code == 1 and "still scheduled" in message


# -- cancel, stop, retry, succeed, fail -----------------------------------------------------


def test_cancel_by_id_and_by_name():
    one = registry.enqueue("jobsapp.echo")
    assert jobs("cancel", str(one.pk)).strip() == "Cancelled 1 job."
    registry.enqueue("jobsapp.noop")
    registry.enqueue("jobsapp.noop")
    assert jobs("cancel", "jobsapp.noop").strip() == "Cancelled 2 jobs."
    assert status_of(one) == "cancelled"


def test_cancel_of_a_finished_job_exits_1_and_of_an_unknown_one_exits_3():
    job = registry.enqueue("jobsapp.echo")
    run_burst()
    code, message = exit_status("cancel", str(job.pk))
    assert code == 1 and "succeeded; nothing to cancel" in message
    assert exit_status("cancel", str(uuid.uuid4()))[0] == 3
    assert exit_status("cancel", "jobsapp.ecoh")[0] == 3


def test_stop_waits_for_the_running_job_and_prints_how_it_ended():
    with worker_thread():
        job = registry.enqueue("jobsapp.cancellable")
        from tests.conftest import wait_for

        wait_for(lambda: status_of(job) == "running", timeout=15)
        data = jobs_json("stop", str(job.pk), "--timeout", "10")
    assert [(d["id"], d["status"]) for d in data] == [(str(job.pk), "cancelled")]


def test_stop_exits_1_when_the_job_outlives_the_timeout():
    job = registry.enqueue("jobsapp.echo")
    claim("gone:1", 1, ids=[job.pk])  # "running" on a worker that never looks at it
    code, message = exit_status("stop", str(job.pk), "--timeout", "0.3")
    assert code == 1 and "still running" in message


def test_retry_prints_the_new_job_and_refuses_a_pending_one_with_exit_1():
    job = registry.enqueue("jobsapp.explode")
    assert exit_status("retry", str(job.pk))[0] == 1
    run_burst()
    new_id = jobs("retry", str(job.pk)).strip()
    assert Job.objects.get(pk=new_id).rescheduled_from_id == job.pk


def test_succeed_and_fail_record_outcomes_and_refuse_held_jobs():
    job = registry.enqueue("jobsapp.echo")
    data = jobs_json("succeed", str(job.pk), "--result", '{"ok": true}')
    assert (data["status"], data["result"]) == ("succeeded", {"ok": True})
    other = registry.enqueue("jobsapp.echo")
    assert "failed" in jobs("fail", str(other.pk), "--message", "by hand")
    assert Job.objects.get(pk=other.pk).error == "by hand"
    held = registry.enqueue("jobsapp.echo")
    claim("host:1", 1, ids=[held.pk])
    code, message = exit_status("succeed", str(held.pk))
    assert code == 1 and "a worker holds it" in message
    assert exit_status("succeed", str(held.pk), "--result", "{")[0] == 2


# -- prune, locks, inspect ------------------------------------------------------------------


def test_prune_reports_how_many_rows_it_deleted():
    with frozen_clock(T0) as clock:
        registry.enqueue("jobsapp.echo")
        run_burst()
        clock.advance(days=8)
        assert jobs_json("prune") == {"deleted": 1}
        assert jobs("prune").strip() == "Deleted 0 finished jobs."


def test_locks_lists_holders_as_a_table_and_as_json():
    assert jobs("locks").strip() == "No locks are held."
    job = registry.enqueue("jobsapp.locked_sleep")
    claim("host:9", 1, ids=[job.pk])
    out = jobs("locks")
    assert "jobsapp.locked_sleep" in out and "host:9" in out and "running" in out
    data = jobs_json("locks")
    assert [(d["key"], d["job_id"], d["expired"]) for d in data] == [
        ("jobsapp.locked_sleep", str(job.pk), False)
    ]


def test_inspect_shows_queue_depth_oldest_due_running_jobs_and_workers():
    with frozen_clock(T0) as clock:
        registry.enqueue("jobsapp.echo", queue="mail")
        running = registry.enqueue("jobsapp.echo")
        box = Worker.objects.create(host="box", pid=3, started_at=T0, heartbeat_at=T0)
        claim("box:3", 1, ids=[running.pk], owner=box.pk)
        clock.advance(minutes=3)
        out = jobs("inspect")
        data = jobs_json("inspect")
    assert "mail" in out and "3 min" in out and "box:3" in out and str(running.pk) in out
    mail = next(q for q in data["queues"] if q["queue"] == "mail")
    assert (mail["due"], mail["oldest_due_age"], mail["counts"]) == (1, 180.0, {"scheduled": 1})
    [worker] = data["workers"]
    assert (worker["worker"], worker["running"], worker["last_heartbeat"]) == (
        "box:3", 1, T0.isoformat())
    assert worker["heartbeat_age"] == 180.0 and worker["stale"] is True


# -- pause and resume -----------------------------------------------------------------------


def test_pause_and_resume_recurring_jobs_by_name():
    assert jobs("pause", "billing:invoice-sync").strip() == "Paused billing:invoice-sync."
    assert JobSchedule.objects.get(name="billing:invoice-sync").paused
    jobs("resume", "billing:invoice-sync")
    assert not JobSchedule.objects.get(name="billing:invoice-sync").paused


def test_pause_of_an_unknown_name_exits_3_and_changes_nothing():
    code, _ = exit_status("pause", "billing:invoice-sync", "billing:invoce-sync")
    assert code == 3
    assert not JobSchedule.objects.filter(paused=True).exists()


def test_pause_of_a_one_off_job_exits_2():
    code, message = exit_status("pause", "jobsapp.echo")
    assert code == 2 and "not recurring" in message


def test_pause_queue_and_resume_queue():
    jobs("pause-queue", "mail", "reports")
    assert set(PausedQueue.objects.values_list("queue", flat=True)) == {"mail", "reports"}
    jobs("resume-queue", "mail")
    assert list(PausedQueue.objects.values_list("queue", flat=True)) == ["reports"]


# -- the real command line ------------------------------------------------------------------


def run_cli(worker_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "django", "jobs", *args], cwd=ROOT, env=worker_env,
        capture_output=True, text=True, timeout=60,
    )


def test_command_line_errors_print_one_line_without_traceback(worker_env):
    cases = [
        (("enqueue", "jobsapp.ecoh"), 3, "did you mean 'jobsapp.echo'"),
        (("enqueue", "jobsapp.echo", "--data", "{oops"), 2, "--data is not valid JSON"),
        (("status", str(uuid.uuid4())), 3, "no job with id"),
        (("frobnicate",), 2, "invalid choice"),
    ]
    for args, code, text in cases:
        result = run_cli(worker_env, *args)
        assert result.returncode == code, (args, result.stderr)
        assert text in result.stderr
        assert "Traceback" not in result.stderr


def test_command_line_enqueue_and_list_json(worker_env):
    result = run_cli(worker_env, "enqueue", "jobsapp.echo", "--data", '{"n": 1}')
    assert result.returncode == 0, result.stderr
    job = Job.objects.get(pk=result.stdout.strip())
    assert job.status == JobStatus.SCHEDULED
    listing = run_cli(worker_env, "list", "--json")
    assert listing.returncode == 0
    echo = next(d for d in json.loads(listing.stdout) if d["name"] == "jobsapp.echo")
    assert echo["scheduled"] == 1
