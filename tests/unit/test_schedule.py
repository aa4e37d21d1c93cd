"""Recurrence maths: cron validation, cron read in a time zone, ``every`` and ``next_run``."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest

from django_jobs.schedule import Schedule, ScheduleError, get_zone, validate_cron


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "0 * * * *", "*/5 9-17 * * mon-fri", "0 0 1 1 *", "30 2 * * 0", "0 0 L * *"],
)
def test_valid_five_field_cron_expressions_pass(expression):
    validate_cron(expression)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("* * * *", "has 4 fields; expected 5"),
        ("0 0 * * * *", "has 6 fields; expected 5"),
        ("", "has 0 fields; expected 5"),
        ("60 * * * *", "not a valid cron expression"),
        ("* 24 * * *", "not a valid cron expression"),
        ("* * 32 * *", "not a valid cron expression"),
        ("* * * 13 *", "not a valid cron expression"),
        ("* * * * funday", "not a valid cron expression"),
    ],
)
def test_invalid_cron_expressions_raise_schedule_error(expression, fragment):
    with pytest.raises(ScheduleError, match=fragment):
        validate_cron(expression)


def test_cron_must_be_a_string():
    with pytest.raises(ScheduleError, match="must be a string"):
        validate_cron(None)


def test_schedule_error_is_a_value_error():
    assert issubclass(ScheduleError, ValueError)


def test_cron_is_read_in_the_job_zone_and_returned_in_utc_in_winter():
    # 09:00 in Paris is 08:00 UTC in January (CET, UTC+1).
    schedule = Schedule(cron="0 9 * * *", timezone="Europe/Paris")
    after = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)  # 11:00 Paris: today's 09:00 has passed
    nxt = schedule.next_after(after)
    assert nxt == datetime(2024, 1, 16, 8, 0, tzinfo=UTC)
    assert nxt.utcoffset() == timedelta(0)


def test_cron_is_read_in_the_job_zone_in_summer_time():
    # 09:00 in Paris is 07:00 UTC in July (CEST, UTC+2).
    schedule = Schedule(cron="0 9 * * *", timezone="Europe/Paris")
    assert schedule.next_after(datetime(2024, 7, 15, 6, 0, tzinfo=UTC)) == datetime(
        2024, 7, 15, 7, 0, tzinfo=UTC
    )


def test_cron_crosses_the_daylight_saving_change_at_the_same_local_hour():
    schedule = Schedule(cron="0 9 * * *", timezone="Europe/Paris")
    # Saturday 30 March 2024 09:00 CET -> Sunday 31 March 09:00 CEST (clocks went forward).
    nxt = schedule.next_after(datetime(2024, 3, 30, 8, 0, tzinfo=UTC))
    assert nxt == datetime(2024, 3, 31, 7, 0, tzinfo=UTC)
    assert nxt.astimezone(zoneinfo.ZoneInfo("Europe/Paris")).hour == 9


def test_cron_uses_the_default_zone_when_the_job_names_none():
    schedule = Schedule(cron="0 9 * * *")
    after = datetime(2024, 1, 15, 0, 0, tzinfo=UTC)
    assert schedule.next_after(after) == datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
    assert schedule.next_after(after, default_zone="America/New_York") == datetime(
        2024, 1, 15, 14, 0, tzinfo=UTC
    )


def test_cron_next_is_strictly_after_an_occurrence():
    schedule = Schedule(cron="0 * * * *")
    at_occurrence = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert schedule.next_after(at_occurrence) == datetime(2024, 5, 1, 13, 0, tzinfo=UTC)


def test_cron_accepts_a_tzinfo_object():
    schedule = Schedule(cron="30 8 * * *", timezone=zoneinfo.ZoneInfo("Asia/Tokyo"))
    # 08:30 JST is 23:30 UTC the day before.
    assert schedule.next_after(datetime(2024, 5, 1, 0, 0, tzinfo=UTC)) == datetime(
        2024, 5, 1, 23, 30, tzinfo=UTC
    )


def test_every_gives_the_next_occurrence_strictly_after_within_one_interval_in_utc():
    schedule = Schedule(every=timedelta(minutes=15))
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    for after in (
        datetime(2024, 5, 1, 12, 0, tzinfo=paris),
        datetime(2024, 5, 1, 10, 7, 30, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 14, 59, tzinfo=UTC),
    ):
        nxt = schedule.next_after(after)
        assert after < nxt <= after + timedelta(minutes=15)
        assert nxt.utcoffset() == timedelta(0)


def test_every_names_the_same_occurrence_whatever_the_clock_reading_within_an_interval():
    # Schedulers on several machines must agree on the occurrence they create.
    schedule = Schedule(every=timedelta(minutes=15))
    a = schedule.next_after(datetime(2024, 5, 1, 10, 1, tzinfo=UTC))
    b = schedule.next_after(datetime(2024, 5, 1, 10, 9, 59, 999999, tzinfo=UTC))
    assert a == b
    assert schedule.next_after(a) == a + timedelta(minutes=15)


def test_next_run_callable_receives_the_time_and_its_answer_is_converted_to_utc():
    seen = []

    def next_run(last):
        seen.append(last)
        return datetime(2024, 6, 1, 9, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))

    after = datetime(2024, 5, 1, tzinfo=UTC)
    assert Schedule(next_run=next_run).next_after(after) == datetime(2024, 6, 1, 7, 0, tzinfo=UTC)
    assert seen == [after]


def test_a_schedule_without_a_rule_raises():
    with pytest.raises(ScheduleError, match="no schedule"):
        Schedule().next_after(datetime(2024, 1, 1, tzinfo=UTC))


def test_unknown_zone_raises_schedule_error():
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus_Mons'"):
        get_zone("Mars/Olympus_Mons", "UTC")
    with pytest.raises(ScheduleError):
        Schedule(cron="* * * * *", timezone="Nowhere/Else").next_after(
            datetime(2024, 1, 1, tzinfo=UTC)
        )


def test_get_zone_falls_back_to_the_default():
    assert get_zone(None, "Europe/Paris") == zoneinfo.ZoneInfo("Europe/Paris")
