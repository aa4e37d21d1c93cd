"""When recurring jobs run: cron in a zone across DST, ``every`` aligned to the epoch, ``next_run``,
and ``plan()`` (what the scheduler creates at a given moment). Pure: a fixed clock, no database."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from django_jobs.schedule import MAX_CATCH_UP, Schedule, ScheduleError, plan

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def occurrences(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every occurrence in (start, end], walking next_after like the scheduler does."""
    found, current = [], start
    while True:
        current = schedule.next_after(current)
        if current > end:
            return found
        found.append(current)


# -- cron in a time zone --------------------------------------------------------------------------


def test_cron_is_read_in_the_zone_and_returned_in_utc():
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    nxt = schedule.next_after(utc(2026, 1, 10, 12))
    assert nxt == utc(2026, 1, 11, 1, 30)  # 02:30 CET = 01:30 UTC
    assert nxt.tzinfo == UTC
    summer = schedule.next_after(utc(2026, 7, 10, 12))
    assert summer == utc(2026, 7, 11, 0, 30)  # 02:30 CEST = 00:30 UTC


def test_cron_in_new_york():
    schedule = Schedule(cron="0 9 * * 1-5", timezone="America/New_York")
    # Friday 2026-01-09 15:00 UTC = 10:00 EST: next is Monday 09:00 EST = 14:00 UTC.
    assert schedule.next_after(utc(2026, 1, 9, 15)) == utc(2026, 1, 12, 14)


def test_spring_forward_gap_moves_the_run_to_the_first_minute_after_the_gap():
    """Europe/Paris 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist.
    The job is not skipped: it runs once that night, at 03:00 CEST (01:00 UTC)."""
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    runs = occurrences(schedule, utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))
    assert runs == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # the gap: 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]
    assert runs[1].astimezone(PARIS).strftime("%H:%M") == "03:00"


def test_spring_forward_gap_in_new_york():
    schedule = Schedule(cron="30 2 * * *", timezone="America/New_York")
    runs = occurrences(schedule, utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: the 02:30 run happens at 03:00 EDT.
    assert runs == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]


def test_hourly_cron_has_no_run_for_the_missing_hour():
    schedule = Schedule(cron="0 * * * *", timezone="Europe/Paris")
    runs = occurrences(schedule, utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 2, 30))
    # 01:00 CET, then 03:00 CEST: one hour of real time between them, no duplicate.
    assert runs == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)]


@pytest.mark.parametrize(
    ("cron", "zone", "start", "end", "expected"),
    [
        # Europe/Paris 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        ("30 2 * * *", "Europe/Paris", utc(2026, 10, 23, 12), utc(2026, 10, 27, 12),
         [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30),
          utc(2026, 10, 27, 1, 30)]),
        # America/New_York 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        ("30 1 * * *", "America/New_York", utc(2026, 10, 30, 12), utc(2026, 11, 3, 12),
         [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30),
          utc(2026, 11, 3, 6, 30)]),
    ],
)
def test_fall_back_overlap_runs_a_daily_job_once(cron, zone, start, end, expected):
    schedule = Schedule(cron=cron, timezone=zone)
    runs = occurrences(schedule, start, end)
    assert runs == expected
    local_days = [r.astimezone(ZoneInfo(zone)).date() for r in runs]
    assert len(local_days) == len(set(local_days)), "a daily job ran twice on one day"


def test_fall_back_first_pass_is_the_one_that_runs():
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    nxt = schedule.next_after(utc(2026, 10, 24, 12))
    assert nxt == utc(2026, 10, 25, 0, 30)
    assert nxt.astimezone(PARIS).utcoffset() == timedelta(hours=2)  # CEST, the first 02:30
    # Asked from between the two passes, the repeated 02:30 CET is not an occurrence.
    assert schedule.next_after(utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 26, 1, 30)


def test_fall_back_jobs_of_every_hour_keep_running_in_the_repeated_hour():
    """A job whose hour field is ``*`` runs by the clock of real time: both passes of 02:xx."""
    schedule = Schedule(cron="*/30 * * * *", timezone="Europe/Paris")
    runs = occurrences(schedule, utc(2026, 10, 24, 23, 45), utc(2026, 10, 25, 2, 0))
    assert runs == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1),
                    utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2)]
    assert len(set(runs)) == len(runs)


def test_fall_back_hour_ranges_run_the_repeated_hour_once():
    schedule = Schedule(cron="0 1-3 * * *", timezone="Europe/Paris")
    runs = occurrences(schedule, utc(2026, 10, 24, 22), utc(2026, 10, 25, 3))
    assert [r.astimezone(PARIS).strftime("%H:%M%z") for r in runs] == [
        "01:00+0200", "02:00+0200", "03:00+0100"
    ]


# -- every ----------------------------------------------------------------------------------------


def test_every_is_aligned_to_multiples_of_the_interval_since_the_epoch():
    schedule = Schedule(every=timedelta(minutes=10))
    assert schedule.next_after(utc(2026, 5, 1, 12, 3, 17)) == utc(2026, 5, 1, 12, 10)
    assert schedule.next_after(utc(2026, 5, 1, 12, 10)) == utc(2026, 5, 1, 12, 20)  # strictly after


def test_two_callers_in_the_same_interval_get_the_same_occurrence():
    schedule = Schedule(every=timedelta(seconds=7))
    a = schedule.next_after(utc(2026, 5, 1, 12, 0, 0, 100))
    b = schedule.next_after(utc(2026, 5, 1, 12, 0, 0, 900_000))
    c = schedule.next_after(datetime(2026, 5, 1, 14, 0, 0, 500_000, tzinfo=PARIS))  # same instant
    assert a == b == c
    epoch = utc(1970, 1, 1)
    assert (a - epoch) % timedelta(seconds=7) == timedelta(0)


def test_every_ignores_dst():
    schedule = Schedule(every=timedelta(hours=1), timezone="Europe/Paris")
    runs = occurrences(schedule, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 3))
    assert runs == [utc(2026, 10, 25, h) for h in range(4)]


# -- next_run -------------------------------------------------------------------------------------


def test_next_run_callable_gets_the_previous_occurrence_and_may_be_in_any_zone():
    seen = []

    def next_run(last):
        seen.append(last)
        if last is None:
            return datetime(2026, 5, 1, 9, 0, tzinfo=PARIS)
        return last + timedelta(days=1)

    schedule = Schedule(next_run=next_run)
    assert schedule.next_after(utc(2026, 5, 1, 7)) == utc(2026, 5, 2, 7)
    assert seen == [utc(2026, 5, 1, 7)]
    first = plan(schedule, None, utc(2026, 4, 30), "latest")
    assert first.occurrences == (utc(2026, 5, 1, 7),)
    assert seen[-1] is None


def test_next_run_first_occurrence_in_the_past_is_clamped_to_now():
    schedule = Schedule(next_run=lambda last: utc(2020, 1, 1))
    now = utc(2026, 5, 1)
    assert plan(schedule, None, now, "latest").occurrences == (now,)


def test_a_schedule_going_backwards_is_an_error():
    schedule = Schedule(next_run=lambda last: utc(2020, 1, 1))
    with pytest.raises(ScheduleError, match="went backwards"):
        plan(schedule, utc(2026, 5, 1), utc(2026, 5, 2), "latest")


# -- plan -----------------------------------------------------------------------------------------

MINUTE = Schedule(every=timedelta(minutes=1))
NOW = utc(2026, 5, 1, 12, 0, 30)


def test_plan_first_occurrence_is_the_next_one():
    todo = plan(MINUTE, None, NOW, "latest")
    assert todo.occurrences == (utc(2026, 5, 1, 12, 1),)
    assert todo.supersede_before is None


def test_plan_cron_first_occurrence_uses_the_default_zone():
    todo = plan(Schedule(cron="0 9 * * *"), None, NOW, "latest", default_zone="Europe/Paris")
    assert todo.occurrences == (utc(2026, 5, 2, 7),)


def test_plan_nothing_to_do_while_the_last_occurrence_is_in_the_future():
    todo = plan(MINUTE, utc(2026, 5, 1, 12, 1), NOW, "latest")
    assert todo.occurrences == ()
    assert todo.supersede_before is None


def test_plan_when_the_last_occurrence_came_creates_the_next():
    todo = plan(MINUTE, utc(2026, 5, 1, 12, 1), utc(2026, 5, 1, 12, 1), "latest")
    assert todo.occurrences == (utc(2026, 5, 1, 12, 2),)
    assert todo.supersede_before is None


@pytest.fixture
def downtime():
    """An every-minute job whose last created occurrence was 12:00; the clock is now 13:00:30,
    so the 60 occurrences 12:01 .. 13:00 were missed."""
    return utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 13, 0, 30)


def test_plan_catch_up_latest_creates_only_the_latest_missed_and_the_next(downtime):
    last, now = downtime
    todo = plan(MINUTE, last, now, "latest")
    assert todo.occurrences == (utc(2026, 5, 1, 13, 0), utc(2026, 5, 1, 13, 1))
    # Pending rows of the earlier missed occurrences are superseded by the latest one.
    assert todo.supersede_before == utc(2026, 5, 1, 13, 0)


def test_plan_catch_up_skip_creates_only_the_next(downtime):
    last, now = downtime
    todo = plan(MINUTE, last, now, "skip")
    assert todo.occurrences == (utc(2026, 5, 1, 13, 1),)
    assert todo.supersede_before == utc(2026, 5, 1, 13, 1)


def test_plan_catch_up_all_creates_every_missed_one(downtime):
    last, now = downtime
    todo = plan(MINUTE, last, now, "all")
    expected = [last + timedelta(minutes=n) for n in range(1, 62)]
    assert list(todo.occurrences) == expected  # 60 missed + the next
    assert todo.supersede_before is None


def test_plan_catch_up_all_is_bounded_by_max_catch_up():
    last = utc(2026, 5, 1, 0, 0)
    now = last + timedelta(minutes=MAX_CATCH_UP * 3, seconds=30)
    todo = plan(MINUTE, last, now, "all")
    assert len(todo.occurrences) == MAX_CATCH_UP + 1
    # The most recent missed ones are kept, the oldest dropped.
    assert todo.occurrences[-2] == last + timedelta(minutes=MAX_CATCH_UP * 3)
    assert todo.occurrences[0] == last + timedelta(minutes=MAX_CATCH_UP * 2 + 1)
    assert todo.occurrences[-1] == last + timedelta(minutes=MAX_CATCH_UP * 3 + 1)


def test_plan_is_deterministic_for_every_caller(downtime):
    """Two schedulers reading the clock at different moments of the same minute agree."""
    last, now = downtime
    other = now + timedelta(seconds=20)
    for policy in ("latest", "skip", "all"):
        assert plan(MINUTE, last, now, policy) == plan(MINUTE, last, other, policy)


def test_plan_catch_up_latest_for_a_daily_cron_after_days_of_downtime():
    schedule = Schedule(cron="0 6 * * *", timezone="America/New_York")
    last = utc(2026, 1, 1, 11)  # 06:00 EST
    now = utc(2026, 1, 5, 12)  # four runs missed
    todo = plan(schedule, last, now, "latest")
    assert todo.occurrences == (utc(2026, 1, 5, 11), utc(2026, 1, 6, 11))


def test_fall_back_every_minute_of_a_fixed_hour_runs_that_hour_once():
    schedule = Schedule(cron="* 2 * * *", timezone="Europe/Paris")
    runs = occurrences(schedule, utc(2026, 10, 24, 23, 59), utc(2026, 10, 25, 12))
    assert len(runs) == 60  # 02:00..02:59 CEST, not again in CET
    assert runs[0] == utc(2026, 10, 25, 0, 0) and runs[-1] == utc(2026, 10, 25, 0, 59)


# -- plan after a very long downtime --------------------------------------------------------------

SECOND = Schedule(every=timedelta(seconds=1))
DECADE_AGO = utc(2016, 5, 1, 12, 0, 0)
LATE_NOW = utc(2026, 5, 1, 12, 0, 30, 500_000)


def _timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def test_plan_catch_up_latest_after_ten_years_is_the_latest_occurrence_computed_at_once():
    todo, seconds = _timed(lambda: plan(SECOND, DECADE_AGO, LATE_NOW, "latest"))
    assert todo.occurrences == (utc(2026, 5, 1, 12, 0, 30), utc(2026, 5, 1, 12, 0, 31))
    assert todo.supersede_before == utc(2026, 5, 1, 12, 0, 30)
    assert seconds < 1


def test_plan_catch_up_all_after_ten_years_keeps_the_most_recent_missed_ones():
    todo, seconds = _timed(lambda: plan(SECOND, DECADE_AGO, LATE_NOW, "all"))
    latest = utc(2026, 5, 1, 12, 0, 30)
    expected = [latest - timedelta(seconds=n) for n in range(MAX_CATCH_UP - 1, -1, -1)]
    assert list(todo.occurrences) == [*expected, latest + timedelta(seconds=1)]
    assert seconds < 1


def test_plan_catch_up_skip_after_ten_years_creates_the_next_at_once():
    todo, seconds = _timed(lambda: plan(SECOND, DECADE_AGO, LATE_NOW, "skip"))
    assert todo.occurrences == (utc(2026, 5, 1, 12, 0, 31),)
    assert seconds < 1


def test_plan_catch_up_latest_of_a_cron_after_ten_years_is_its_latest_occurrence():
    schedule = Schedule(cron="*/5 * * * *", timezone="Europe/Paris")
    todo, seconds = _timed(lambda: plan(schedule, DECADE_AGO, LATE_NOW, "latest"))
    assert todo.occurrences == (utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 5))
    assert seconds < 1


def test_plan_catch_up_latest_of_a_fixed_hour_cron_across_a_fall_back_matches_next_after():
    # 02:30 Paris happens twice on 25 October 2026; the job runs at the first one only.
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    now = utc(2026, 10, 25, 1, 45)  # after the second 02:30 (01:30 UTC)
    todo = plan(schedule, utc(2016, 1, 1), now, "latest")
    assert todo.occurrences == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30))


def test_plan_of_a_next_run_callable_past_the_walk_bound_plans_from_now_and_says_so(caplog):
    schedule = Schedule(next_run=lambda last: last + timedelta(seconds=1))
    with caplog.at_level(logging.WARNING, logger="django_jobs"):
        todo = plan(schedule, DECADE_AGO, LATE_NOW, "latest")
    # The walk gives up long before today: nothing stale is created, only the next occurrence.
    assert todo.occurrences == (LATE_NOW + timedelta(seconds=1),)
    assert todo.supersede_before == LATE_NOW + timedelta(seconds=1)
    assert "gave up" in caplog.text


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule(cron="30 2 * * *", timezone="Europe/Paris"),
        Schedule(cron="*/20 * * * *", timezone="Europe/Paris"),
        Schedule(cron="0 1-3 * * *", timezone="America/New_York"),
        Schedule(every=timedelta(minutes=7)),
    ],
)
@pytest.mark.parametrize("policy", ["latest", "all"])
def test_plan_from_the_latest_occurrences_agrees_with_walking_every_one(schedule, policy):
    """Across the daylight saving changes of 2026, for gaps of a few hours to a few days."""
    for start in (utc(2026, 3, 7, 22), utc(2026, 3, 28, 22), utc(2026, 10, 24, 22),
                  utc(2026, 10, 31, 22)):
        for gap in (timedelta(hours=3), timedelta(hours=30), timedelta(days=3)):
            last, now = schedule.next_after(start), start + gap
            walked = occurrences(schedule, last, now)
            if not walked:
                continue
            todo = plan(schedule, last, now, policy)
            keep = MAX_CATCH_UP if policy == "all" else 1
            assert list(todo.occurrences[:-1]) == walked[-keep:], (start, gap)
            assert todo.occurrences[-1] == schedule.next_after(walked[-1])
