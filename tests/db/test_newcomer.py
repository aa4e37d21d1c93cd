"""The newcomer's path: short ids, forgetting migrate, start-up words, payload checks, stop."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_jobs import AmbiguousJobId, JobNotFound, LockKeyError, registry
from django_jobs.jobtypes import build_job_type
from django_jobs.management.commands import jobs as jobs_command
from django_jobs.management.commands.runjobs import startup_report
from django_jobs.models import Job
from tests.conftest import ROOT
from tests.jobsapp.jobs import echo, flaky, record

from .worker_helpers import run_burst

pytestmark = pytest.mark.django_db(transaction=True)


def jobs(*args: str) -> str:
    out = StringIO()
    call_command("jobs", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def with_id(prefix: str, **fields) -> Job:
    job_id = uuid.UUID(prefix.ljust(32, "0")[:24] + uuid.uuid4().hex[:8])
    return Job.objects.create(id=job_id, name="jobsapp.echo", **fields)


# -- short ids ----------------------------------------------------------------------------------


def test_the_8_characters_shown_find_the_job_in_the_api_and_the_cli():
    job = Job.objects.create(name="jobsapp.echo")
    short = str(job.pk)[:8]
    assert registry.status(short).id == job.pk
    assert registry.status(short.upper()).id == job.pk
    assert f"id        {job.pk}" in jobs("status", short)
    assert jobs("cancel", short).strip() == "Cancelled 1 job."
    new_id = jobs("retry", short).strip()
    assert Job.objects.get(pk=new_id).rescheduled_from_id == job.pk


def test_stop_takes_a_short_id():
    job = Job.objects.create(name="jobsapp.echo")
    assert f"{job.pk} jobsapp.echo: cancelled" in jobs("stop", str(job.pk)[:8])


def test_an_ambiguous_short_id_is_an_error_naming_the_count():
    for _ in range(3):
        with_id("abcd1234")
    with pytest.raises(AmbiguousJobId, match="'abcd' is ambiguous: 3 jobs start with it"):
        registry.status("abcd")
    with pytest.raises(CommandError, match="ambiguous: 3 jobs") as caught:
        jobs("cancel", "abcd")
    assert caught.value.returncode == 2
    assert not Job.objects.filter(status="cancelled").exists()


def test_a_prefix_is_matched_on_the_primary_key_range():
    near = with_id("abcd1234")
    with_id("abcd1235")
    with_id("abcd1233")
    assert registry.status("abcd1234").id == near.pk
    assert list(Job.objects.with_id_prefix("abcd1234")) == [near]
    assert Job.objects.with_id_prefix("abcd123").count() == 3


def test_a_too_short_or_unknown_short_id_is_a_clear_error():
    with_id("abcd1234")
    with pytest.raises(ValueError, match="'abc' is too short: give at least 4 hex characters"):
        registry.status("abc")
    with pytest.raises(CommandError, match="too short") as caught:
        jobs("status", "abc")
    assert caught.value.returncode == 2
    with pytest.raises(JobNotFound, match="no job id starts with 'ffff'"):
        registry.cancel("ffff")
    with pytest.raises(CommandError) as caught:
        jobs("retry", "ffff")
    assert caught.value.returncode == 3


def test_a_registered_name_wins_over_a_short_id_spelled_the_same():
    Job.objects.create(name="jobsapp.echo")
    assert registry.cancel("jobsapp.echo") == 1


# -- stop on a finished job ---------------------------------------------------------------------


def test_stop_of_a_finished_job_exits_1():
    job = Job.objects.create(name="jobsapp.echo", status="succeeded")
    with pytest.raises(CommandError, match="is succeeded; nothing to stop") as caught:
        jobs("stop", str(job.pk))
    assert caught.value.returncode == 1


# -- payloads checked at enqueue ------------------------------------------------------------------


def test_an_unknown_or_missing_keyword_is_refused_at_enqueue_and_nothing_is_stored():
    with pytest.raises(TypeError, match=r"job 'jobsapp.record' got the unknown argument 'tokn' "
                                        r"\(did you mean 'token'\?\)"):
        record.enqueue(tokn="a")
    with pytest.raises(TypeError, match="job 'jobsapp.record' needs the argument 'token'"):
        registry.enqueue("jobsapp.record", seconds=1)
    with pytest.raises(TypeError, match=r"payload\[1\]: job 'jobsapp.record' got the unknown"):
        record.enqueue_many([{"token": "a"}, {"token": "b", "colour": "red"}])
    with pytest.raises(TypeError, match="use keyword arguments"):
        registry.enqueue("jobsapp.record", "a")
    assert not Job.objects.exists()
    # Options are not payload; a function taking **data takes anything.
    assert record.enqueue(token="a", queue="mail", priority=3).queue == "mail"
    assert echo.enqueue(anything=1).data == {"anything": 1}


def test_the_jobs_command_reports_a_bad_payload_in_one_line():
    with pytest.raises(CommandError, match="unknown argument 'tokn'") as caught:
        jobs("enqueue", "jobsapp.record", "--data", '{"tokn": "a"}')
    assert caught.value.returncode == 2


def _anything(ctx, **data) -> None:
    return None


def test_an_error_of_the_lock_function_names_the_job_and_stores_nothing():
    job_type = build_job_type(_anything, {"name": "tests.per_customer",
                                          "lock": lambda data: str(data["customer"])})
    with pytest.raises(LockKeyError, match="the lock function of job 'tests.per_customer' "
                                           "raised KeyError: 'customer'"):
        job_type.enqueue_many([{"customer": 1}, {"client": 2}])
    assert not Job.objects.exists()


# -- failure logs -------------------------------------------------------------------------------


def test_failure_logs_say_which_attempt_and_what_comes_next(caplog):
    flaky.enqueue(fail_times=5)
    with caplog.at_level(logging.ERROR, logger="django_jobs"):
        run_burst()
    assert "[jobsapp.flaky] failed, attempt 1 of 3, retrying in 0.2 s: " in caplog.text


# -- start-up -----------------------------------------------------------------------------------


def test_runjobs_reports_what_it_registered_and_warns_about_unused_queues():
    report = startup_report(["default", "mial"])
    (level, first), (warn_level, warning) = report
    assert level == logging.INFO
    assert first.startswith(f"{len(registry)} jobs registered, from ")
    assert "jobsapp" in first and "django_jobs" not in first.split("from ")[1].split(", ")
    assert warn_level == logging.WARNING
    assert warning.startswith("--queue 'mial': no registered job uses this queue")


def test_runjobs_warns_when_no_job_is_registered(monkeypatch):
    monkeypatch.setattr(registry.declared, "_types", {})
    ((level, message),) = startup_report([])
    assert level == logging.WARNING and message.startswith("no job is registered")


def test_runjobs_logs_its_start_up_report(caplog):
    with caplog.at_level(logging.INFO, logger="django_jobs"):
        call_command("runjobs", "--burst", "--queue", "nowhere", "--no-scheduler")
    assert "jobs registered, from" in caplog.text
    assert "--queue 'nowhere': no registered job uses this queue" in caplog.text


def test_enqueue_wait_says_when_no_worker_serves_the_queue(monkeypatch):
    monkeypatch.setattr(jobs_command, "NO_WORKER_AFTER", 0.3)
    err = StringIO()
    with pytest.raises(CommandError, match="still scheduled after 1s"):
        call_command("jobs", "enqueue", "jobsapp.noop", "--queue", "lonely", "--wait",
                     "--timeout", "1", stdout=StringIO(), stderr=err)
    assert "no worker has started a job of queue 'lonely' in the last 0.3 s" in err.getvalue()


# -- forgetting migrate -------------------------------------------------------------------------


@pytest.fixture
def unmigrated(tmp_path, worker_env):
    """The environment of a project whose database has never been migrated."""
    return {**worker_env, "DJANGO_JOBS_TEST_DB": "",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}


def run(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_runjobs_without_migrate_says_so_and_exits_1(unmigrated):
    for args in ([], ["--burst"]):
        result = run(unmigrated, "-m", "django", "runjobs", *args)
        assert result.returncode == 1, result.stderr
        assert "the django-jobs tables are missing: run `manage.py migrate`" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_jobs_command_without_migrate_prints_one_line(unmigrated):
    for args in (["list"], ["status", "abcd1234"], ["enqueue", "jobsapp.noop"]):
        result = run(unmigrated, "-m", "django", "jobs", *args)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            "CommandError: the django-jobs tables are missing: run `manage.py migrate`")


def test_enqueue_without_migrate_raises_the_same_words(unmigrated):
    code = (
        "import django; django.setup()\n"
        "from django_jobs import JobTablesMissing\n"
        "from tests.jobsapp.jobs import echo\n"
        "try:\n    echo.enqueue(n=1)\n"
        "except JobTablesMissing as exc:\n    print('raised:', exc)\n"
    )
    result = run(unmigrated, "-c", code)
    assert result.stdout.strip() == (
        "raised: the django-jobs tables are missing: run `manage.py migrate`"), result.stderr
