"""``@job``: every option of the spec table, every misuse, names, env flags and lock keys.

No database. Test-only job types go on a fresh ``Registry`` (``jobtypes.registry`` is swapped
for the duration of a test), so the registry the rest of the suite uses stays untouched.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_jobs import JobContext, UnknownJob, jobtypes
from django_jobs import registry as global_registry
from django_jobs.jobtypes import JobType, Registry, build_job_type, env_flag_name, job

MODULE = __name__  # "tests.unit.test_registry"


@pytest.fixture
def fresh_registry(monkeypatch) -> Registry:
    """``@job`` registers into this empty registry instead of the global one."""
    reg = Registry()
    monkeypatch.setattr(jobtypes, "registry", reg)
    return reg


def _fn(name: str = "sample", module: str = MODULE):
    """A distinct job function (own ``__name__``/``__qualname__``/``__module__``)."""

    def fn(ctx, **data):
        return data

    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = module
    return fn


def _misuse(options: dict, *, func=None, name: str = "tests.sample") -> str:
    """Build a job type that must be refused; return the error message."""
    func = func or _fn()
    with pytest.raises(ImproperlyConfigured) as info:
        build_job_type(func, options)
    message = str(info.value)
    # Every refusal names the job and the module that declares it.
    assert repr(options.get("name", name)) in message, message
    assert func.__module__ in message, message
    return message


# -- accepted declarations ----------------------------------------------------------------------


def test_bare_decorator_registers_a_job_type_with_the_spec_defaults(fresh_registry):
    @job
    def send_digest(ctx: JobContext, user_id: int) -> dict:
        return {"user": user_id}

    assert isinstance(send_digest, JobType)
    assert fresh_registry.get(send_digest.name) is send_digest
    assert send_digest.cron is None and send_digest.every is None and send_digest.next_run is None
    assert send_digest.timezone is None
    assert send_digest.catch_up == "latest"
    assert send_digest.queue == "default"
    assert send_digest.priority == 0
    assert send_digest.max_attempts == 1
    assert send_digest.retry_delay == timedelta(seconds=30)
    assert send_digest.retry_backoff == 2.0
    assert send_digest.timeout == timedelta(minutes=5)
    assert send_digest.keep == timedelta(days=7)
    assert send_digest.unique is None
    assert send_digest.precheck is None and send_digest.on_error is None
    assert send_digest.on_stale is None
    assert send_digest.enabled is True
    assert send_digest.is_recurring is False
    assert send_digest.schedule is None
    # Calling the JobType calls the function directly.
    assert send_digest(None, user_id=3) == {"user": 3}


def test_decorator_with_every_option_of_the_spec_table_keeps_each_value(fresh_registry):
    def check(ctx):
        return None

    def on_error(job, exc):
        return None

    def on_stale(job, exc):
        return None

    @job(
        name="billing:invoice-sync",
        cron="0 * * * *",
        timezone="Europe/Paris",
        catch_up="all",
        queue="billing",
        priority=10,
        lock=lambda data: str(data["customer"]),
        max_attempts=3,
        retry_delay=timedelta(seconds=5),
        retry_backoff=3,
        timeout=timedelta(minutes=1),
        keep=None,
        unique="replace",
        precheck=check,
        on_error=on_error,
        on_stale=on_stale,
        enabled=False,
    )
    def sync(ctx: JobContext, customer: int = 1) -> None:
        return None

    assert fresh_registry.get("billing:invoice-sync") is sync
    assert sync.name == "billing:invoice-sync"
    assert sync.cron == "0 * * * *"
    assert sync.timezone == "Europe/Paris"
    assert sync.catch_up == "all"
    assert sync.queue == "billing"
    assert sync.priority == 10
    assert sync.max_attempts == 3
    assert sync.retry_delay == timedelta(seconds=5)
    assert sync.retry_backoff == 3.0
    assert sync.timeout == timedelta(minutes=1)
    assert sync.keep is None
    assert sync.unique == "replace"
    assert sync.precheck is check
    assert sync.on_error is on_error
    assert sync.on_stale is on_stale
    assert sync.enabled is False
    assert sync.module == MODULE
    assert sync.is_recurring


def test_every_and_next_run_are_accepted_as_schedules(fresh_registry):
    def next_run(last):
        return datetime(2030, 1, 1, tzinfo=UTC)

    @job(name="t.every", every=timedelta(minutes=15), catch_up="skip")
    def every_job(ctx):
        return None

    @job(name="t.every-seconds", every=90)
    def every_seconds(ctx):
        return None

    @job(name="t.next-run", next_run=next_run)
    def next_run_job(ctx):
        return None

    assert every_job.every == timedelta(minutes=15)
    assert every_job.catch_up == "skip"
    assert every_seconds.every == timedelta(seconds=90)  # a number is seconds
    assert next_run_job.next_run is next_run
    assert every_job.is_recurring and every_seconds.is_recurring and next_run_job.is_recurring
    assert next_run_job.schedule.next_after(datetime(2029, 1, 1, tzinfo=UTC)) == datetime(
        2030, 1, 1, tzinfo=UTC
    )


def test_retry_delay_keep_and_timeout_accept_numbers_of_seconds():
    jt = build_job_type(_fn(), {"retry_delay": 0, "keep": 0, "timeout": 2.5})
    assert jt.retry_delay == timedelta(0)
    assert jt.keep == timedelta(0)
    assert jt.timeout == timedelta(seconds=2.5)


def test_timezone_accepts_a_tzinfo_instance():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    jt = build_job_type(_fn(), {"cron": "0 9 * * *", "timezone": paris})
    assert jt.timezone is paris


def test_registering_the_same_function_twice_is_not_an_error():
    """A module imported twice (autodiscovery, reload) registers the same definition again."""
    reg = Registry()
    first = reg.register(build_job_type(_fn("same"), {"name": "t.same"}))
    second = reg.register(build_job_type(_fn("same"), {"name": "t.same"}))
    assert reg.get("t.same") is second
    assert first is not second
    assert len(reg) == 1


# -- default name -------------------------------------------------------------------------------


def test_default_name_is_app_label_dot_function_name_of_the_declaring_app():
    # tests/jobsapp/jobs.py declares ``echo`` without name=; the app label is "jobsapp".
    assert global_registry.get("jobsapp.echo").func.__name__ == "echo"
    jt = build_job_type(_fn("send_digest", module="tests.jobsapp.jobs"), {})
    assert jt.name == "jobsapp.send_digest"
    assert jt.module == "tests.jobsapp.jobs"


def test_default_name_outside_any_app_uses_the_top_level_package():
    jt = build_job_type(_fn("cleanup", module="standalone.tasks"), {})
    assert jt.name == "standalone.cleanup"


def test_explicit_name_wins_over_the_default():
    jt = build_job_type(_fn("send_digest", module="tests.jobsapp.jobs"), {"name": "mail:digest"})
    assert jt.name == "mail:digest"


# -- misuse -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * * mon-funday", "every hour", "0 25 * * *"])
def test_invalid_cron_is_refused_naming_job_and_module(cron):
    message = _misuse({"name": "t.bad-cron", "cron": cron})
    assert "cron" in message


@pytest.mark.parametrize("cron", ["* * * *", "0 0 * * * *", "0 0 1 * * 2030"])
def test_cron_with_the_wrong_number_of_fields_is_refused(cron):
    message = _misuse({"name": "t.fields", "cron": cron})
    assert f"has {len(cron.split())} fields; expected 5" in message


def test_cron_that_is_not_a_string_is_refused():
    _misuse({"name": "t.cron-int", "cron": 5})


@pytest.mark.parametrize(
    "options",
    [
        {"cron": "0 * * * *", "every": timedelta(hours=1)},
        {"cron": "0 * * * *", "next_run": lambda last: last},
        {"every": 60, "next_run": lambda last: last},
    ],
)
def test_two_schedules_together_are_refused(options):
    message = _misuse({"name": "t.two", **options})
    assert "only one of cron, every and next_run" in message


def test_unknown_option_is_refused_with_a_did_you_mean():
    message = _misuse({"name": "t.typo", "max_attempt": 3})
    assert "unknown option 'max_attempt'" in message
    assert "did you mean 'max_attempts'?" in message


def test_unknown_option_without_a_close_match_lists_no_suggestion():
    message = _misuse({"name": "t.typo", "frobnicate": True})
    assert "'frobnicate'" in message
    assert "did you mean" not in message


def test_duplicate_name_from_another_function_is_refused_naming_both_definitions():
    reg = Registry()
    reg.register(build_job_type(_fn("first", module="app_one.jobs"), {"name": "shared"}))
    with pytest.raises(ImproperlyConfigured) as info:
        reg.register(build_job_type(_fn("second", module="app_two.jobs"), {"name": "shared"}))
    message = str(info.value)
    assert "'shared'" in message
    assert "app_two.jobs" in message  # the module registering second
    assert "app_one.jobs.first" in message  # the definition it collides with
    assert reg.get("shared").func.__name__ == "first"


def test_duplicate_name_through_the_decorator_is_refused(fresh_registry):
    @job(name="t.dup")
    def one(ctx):
        return None

    with pytest.raises(ImproperlyConfigured, match="registered twice"):

        @job(name="t.dup")
        def two(ctx):
            return None

    assert fresh_registry.get("t.dup") is one


@pytest.mark.parametrize("value", ["never", "", None, True])
def test_bad_catch_up_is_refused(value):
    message = _misuse({"name": "t.catch", "every": 60, "catch_up": value})
    assert "catch_up" in message


@pytest.mark.parametrize("value", ["always", "", True, 1])
def test_bad_unique_is_refused(value):
    message = _misuse({"name": "t.unique", "unique": value})
    assert "unique" in message


@pytest.mark.parametrize("value", ["high", 1.5, True, 40000, -40000, None])
def test_bad_priority_is_refused(value):
    message = _misuse({"name": "t.priority", "priority": value})
    assert "priority" in message


@pytest.mark.parametrize("value", [0, -1, 1.0, "3", True, None])
def test_bad_max_attempts_is_refused(value):
    message = _misuse({"name": "t.attempts", "max_attempts": value})
    assert "max_attempts" in message


@pytest.mark.parametrize("value", [0.5, 0, -2, "2", True, None])
def test_bad_retry_backoff_is_refused(value):
    message = _misuse({"name": "t.backoff", "retry_backoff": value})
    assert "retry_backoff" in message


@pytest.mark.parametrize("value", [-1, timedelta(seconds=-1), "30", True])
def test_bad_retry_delay_is_refused(value):
    message = _misuse({"name": "t.delay", "retry_delay": value})
    assert "retry_delay" in message


@pytest.mark.parametrize("value", [0, timedelta(0), -5, "5m", True, None])
def test_bad_timeout_is_refused(value):
    message = _misuse({"name": "t.timeout", "timeout": value})
    assert "timeout" in message


@pytest.mark.parametrize("value", [0, -1, timedelta(seconds=-1), "1h"])
def test_bad_every_is_refused(value):
    message = _misuse({"name": "t.every", "every": value})
    assert "every" in message


@pytest.mark.parametrize("value", [True, 0, -1, 1.5, "2", None])
def test_bad_overlap_is_refused(value):
    message = _misuse({"name": "t.overlap", "every": 60, "overlap": value})
    assert "overlap must be False or an integer of at least 1" in message
    assert repr(value) in message


def test_overlap_of_a_job_that_is_not_recurring_is_refused():
    message = _misuse({"name": "t.overlap-once", "overlap": 2})
    assert "overlap" in message and "recurring" in message


@pytest.mark.parametrize(("value", "most"), [(False, 1), (1, 1), (4, 4)])
def test_overlap_gives_the_most_occurrences_pending_at_once(value, most):
    job_type = build_job_type(_fn(), {"name": "t.overlap-ok", "every": 60, "overlap": value})
    assert job_type.max_pending_occurrences == most


def test_bad_keep_is_refused():
    message = _misuse({"name": "t.keep", "keep": "forever"})
    assert "keep" in message


@pytest.mark.parametrize("value", ["yes", 1, "customer"])
def test_bad_lock_is_refused(value):
    message = _misuse({"name": "t.lock", "lock": value})
    assert "lock" in message


@pytest.mark.parametrize("hook", ["precheck", "on_error", "on_stale", "next_run"])
def test_hook_that_is_not_callable_is_refused(hook):
    message = _misuse({"name": f"t.{hook}", hook: "not callable"})
    assert hook in message


@pytest.mark.parametrize("value", ["false", 0, None])
def test_enabled_that_is_not_a_bool_is_refused(value):
    message = _misuse({"name": "t.enabled", "enabled": value})
    assert "enabled" in message


@pytest.mark.parametrize("value", ["", 1, "x" * 101])
def test_bad_queue_is_refused(value):
    message = _misuse({"name": "t.queue", "queue": value})
    assert "queue" in message


@pytest.mark.parametrize("value", ["Mars/Olympus_Mons", 5])
def test_bad_timezone_is_refused(value):
    message = _misuse({"name": "t.zone", "cron": "0 * * * *", "timezone": value})
    assert "zone" in message


def test_name_longer_than_the_column_is_refused():
    name = "x" * 201
    message = _misuse({"name": name})
    assert "longer than 200" in message


def test_function_without_a_ctx_parameter_is_refused():
    def no_ctx():
        return None

    def keyword_only(*, user_id):
        return None

    for func in (no_ctx, keyword_only):
        with pytest.raises(ImproperlyConfigured) as info:
            build_job_type(func, {"name": "t.no-ctx"})
        message = str(info.value)
        assert "'t.no-ctx'" in message and MODULE in message
        assert "JobContext as its first positional argument" in message


def test_misuse_through_the_decorator_registers_nothing(fresh_registry):
    with pytest.raises(ImproperlyConfigured, match="'t.broken'"):

        @job(name="t.broken", cron="not a cron")
        def broken(ctx):
            return None

    assert "t.broken" not in fresh_registry
    assert len(fresh_registry) == 0


def test_unknown_name_lookup_suggests_close_names():
    reg = Registry()
    reg.register(build_job_type(_fn("send_digest"), {"name": "mail.send_digest"}))
    with pytest.raises(UnknownJob, match="did you mean 'mail.send_digest'"):
        reg.get("mail.send_digest2")
    with pytest.raises(LookupError):
        reg.get("nothing.like.it")


def test_unregister_removes_the_type():
    reg = Registry()
    reg.register(build_job_type(_fn(), {"name": "t.gone"}))
    reg.unregister("t.gone")
    assert "t.gone" not in reg
    reg.unregister("t.gone")  # unregistering twice is harmless


# -- enabled and the environment ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("billing:invoice-sync", "JOBS_BILLING_INVOICE_SYNC_ENABLED"),
        ("jobsapp.echo", "JOBS_JOBSAPP_ECHO_ENABLED"),
        ("Mail.Send Digest2", "JOBS_MAIL_SEND_DIGEST2_ENABLED"),
    ],
)
def test_env_flag_name_upper_cases_and_replaces_non_alphanumerics(name, flag):
    assert env_flag_name(name) == flag
    assert build_job_type(_fn(), {"name": name}).env_flag == flag


@pytest.mark.parametrize("raw", ["false", "FALSE", "0", "no", "off", " Off "])
def test_env_flag_false_disables_a_job_declared_enabled(monkeypatch, raw):
    monkeypatch.delenv("JOBS_ACME_REPORT_SYNC_ENABLED", raising=False)
    jt = build_job_type(_fn(), {"name": "acme:report-sync"})
    assert jt.is_enabled
    monkeypatch.setenv("JOBS_ACME_REPORT_SYNC_ENABLED", raw)
    assert jt.is_enabled is False


@pytest.mark.parametrize("raw", ["true", "1", "yes", "ON"])
def test_env_flag_true_enables_a_job_declared_disabled(monkeypatch, raw):
    monkeypatch.delenv("JOBS_ACME_REPORT_SYNC_ENABLED", raising=False)
    jt = build_job_type(_fn(), {"name": "acme:report-sync", "enabled": False})
    assert jt.is_enabled is False
    monkeypatch.setenv("JOBS_ACME_REPORT_SYNC_ENABLED", raw)
    assert jt.is_enabled is True


def test_unreadable_env_flag_leaves_the_declared_value(monkeypatch):
    on = build_job_type(_fn(), {"name": "t.on"})
    off = build_job_type(_fn(), {"name": "t.off", "enabled": False})
    monkeypatch.setenv("JOBS_T_ON_ENABLED", "maybe")
    monkeypatch.setenv("JOBS_T_OFF_ENABLED", "maybe")
    assert on.is_enabled is True
    assert off.is_enabled is False


def test_env_flag_of_another_job_changes_nothing(monkeypatch):
    jt = build_job_type(_fn(), {"name": "t.mine"})
    monkeypatch.setenv("JOBS_T_OTHER_ENABLED", "false")
    assert jt.is_enabled is True


def test_disabled_names_lists_jobs_switched_off_by_code_or_environment(monkeypatch):
    reg = Registry()
    reg.register(build_job_type(_fn("a"), {"name": "t.a", "enabled": False}))
    reg.register(build_job_type(_fn("b"), {"name": "t.b"}))
    reg.register(build_job_type(_fn("c"), {"name": "t.c"}))
    monkeypatch.setenv("JOBS_T_C_ENABLED", "off")
    assert reg.disabled_names() == ["t.a", "t.c"]


# -- locks --------------------------------------------------------------------------------------


def test_lock_true_uses_the_job_name_as_key():
    jt = build_job_type(_fn(), {"name": "t.locked", "lock": True})
    assert jt.uses_lock
    assert jt.lock_key_for({"x": 1}) == "t.locked"


def test_lock_callable_gives_one_key_per_payload():
    jt = build_job_type(_fn(), {"name": "t.per", "lock": lambda data: f"c{data['customer']}"})
    assert jt.lock_key_for({"customer": 7}) == "t.per:c7"
    assert jt.lock_key_for({"customer": 8}) == "t.per:c8"


@pytest.mark.parametrize("bad", [None, "", 7])
def test_lock_callable_must_return_a_non_empty_string(bad):
    jt = build_job_type(_fn(), {"name": "t.per", "lock": lambda data: bad})
    with pytest.raises(TypeError, match="'t.per'"):
        jt.lock_key_for({})


def test_lock_false_means_no_lock_even_for_recurring_jobs():
    jt = build_job_type(_fn(), {"name": "t.free", "cron": "* * * * *", "lock": False})
    assert not jt.uses_lock
    assert jt.lock_key_for({}) is None


@pytest.mark.parametrize(
    "schedule",
    [{"cron": "*/5 * * * *"}, {"every": timedelta(minutes=5)}, {"next_run": lambda last: last}],
)
def test_recurring_jobs_are_locked_by_default(schedule):
    jt = build_job_type(_fn(), {"name": "t.recurring", **schedule})
    assert jt.lock is None
    assert jt.uses_lock
    assert jt.lock_key_for({}) == "t.recurring"


def test_plain_jobs_are_not_locked_by_default():
    jt = build_job_type(_fn(), {"name": "t.plain"})
    assert not jt.uses_lock
    assert jt.lock_key_for({"x": 1}) is None
    explicit_none = build_job_type(_fn(), {"name": "t.plain", "lock": None})
    assert explicit_none.lock_key_for({}) is None


def test_the_suite_registry_is_left_clean():
    """Nothing above leaked into the registry the rest of the suite uses."""
    assert not any(name.startswith("t.") for name in global_registry.names())
    assert "shared" not in global_registry
    assert "jobsapp.echo" in global_registry


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "100/w"}, "rate_limit '100/w' is not a rate: write N/s, N/m, N/h or N/d"),
        ({"rate_limit": 100}, "rate_limit must be a string like '100/m'"),
        ({"rate_limit": "0/s"}, "allows no run at all"),
        ({"concurrency": 0}, "concurrency must be an integer of at least 1, not 0"),
        ({"concurrency": 2, "concurrency_key": "customer"}, "concurrency_key must be a callable"),
        ({"concurrency_key": lambda d: "x"}, "concurrency_key needs concurrency or rate_limit"),
        ({"concurrency": 2, "lock": True}, "give lock or concurrency, not both"),
        ({"max_snoozes": -1}, "max_snoozes must be an integer of at least 0"),
    ],
)
def test_bad_limits_are_refused_at_registration_naming_the_job(options, message):
    def limited(ctx):
        return None

    with pytest.raises(ImproperlyConfigured) as info:
        jobtypes.build_job_type(limited, {"name": "app.limited", **options})
    assert "@job 'app.limited'" in str(info.value)
    assert message in str(info.value)


def test_a_limit_key_is_the_name_or_the_name_and_the_concurrency_key():
    def limited(ctx, customer):
        return None

    plain = jobtypes.build_job_type(limited, {"name": "app.a", "rate_limit": "5/m"})
    keyed = jobtypes.build_job_type(limited, {"name": "app.b", "concurrency": 2,
                                              "concurrency_key": lambda d: str(d["customer"])})
    assert plain.limit_key_for({"customer": 3}) == "app.a"
    assert keyed.limit_key_for({"customer": 3}) == "app.b:3"
    assert plain.rate.count == 5 and plain.rate.seconds == 60
    none = jobtypes.build_job_type(limited, {"name": "app.c"})
    assert none.limit_key_for({}) is None
