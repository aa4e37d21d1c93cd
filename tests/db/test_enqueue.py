"""``fn.enqueue()``, ``enqueue_many()`` and ``django_jobs.enqueue()``: what reaches the table."""

from __future__ import annotations

import json
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import django_jobs
from django_jobs import UnknownJob, clock, registry
from django_jobs.conf import jobs_settings
from django_jobs.models import Job

pytestmark = pytest.mark.django_db

echo = registry.get("jobsapp.echo")
unique_skip = registry.get("jobsapp.unique_skip")
unique_replace = registry.get("jobsapp.unique_replace")
per_customer = registry.get("jobsapp.per_customer")
invoice_sync = registry.get("billing:invoice-sync")


def inserts(captured) -> list[str]:
    """The statements that wrote job rows (an ``executemany`` or a ``COPY`` is logged once)."""
    sql = (q["sql"].lstrip().upper() for q in captured.captured_queries)
    return [s for s in sql if "INSERT INTO" in s or "COPY" in s and "FROM STDIN" in s]


# -- one job ------------------------------------------------------------------------------------


def test_enqueue_stores_a_scheduled_row_with_every_option():
    user = get_user_model().objects.create(username="alice")
    run_at = datetime(2031, 5, 4, 12, 30, tzinfo=UTC)
    returned = echo.enqueue(
        user_id=7, tags=["a", "b"], queue="mail", priority=10, run_at=run_at,
        created_by=user, meta={"source": "signup"}, unique_key="digest:7",
    )
    row = Job.objects.get(pk=returned.pk)
    assert row.name == "jobsapp.echo"
    assert row.status == "scheduled"
    assert row.data == {"user_id": 7, "tags": ["a", "b"]}  # options are not payload
    assert row.queue == "mail"
    assert row.priority == 10
    assert row.run_at == run_at
    assert row.created_by_id == user.pk
    assert row.created_by == user
    assert row.meta == {"source": "signup"}
    assert row.unique_key == "digest:7"
    assert row.attempt == 1
    assert row.max_attempts == 1
    assert row.started_at is None and row.finished_at is None and row.worker == ""
    assert returned.status == "scheduled"


def test_enqueue_defaults_come_from_the_job_type():
    before = clock.now()
    returned = registry.get("jobsapp.flaky").enqueue()
    after = clock.now()
    row = Job.objects.get(pk=returned.pk)
    assert row.data == {}
    assert row.queue == "default"
    assert row.priority == 0
    assert row.max_attempts == 3  # from @job(max_attempts=3)
    assert before <= row.run_at <= after
    assert before <= row.created_at <= after
    assert row.created_by_id is None
    assert row.meta == {}
    assert row.unique_key is None
    assert row.lock_key is None


def test_created_by_accepts_a_user_id():
    user = get_user_model().objects.create(username="bob")
    row = echo.enqueue(created_by=user.pk)
    assert Job.objects.get(pk=row.pk).created_by_id == user.pk


def test_enqueue_stores_the_lock_key_of_the_payload():
    row = per_customer.enqueue(customer=42)
    assert Job.objects.get(pk=row.pk).lock_key == "jobsapp.per_customer:42"
    row = invoice_sync.enqueue()
    assert Job.objects.get(pk=row.pk).lock_key == "billing:invoice-sync"


def test_delay_schedules_relative_to_now():
    before = clock.now()
    by_delta = echo.enqueue(delay=timedelta(minutes=5))
    by_seconds = echo.enqueue(delay=90)
    after = clock.now()
    row = Job.objects.get(pk=by_delta.pk)
    assert before + timedelta(minutes=5) <= row.run_at <= after + timedelta(minutes=5)
    row = Job.objects.get(pk=by_seconds.pk)
    assert before + timedelta(seconds=90) <= row.run_at <= after + timedelta(seconds=90)


def test_a_delayed_job_is_not_due_until_its_time():
    row = echo.enqueue(delay=timedelta(minutes=5))
    assert not Job.objects.due().filter(pk=row.pk).exists()
    assert Job.objects.due(timezone.now() + timedelta(minutes=6)).filter(pk=row.pk).exists()


def test_run_at_and_delay_together_are_a_type_error_and_write_nothing():
    with pytest.raises(TypeError, match="run_at= or delay="):
        echo.enqueue(run_at=timezone.now(), delay=5)
    assert Job.objects.count() == 0


def test_naive_run_at_is_a_value_error_and_writes_nothing():
    with pytest.raises(ValueError, match="aware"):
        echo.enqueue(run_at=datetime(2031, 1, 1, 12, 0))
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"run_at": "2031-01-01"}, TypeError),
        ({"delay": "soon"}, TypeError),
        ({"priority": 10**6}, ValueError),
        ({"priority": "high"}, ValueError),
        ({"queue": ""}, ValueError),
        ({"meta": ["not", "a", "dict"]}, TypeError),
        ({"meta": {"at": datetime(2031, 1, 1, tzinfo=UTC)}}, TypeError),
        ({"unique_key": "k" * 256}, ValueError),
    ],
)
def test_bad_options_are_refused_and_write_nothing(options, error):
    with pytest.raises(error):
        echo.enqueue(**options)
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "delay",
    [10**12, float("inf"), float("-inf"), float("nan"), -1, -0.5, timedelta(seconds=-1),
     timedelta(days=3651), timedelta.max, 3650 * 86400 + 1],
)
def test_a_delay_out_of_range_is_a_value_error_naming_delay_and_the_range(delay):
    with pytest.raises(ValueError, match=r"delay must be from 0 to 3650 days \(10 years\)"):
        echo.enqueue(delay=delay)
    with pytest.raises(ValueError, match="delay must be"):
        echo.enqueue_many([{"n": 1}], delay=delay)
    assert Job.objects.count() == 0


@pytest.mark.parametrize("delay", [0, 0.0, timedelta(0), 3650 * 86400, timedelta(days=3650)])
def test_a_delay_within_range_is_accepted(delay):
    before = clock.now()
    row = echo.enqueue(delay=delay)
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    assert row.run_at >= before + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "run_at", [datetime(9000, 1, 1, 0, 0, 1, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]
)
def test_a_run_at_past_the_year_9000_is_a_value_error_naming_run_at(run_at):
    with pytest.raises(ValueError, match="run_at must be no later than 9000-01-01"):
        echo.enqueue(run_at=run_at)
    assert Job.objects.count() == 0


def test_a_run_at_far_ahead_but_within_range_is_stored():
    row = echo.enqueue(run_at=datetime(8999, 12, 31, tzinfo=UTC))
    assert Job.objects.get(pk=row.pk).run_at == datetime(8999, 12, 31, tzinfo=UTC)


# -- by name ------------------------------------------------------------------------------------


def test_enqueue_by_name_stores_the_payload():
    returned = django_jobs.enqueue("jobsapp.echo", user_id=7, priority=3)
    row = Job.objects.get(pk=returned.pk)
    assert (row.name, row.data, row.priority, row.status) == (
        "jobsapp.echo", {"user_id": 7}, 3, "scheduled",
    )


def test_enqueue_by_name_of_a_name_with_a_colon():
    returned = django_jobs.enqueue("billing:invoice-sync")
    assert Job.objects.get(pk=returned.pk).name == "billing:invoice-sync"


def test_enqueue_by_name_accepts_a_payload_key_called_name():
    returned = django_jobs.enqueue("jobsapp.echo", name="Bob")
    again = registry.enqueue("jobsapp.echo", name="Alice")
    assert Job.objects.get(pk=returned.pk).data == {"name": "Bob"}
    assert Job.objects.get(pk=again.pk).data == {"name": "Alice"}
    assert registry.run("jobsapp.echo", name="Eve") == {"data": {"name": "Eve"}, "attempt": 1}


def test_run_at_in_another_zone_is_stored_as_the_same_instant():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    run_at = datetime(2031, 7, 1, 9, 0, tzinfo=paris)
    row = echo.enqueue(run_at=run_at)
    stored = Job.objects.get(pk=row.pk).run_at
    assert stored == run_at
    assert stored == datetime(2031, 7, 1, 7, 0, tzinfo=UTC)


def test_enqueue_by_unknown_name_raises_unknown_job_with_a_suggestion():
    with pytest.raises(UnknownJob, match=r"'jobsapp\.ecoh'.*did you mean 'jobsapp\.echo'"):
        django_jobs.enqueue("jobsapp.ecoh", x=1)
    assert Job.objects.count() == 0


# -- JSON validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "culprit"),
    [
        ({"when": datetime(2031, 1, 1, tzinfo=UTC)}, "['when']"),
        ({"ids": {1, 2}}, "['ids']"),
        ({"blob": b"\x00"}, "['blob']"),
        ({"ratio": float("nan")}, "['ratio']"),
        ({"user": {"prefs": [1, object()]}}, "['user']['prefs'][1]"),
        ({"map": {1: "one"}}, "['map']"),
    ],
)
def test_non_json_payload_is_a_type_error_naming_the_key_and_writes_nothing(data, culprit):
    with pytest.raises(TypeError) as info:
        echo.enqueue(**data)
    assert culprit in str(info.value)
    assert "'jobsapp.echo'" in str(info.value)
    assert Job.objects.count() == 0


def test_payload_round_trips_exactly():
    data = {"s": "é✓", "i": -5, "f": 0.1, "b": False, "n": None, "l": [1, [2, {"k": "v"}]]}
    row = echo.enqueue(**data)
    assert Job.objects.get(pk=row.pk).data == data


def test_payload_over_max_payload_bytes_is_a_value_error_and_writes_nothing():
    with override_settings(DJANGO_JOBS={"MAX_PAYLOAD_BYTES": 100}):
        echo.enqueue(text="x" * 50)  # under the limit: accepted
        with pytest.raises(ValueError, match="over the limit of 100 bytes"):
            echo.enqueue(text="x" * 200)
    assert list(Job.objects.values_list("data", flat=True)) == [{"text": "x" * 50}]


def test_default_payload_limit_is_one_megabyte():
    assert jobs_settings.MAX_PAYLOAD_BYTES == 1_000_000
    with pytest.raises(ValueError, match="over the limit"):
        echo.enqueue(text="x" * 1_000_000)
    assert Job.objects.count() == 0


# -- many ---------------------------------------------------------------------------------------


def test_enqueue_many_is_one_write():
    connection = connections[jobs_settings.DATABASE]
    payloads = [{"user_id": n} for n in range(30)]
    with CaptureQueriesContext(connection) as captured:
        rows = echo.enqueue_many(payloads, queue="mail", priority=5)
    assert len(inserts(captured)) == 1
    assert len(rows) == 30
    stored = list(Job.objects.filter(name="jobsapp.echo"))
    assert sorted((row.data for row in stored), key=lambda d: d["user_id"]) == payloads
    assert {(row.status, row.queue, row.priority) for row in stored} == {("scheduled", "mail", 5)}
    assert {row.pk for row in stored} == {row.pk for row in rows}


def test_enqueue_many_of_a_thousand_rows_is_one_write():
    connection = connections[jobs_settings.DATABASE]
    with CaptureQueriesContext(connection) as captured:
        rows = echo.enqueue_many([{"n": n} for n in range(1000)])
    assert len(inserts(captured)) == 1
    assert len(rows) == 1000
    assert Job.objects.scheduled().count() == 1000


def test_enqueue_many_of_nothing_writes_nothing():
    with CaptureQueriesContext(connections[jobs_settings.DATABASE]) as captured:
        assert echo.enqueue_many([]) == []
    assert captured.captured_queries == []


def test_enqueue_many_is_all_or_nothing():
    with pytest.raises(TypeError, match=r"payload\[2\].*\['when'\]"):
        echo.enqueue_many([{"n": 1}, {"n": 2}, {"when": datetime(2031, 1, 1, tzinfo=UTC)}])
    with pytest.raises(TypeError, match="item 1"):
        echo.enqueue_many([{"n": 1}, ["not", "a", "dict"]])
    with pytest.raises(TypeError, match="unknown options"):
        echo.enqueue_many([{"n": 1}], prority=3)
    assert Job.objects.count() == 0


def test_enqueue_many_with_a_delay_schedules_every_row_later():
    before = clock.now()
    echo.enqueue_many([{"n": 1}, {"n": 2}], delay=timedelta(hours=1))
    assert Job.objects.count() == 2
    assert not Job.objects.due().exists()
    assert all(row.run_at >= before + timedelta(hours=1) for row in Job.objects.all())


def test_enqueue_many_of_a_unique_job_keeps_one_pending_row():
    rows = unique_skip.enqueue_many([{"n": 1}, {"n": 2}, {"n": 3}])
    assert len({row.pk for row in rows}) == 1
    assert list(Job.objects.values_list("data", flat=True)) == [{"n": 1}]


# -- unique -------------------------------------------------------------------------------------


def test_unique_skip_returns_the_pending_job_instead_of_a_new_one():
    first = unique_skip.enqueue(n=1)
    second = unique_skip.enqueue(n=2)
    assert second.pk == first.pk
    assert Job.objects.count() == 1
    assert Job.objects.get().data == {"n": 1}


def test_unique_skip_enqueues_again_once_the_pending_job_is_no_longer_scheduled():
    first = unique_skip.enqueue(n=1)
    Job.objects.filter(pk=first.pk).cancel()
    second = unique_skip.enqueue(n=2)
    assert second.pk != first.pk
    assert dict(Job.objects.values_list("data__n", "status")) == {1: "cancelled", 2: "scheduled"}


def test_unique_replace_cancels_the_pending_job_and_schedules_the_new_one():
    first = unique_replace.enqueue(n=1)
    second = unique_replace.enqueue(n=2)
    assert second.pk != first.pk
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "cancelled"
    assert first.finished_at is not None
    assert "replaced" in first.error
    assert second.status == "scheduled"
    assert second.data == {"n": 2}
    assert Job.objects.scheduled().count() == 1


def test_unique_jobs_with_different_keys_are_both_scheduled():
    a = unique_skip.enqueue(n=1, unique_key="customer:1")
    b = unique_skip.enqueue(n=2, unique_key="customer:2")
    c = unique_skip.enqueue(n=3, unique_key="customer:1")
    assert a.pk != b.pk
    assert c.pk == a.pk
    assert Job.objects.scheduled().count() == 2


def test_explicit_unique_key_on_a_job_without_unique_policy_skips_while_one_is_pending():
    # An explicit unique_key without unique= on the job type applies the "skip" policy.
    a = echo.enqueue(n=1, unique_key="k")
    b = echo.enqueue(n=2, unique_key="k")
    assert b.pk == a.pk
    assert Job.objects.count() == 1


# -- transactions -------------------------------------------------------------------------------


def elsewhere(func):
    """Run ``func`` in another thread, hence over another database connection."""

    def work():
        try:
            return func()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_enqueue_inside_a_transaction_is_invisible_elsewhere_until_commit():
    with transaction.atomic(using=jobs_settings.DATABASE):
        row = echo.enqueue(n=1)
        assert Job.objects.filter(pk=row.pk).exists()  # this connection sees it
        assert elsewhere(lambda: Job.objects.filter(pk=row.pk).exists()) is False
    assert elsewhere(lambda: Job.objects.filter(pk=row.pk).exists()) is True
    assert elsewhere(lambda: Job.objects.get(pk=row.pk).status) == "scheduled"


@pytest.mark.django_db(transaction=True)
def test_enqueue_inside_a_rolled_back_transaction_leaves_no_row():
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with transaction.atomic(using=jobs_settings.DATABASE):
            echo.enqueue(n=1)
            echo.enqueue_many([{"n": 2}, {"n": 3}])
            unique_replace.enqueue(n=4)
            raise Abort
    assert Job.objects.count() == 0
    assert elsewhere(lambda: Job.objects.count()) == 0


@pytest.mark.django_db(transaction=True)
def test_unique_replace_rolled_back_keeps_the_original_pending_job():
    first = unique_replace.enqueue(n=1)
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=jobs_settings.DATABASE):
            unique_replace.enqueue(n=2)
            raise RuntimeError("abort")
    assert list(Job.objects.values_list("pk", "status")) == [(first.pk, "scheduled")]


@pytest.mark.django_db(transaction=True)
def test_a_failed_unique_enqueue_does_not_break_the_callers_transaction():
    with transaction.atomic(using=jobs_settings.DATABASE):
        first = unique_skip.enqueue(n=1)
        same = unique_skip.enqueue(n=2)
        other = echo.enqueue(n=3)  # the transaction is still usable
    assert same.pk == first.pk
    assert Job.objects.count() == 2
    assert Job.objects.filter(pk=other.pk).exists()


def test_stored_payload_is_the_json_the_caller_passed():
    row = echo.enqueue(nested={"a": [1, 2, {"b": None}]})
    raw = Job.objects.filter(pk=row.pk).values_list("data", flat=True).get()
    assert json.loads(json.dumps(raw)) == {"nested": {"a": [1, 2, {"b": None}]}}


# -- the write path ----------------------------------------------------------------------------


AWKWARD_TEXT = "tab\there, newline\nthere, back\\slash, \\N, 'quote' \"dq\", null\x01, émoji 🚀"


def test_enqueue_many_round_trips_awkward_text_and_instants():
    run_at = datetime(2031, 5, 4, 14, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    payloads = [{"text": AWKWARD_TEXT, "n": n, "nested": {"k": [AWKWARD_TEXT, None]}}
                for n in range(3)]
    rows = echo.enqueue_many(payloads, run_at=run_at, meta={"why": AWKWARD_TEXT})
    stored = {row.pk: row for row in Job.objects.filter(pk__in=[r.pk for r in rows])}
    for sent, row in zip(payloads, rows, strict=True):
        assert stored[row.pk].data == sent
        assert stored[row.pk].meta == {"why": AWKWARD_TEXT}
        assert stored[row.pk].run_at == run_at


def test_enqueued_rows_are_saved_instances_that_update_in_place():
    single = echo.enqueue(n=1)
    many = echo.enqueue_many([{"n": 2}, {"n": 3}])
    for row in [single, *many]:
        assert row._state.adding is False
        assert row._state.db == jobs_settings.DATABASE
        row.priority = 42
        row.save()
    assert Job.objects.count() == 3
    assert set(Job.objects.values_list("priority", flat=True)) == {42}


def test_enqueue_many_failing_in_the_database_stores_nothing(monkeypatch):
    from django.db import IntegrityError

    from django_jobs import enqueuing

    clash = enqueuing.uuid.uuid4()
    monkeypatch.setattr(enqueuing.uuid, "uuid4", lambda: clash)
    with pytest.raises(IntegrityError), transaction.atomic(using=jobs_settings.DATABASE):
        echo.enqueue_many([{"n": 1}, {"n": 2}, {"n": 3}])
    assert Job.objects.count() == 0


def test_enqueue_many_failing_inside_a_transaction_leaves_the_callers_rows_alone(monkeypatch):
    from django.db import IntegrityError

    from django_jobs import enqueuing

    db = jobs_settings.DATABASE
    with transaction.atomic(using=db):
        kept = echo.enqueue(n=0)
        clash = enqueuing.uuid.uuid4()
        with monkeypatch.context() as patched:
            patched.setattr(enqueuing.uuid, "uuid4", lambda: clash)
            with pytest.raises(IntegrityError), transaction.atomic(using=db):
                echo.enqueue_many([{"n": 1}, {"n": 2}])
    assert list(Job.objects.values_list("pk", flat=True)) == [kept.pk]


def test_every_field_with_a_callable_default_is_set_for_each_new_row():
    # A callable default (dict, uuid4, now) left to the shared template would hand every row
    # of enqueue_many() the same object.
    from django_jobs.enqueuing import _SET_BY_ROW_OPTIONS

    callables = {f.attname for f in Job._meta.concrete_fields
                 if f.has_default() and callable(f.default)}
    assert callables <= _SET_BY_ROW_OPTIONS


def test_the_insert_leaves_out_only_nullable_columns_and_refuses_values_for_them():
    from django_jobs.models.inserting import insert_new_jobs

    left_out = [f for f in Job._meta.concrete_fields
                if f.attname not in {"unique_key", "unique_slot", "lock_key", "created_by_id"}
                and f.null]
    assert {f.attname for f in left_out} >= {"started_at", "finished_at", "result", "claim_id"}
    from django_jobs.enqueuing import build_row

    row = build_row(echo, {"n": 1})
    row.started_at = timezone.now()
    with pytest.raises(ValueError, match="without started_at"):
        insert_new_jobs([row], jobs_settings.DATABASE)
    assert Job.objects.count() == 0


def test_new_rows_are_built_through_init_when_something_listens_to_its_signals():
    from django.db.models.signals import post_init

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.data)

    post_init.connect(receiver, sender=Job)
    try:
        echo.enqueue_many([{"n": 1}, {"n": 2}])
        echo.enqueue(n=3)
    finally:
        post_init.disconnect(receiver, sender=Job)
    assert seen == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_new_rows_equal_rows_read_back_from_the_database():
    rows = echo.enqueue_many([{"n": 1}, {"n": 2}], queue="mail", priority=3)
    for row in rows:
        stored = Job.objects.get(pk=row.pk)
        for field in Job._meta.concrete_fields:
            assert getattr(row, field.attname) == getattr(stored, field.attname), field.name
