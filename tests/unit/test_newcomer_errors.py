"""Mistakes caught where they are made, with messages that say what to do. No database."""

from __future__ import annotations

import decimal
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, ProgrammingError

from django_jobs import JobContext, LockKeyError, payload
from django_jobs.exceptions import JobTablesMissing
from django_jobs.humanize import ago_words
from django_jobs.ids import id_prefix_range
from django_jobs.jobtypes import build_job_type
from django_jobs.models.tables import MIGRATE_MESSAGE, is_missing_table, raise_if_missing_table
from django_jobs.options import ENQUEUE_OPTIONS
from django_jobs.retry import next_step


def digest(ctx: JobContext, user_id: int, full: bool = False) -> None:
    return None


# -- registration -------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [{"cron": "0 * * * *"}, {"every": 60},
                                      {"next_run": lambda last: last}])
def test_a_recurring_job_whose_function_needs_arguments_is_refused(schedule):
    with pytest.raises(ImproperlyConfigured) as caught:
        build_job_type(digest, {"name": "acme.digest", **schedule})
    assert "@job 'acme.digest'" in str(caught.value)
    assert "parameter 'user_id' has no default" in str(caught.value)


@pytest.mark.parametrize("option", sorted(ENQUEUE_OPTIONS))
def test_a_parameter_named_like_an_enqueue_option_is_refused(option):
    namespace: dict = {}
    exec(f"def send(ctx, {option}=None):\n    return None", namespace)
    with pytest.raises(ImproperlyConfigured) as caught:
        build_job_type(namespace["send"], {"name": "acme.send"})
    assert "@job 'acme.send'" in str(caught.value)
    assert f"parameter {option!r} is named like an enqueue() option" in str(caught.value)


def test_a_recurring_job_with_defaults_only_is_accepted():
    def report(ctx: JobContext, full: bool = False, **extra) -> None:
        return None

    assert build_job_type(report, {"name": "acme.report", "cron": "0 * * * *"}).is_recurring


# -- the payload ----------------------------------------------------------------------------


def test_the_payload_is_checked_against_the_signature_naming_the_argument():
    job_type = build_job_type(digest, {"name": "acme.digest"})
    job_type.check_payload({"user_id": 7})
    with pytest.raises(TypeError, match=r"unknown argument 'usr_id' \(did you mean 'user_id'\?\)"):
        job_type.check_payload({"usr_id": 7})
    with pytest.raises(TypeError, match="job 'acme.digest' needs the argument 'user_id'"):
        job_type.check_payload({"full": True})
    check = job_type.payload_checker()
    check({"user_id": 1, "full": True})
    with pytest.raises(TypeError, match="unknown argument 'fulll'"):
        check({"user_id": 1, "fulll": True})


def test_the_signature_is_read_once_per_job_type():
    job_type = build_job_type(digest, {"name": "acme.digest"})
    assert job_type.signature is job_type.signature


def test_positional_arguments_get_use_keyword_arguments():
    job_type = build_job_type(digest, {"name": "acme.digest"})
    with pytest.raises(TypeError, match="use keyword arguments"):
        job_type.enqueue(7)
    with pytest.raises(TypeError, match="use keyword arguments"):
        job_type.run(7)


@pytest.mark.parametrize(("value", "fix"), [
    (datetime(2026, 1, 2, tzinfo=UTC), ".isoformat()"),
    (date(2026, 1, 2), ".isoformat()"),
    (uuid.uuid4(), "str(value)"),
    (decimal.Decimal("1.5"), "str(value)"),
    (User(pk=3), ".pk"),
    ({1, 2}, "a list"),
    (timedelta(seconds=3), "total_seconds()"),
])
def test_the_non_json_payload_error_suggests_a_fix(value, fix):
    with pytest.raises(TypeError) as caught:
        payload.dumps({"when": value}, what="payload of job 'acme.digest'")
    assert "payload of job 'acme.digest'['when']" in str(caught.value)
    assert fix in str(caught.value)


def test_an_error_of_the_lock_function_names_the_job():
    job_type = build_job_type(digest, {"name": "acme.digest",
                                       "lock": lambda data: data["customer"]})
    with pytest.raises(LockKeyError, match="the lock function of job 'acme.digest' raised "
                                           "KeyError: 'customer'"):
        job_type.lock_key_for({"user_id": 1})


# -- missing tables -----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    OperationalError("no such table: django_jobs_job"),
    ProgrammingError('relation "django_jobs_job" does not exist\nLINE 1: INSERT INTO "django...'),
    ProgrammingError("(1146, \"Table 'test_app.django_jobs_job' doesn't exist\")"),
    OperationalError("no such table: django_jobs_pausedqueue"),
])
def test_a_missing_table_of_the_app_becomes_the_migrate_message(error):
    assert is_missing_table(error)
    with pytest.raises(JobTablesMissing, match="run `manage.py migrate`"):
        raise_if_missing_table(error)
    assert MIGRATE_MESSAGE == "the django-jobs tables are missing: run `manage.py migrate`"


@pytest.mark.parametrize("error", [
    OperationalError("no such table: auth_user"),
    ProgrammingError('column "claim_id" of relation "django_jobs_job" does not exist'),
    OperationalError("database is locked"),
    ValueError("no such table: django_jobs_job"),
])
def test_other_database_errors_stay_what_they_are(error):
    assert not is_missing_table(error)
    raise_if_missing_table(error)  # returns: the caller re-raises the original


# -- words ------------------------------------------------------------------------------------


def test_failure_logs_say_what_happens_next():
    job_type = SimpleNamespace(retry_delay=timedelta(seconds=30), retry_backoff=2.0)
    assert next_step(SimpleNamespace(attempt=1, max_attempts=3), job_type) == (
        "attempt 1 of 3, retrying in 30 s")
    assert next_step(SimpleNamespace(attempt=2, max_attempts=3), job_type) == (
        "attempt 2 of 3, retrying in 1 min")
    assert next_step(SimpleNamespace(attempt=3, max_attempts=3), job_type) == (
        "attempt 3 of 3, final attempt")
    assert next_step(SimpleNamespace(attempt=1, max_attempts=1), job_type) == "final attempt"
    assert next_step(SimpleNamespace(attempt=1, max_attempts=3), job_type, retry=False) == (
        "attempt 1 of 3, final attempt")


def test_ago_words_read_naturally():
    assert ago_words(timedelta(0)) == "just now"
    assert ago_words(timedelta(milliseconds=400)) == "just now"
    assert ago_words(timedelta(seconds=45)) == "45 s ago"
    assert ago_words(timedelta(minutes=3, seconds=5)) == "3 min 5 s ago"


def test_short_id_ranges():
    low, high = id_prefix_range("ABCD-12")
    assert str(low) == "abcd1200-0000-0000-0000-000000000000"
    assert str(high) == "abcd12ff-ffff-ffff-ffff-ffffffffffff"
    assert id_prefix_range("xyz") is None and id_prefix_range("") is None
