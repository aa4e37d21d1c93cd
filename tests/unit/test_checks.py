"""System checks: ``DJANGO_JOBS`` validation (E001-E004, E007-E009), job type checks (E005, E006)
and the advice for SQLite (W001).

The ids are those documented at the top of ``django_jobs/checks.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import checks as django_checks
from django.db import connections
from django.test import override_settings

import django_jobs.checks
from django_jobs import jobtypes
from django_jobs.checks import (
    check_database,
    check_database_features,
    check_job_types,
    check_settings,
)
from django_jobs.jobtypes import Registry, build_job_type


def ids(errors) -> list[str]:
    return [error.id for error in errors]


@pytest.fixture
def fresh_registry(monkeypatch) -> Registry:
    reg = Registry()
    monkeypatch.setattr(jobtypes, "registry", reg)
    monkeypatch.setattr(django_jobs.checks, "registry", reg)
    return reg


def _fn(ctx):
    return None


# -- settings -----------------------------------------------------------------------------------


def test_the_suite_settings_pass_every_check():
    assert check_settings() == []
    assert check_job_types() == []
    assert check_database() == []


def test_checks_are_registered_with_django():
    registered = django_checks.registry.registry.get_checks()
    assert check_settings in registered
    assert check_job_types in registered


@override_settings(DJANGO_JOBS={})
def test_empty_settings_are_valid():
    assert check_settings() == []


@override_settings(DJANGO_JOBS={"DATABASE": "default", "GRACE": 0, "NOTIFY": False,
                                "MAX_PAYLOAD_BYTES": 10, "POLL_INTERVAL": 0.1})
def test_every_well_typed_value_is_valid_and_grace_may_be_zero():
    assert check_settings() == []


@pytest.mark.parametrize("value", [["DATABASE", "jobs"], "jobs", None])
def test_settings_that_are_not_a_dict_are_e001(value):
    with override_settings(DJANGO_JOBS=value):
        errors = check_settings()
    assert ids(errors) == ["django_jobs.E001"]
    assert type(value).__name__ in errors[0].msg


@override_settings(DJANGO_JOBS={"POLL_INTERVALL": 1.0})
def test_unknown_key_is_e002_with_a_did_you_mean():
    errors = check_settings()
    assert ids(errors) == ["django_jobs.E002"]
    assert "'POLL_INTERVALL'" in errors[0].msg
    assert errors[0].hint == "Did you mean 'POLL_INTERVAL'?"


@override_settings(DJANGO_JOBS={"QWERTY": 1})
def test_unknown_key_without_a_close_match_lists_the_known_keys():
    errors = check_settings()
    assert ids(errors) == ["django_jobs.E002"]
    assert "Known keys:" in errors[0].hint
    assert "HEARTBEAT_INTERVAL" in errors[0].hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HEARTBEAT_INTERVAL", "5"),
        ("NOTIFY", 1),
        ("NOTIFY", "yes"),
        ("MAX_PAYLOAD_BYTES", 1.5),
        ("MAX_PAYLOAD_BYTES", True),
        ("MAX_TEXT_LENGTH", "20000"),
        ("DATABASE", 0),
        ("GRACE", None),
        ("CHANGE_CHECK_INTERVAL", "20ms"),
        ("CHANGE_CHECK_INTERVAL", False),
    ],
)
def test_wrong_type_is_e003(key, value):
    with override_settings(DJANGO_JOBS={key: value}):
        errors = check_settings()
    assert ids(errors) == ["django_jobs.E003"]
    assert repr(key) in errors[0].msg


@pytest.mark.parametrize(
    ("key", "value"),
    [("HEARTBEAT_INTERVAL", 0), ("POLL_INTERVAL", -1.0), ("MAX_PAYLOAD_BYTES", 0),
     ("GRACE", -1), ("CHANGE_CHECK_INTERVAL", 0)],
)
def test_out_of_range_value_is_e003(key, value):
    with override_settings(DJANGO_JOBS={key: value}):
        errors = check_settings()
    assert ids(errors) == ["django_jobs.E003"]
    assert "positive" in errors[0].msg


@pytest.mark.parametrize("value", [0.02, 1, 0.001, None])
def test_change_check_interval_of_a_millisecond_or_more_or_none_is_valid(value):
    with override_settings(DJANGO_JOBS={"CHANGE_CHECK_INTERVAL": value}):
        assert check_settings() == []


def test_change_check_interval_under_a_millisecond_is_e003():
    with override_settings(DJANGO_JOBS={"CHANGE_CHECK_INTERVAL": 0.0001}):
        errors = check_settings()
    assert ids(errors) == ["django_jobs.E003"]
    assert errors[0].msg == (
        "DJANGO_JOBS['CHANGE_CHECK_INTERVAL'] should be at least 0.001 (1 ms), not 0.0001."
    )
    assert "None turns watching off" in errors[0].hint


@override_settings(DJANGO_JOBS={"DATABASE": "jobz"})
def test_database_alias_that_is_not_configured_is_e004():
    errors = check_settings()
    assert ids(errors) == ["django_jobs.E004"]
    assert "'jobz'" in errors[0].msg
    assert "default" in errors[0].hint


@override_settings(DJANGO_JOBS={"BOGUS": 1, "NOTIFY": "no", "DATABASE": "missing"})
def test_every_problem_is_reported_at_once():
    assert sorted(ids(check_settings())) == [
        "django_jobs.E002", "django_jobs.E003", "django_jobs.E004",
    ]


@override_settings(DJANGO_JOBS={"LISTEN_DATABASE": None})
def test_no_listen_database_is_valid():
    assert check_settings() == []


@override_settings(DJANGO_JOBS={"LISTEN_DATABASE": 5432})
def test_listen_database_that_is_not_an_alias_string_is_e003():
    errors = check_settings()
    assert ids(errors) == ["django_jobs.E003"]
    assert errors[0].msg == "DJANGO_JOBS['LISTEN_DATABASE'] should be str or None, not int."


@override_settings(DJANGO_JOBS={"LISTEN_DATABASE": "direkt"})
def test_listen_database_alias_that_is_not_configured_is_e009():
    errors = check_settings()
    assert ids(errors) == ["django_jobs.E009"]
    assert errors[0].msg == "DJANGO_JOBS['LISTEN_DATABASE'] is 'direkt', which is not in DATABASES."
    assert "directly" in errors[0].hint and "PgBouncer" in errors[0].hint
    assert "Configured aliases: default, jobs." in errors[0].hint


@pytest.mark.parametrize("vendor", ["sqlite", "mysql", "oracle"])
def test_listen_database_that_is_not_postgresql_is_e009(monkeypatch, vendor):
    monkeypatch.setattr(connections["jobs"], "vendor", vendor)
    with override_settings(DJANGO_JOBS={"LISTEN_DATABASE": "jobs"}):
        errors = check_settings()
    assert ids(errors) == ["django_jobs.E009"]
    assert errors[0].msg == (
        f"DJANGO_JOBS['LISTEN_DATABASE'] is 'jobs', a {vendor} database: LISTEN is PostgreSQL's."
    )


def test_listen_database_on_postgresql_passes_without_connecting(monkeypatch):
    # pytest-django refuses any connection in a test without the django_db mark.
    monkeypatch.setattr(connections["jobs"], "vendor", "postgresql")
    with override_settings(DJANGO_JOBS={"LISTEN_DATABASE": "jobs"}):
        assert check_settings() == []
    assert connections["jobs"].connection is None


# -- the jobs database --------------------------------------------------------------------------

on_sqlite = pytest.mark.skipif(
    connections["default"].vendor != "sqlite", reason="the advice is for SQLite"
)
SQLITE_ADVICE = {
    "timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"
}


def options_of_the_jobs_database(monkeypatch, options: dict) -> None:
    # The suite's jobs database is "default" (DJANGO_JOBS has no DATABASE).
    monkeypatch.setitem(connections["default"].settings_dict, "OPTIONS", options)


@on_sqlite
def test_sqlite_without_any_of_the_advised_options_is_w001_naming_each(monkeypatch):
    options_of_the_jobs_database(monkeypatch, {})
    warnings = check_database()
    assert ids(warnings) == ["django_jobs.W001"]
    assert warnings[0].level == django_checks.WARNING
    assert "'default'" in warnings[0].msg
    for advice in ("timeout", "transaction_mode", "journal_mode=WAL"):
        assert advice in warnings[0].msg
    assert "installation" in warnings[0].hint


@on_sqlite
@pytest.mark.parametrize(
    ("changed", "named", "not_named"),
    [
        ({"timeout": None}, "timeout", "transaction_mode"),
        ({"transaction_mode": "DEFERRED"}, "transaction_mode", "timeout"),
        ({"transaction_mode": None}, "transaction_mode", "journal_mode"),
        ({"init_command": "PRAGMA foreign_keys=ON;"}, "journal_mode=WAL", "transaction_mode"),
        ({"init_command": None}, "journal_mode=WAL", "timeout"),
    ],
)
def test_sqlite_missing_one_advised_option_is_w001_naming_only_that_one(
    monkeypatch, changed, named, not_named
):
    options = {**SQLITE_ADVICE, **changed}
    options_of_the_jobs_database(monkeypatch, {k: v for k, v in options.items() if v is not None})
    warnings = check_database()
    assert ids(warnings) == ["django_jobs.W001"]
    assert named in warnings[0].msg
    assert not_named not in warnings[0].msg


@on_sqlite
@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 5, "transaction_mode": "immediate",
         "init_command": "PRAGMA synchronous=NORMAL; pragma JOURNAL_MODE = 'wal'"},
        SQLITE_ADVICE,
    ],
)
def test_sqlite_with_the_advised_options_in_any_spelling_passes(monkeypatch, options):
    options_of_the_jobs_database(monkeypatch, options)
    assert check_database() == []


def test_the_database_check_runs_without_database_access(monkeypatch):
    # pytest-django refuses any connection in a test without the django_db mark.
    options_of_the_jobs_database(monkeypatch, {})
    connections["default"].close()
    check_database()
    assert connections["default"].connection is None


@pytest.mark.skipif(connections["default"].vendor == "sqlite", reason="the advice is for SQLite")
def test_other_engines_get_no_sqlite_advice(monkeypatch):
    options_of_the_jobs_database(monkeypatch, {})
    assert check_database() == []


@override_settings(DJANGO_JOBS={"DATABASE": "jobz"})
def test_an_unknown_jobs_alias_is_left_to_e004():
    assert check_database() == []


# -- job types ----------------------------------------------------------------------------------


def test_bad_env_flag_value_is_e005(fresh_registry, monkeypatch):
    fresh_registry.register(build_job_type(_fn, {"name": "acme:report-sync"}))
    monkeypatch.setenv("JOBS_ACME_REPORT_SYNC_ENABLED", "perhaps")
    errors = check_job_types()
    assert ids(errors) == ["django_jobs.E005"]
    assert "JOBS_ACME_REPORT_SYNC_ENABLED='perhaps'" in errors[0].msg
    assert "'acme:report-sync'" in errors[0].msg


@pytest.mark.parametrize("raw", ["true", "0", "OFF", "yes"])
def test_readable_env_flag_values_pass(fresh_registry, monkeypatch, raw):
    fresh_registry.register(build_job_type(_fn, {"name": "t.flagged"}))
    monkeypatch.setenv("JOBS_T_FLAGGED_ENABLED", raw)
    assert check_job_types() == []


def test_bad_env_flag_of_a_real_job_of_the_suite_is_e005(monkeypatch):
    monkeypatch.setenv("JOBS_JOBSAPP_ECHO_ENABLED", "2")
    errors = check_job_types()
    assert ids(errors) == ["django_jobs.E005"]
    assert "'jobsapp.echo'" in errors[0].msg


def test_schedule_that_cannot_compute_its_next_run_is_e006(fresh_registry):
    def broken(last):
        raise RuntimeError("no calendar")

    fresh_registry.register(build_job_type(_fn, {"name": "t.broken", "next_run": broken}))
    fresh_registry.register(build_job_type(_fn, {"name": "t.fine", "every": timedelta(hours=1)}))
    errors = check_job_types()
    assert ids(errors) == ["django_jobs.E006"]
    assert "'t.broken'" in errors[0].msg
    assert "no calendar" in errors[0].msg


def test_next_run_returning_a_non_datetime_is_e006(fresh_registry):
    fresh_registry.register(build_job_type(_fn, {"name": "t.none", "next_run": lambda last: None}))
    assert ids(check_job_types()) == ["django_jobs.E006"]


@pytest.mark.django_db
def test_a_jobs_database_without_skip_locked_gets_warning_w002(monkeypatch):
    connection = connections["default"]
    if connection.vendor != "mysql":
        # Only MariaDB/MySQL servers can lack it; prove the check stays quiet elsewhere.
        assert check_database_features(databases=["default"]) == []
        return
    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    [warning] = check_database_features(databases=["default"])
    assert warning.id == "django_jobs.W002" and "10.6" in warning.msg and "8.0.1" in warning.msg
    assert check_database_features(databases=None) == []


@pytest.mark.parametrize(
    "values",
    [{"WORKER_LOST_AFTER": 10.0}, {"HEARTBEAT_INTERVAL": 20.0},
     {"WORKER_LOST_AFTER": 2.9, "HEARTBEAT_INTERVAL": 1.0}],
)
def test_worker_lost_after_shorter_than_three_heartbeats_is_e007(values):
    with override_settings(DJANGO_JOBS=values):
        errors = check_settings()
    assert ids(errors) == ["django_jobs.E007"]
    assert "three heartbeat intervals" in errors[0].msg


def test_worker_lost_after_of_exactly_three_heartbeats_passes():
    with override_settings(DJANGO_JOBS={"WORKER_LOST_AFTER": 3.0, "HEARTBEAT_INTERVAL": 1.0}):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"mail": {"rate_limit": "10/x"}}, "DJANGO_JOBS['QUEUES']['mail']['rate_limit'] '10/x' "
         "is not a rate"),
        ({"mail": {"concurrency": 0}}, "DJANGO_JOBS['QUEUES']['mail']['concurrency'] must be "
         "an integer of at least 1, not 0"),
        ({"mail": {"concurency": 3}}, "DJANGO_JOBS['QUEUES']['mail'] has an unknown key "
         "'concurency'"),
        ({"mail": 5}, "DJANGO_JOBS['QUEUES']['mail'] should be a dict"),
    ],
)
def test_a_queue_limit_that_is_not_valid_is_e008(queues, message):
    with override_settings(DJANGO_JOBS={"QUEUES": queues}):
        errors = check_settings()
    assert [e.id for e in errors] == ["django_jobs.E008"]
    assert errors[0].msg.startswith(message), errors[0].msg


def test_valid_queue_limits_pass_the_checks():
    with override_settings(DJANGO_JOBS={"QUEUES": {"mail": {"concurrency": 2,
                                                            "rate_limit": "10/s"}}}):
        assert check_settings() == []
