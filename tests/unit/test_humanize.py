"""Durations and cron expressions in words (no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_jobs.humanize import cron_words, duration_words, every_words, parse_duration


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(0), "0 s"),
        (timedelta(seconds=0.43), "0.4 s"),
        (timedelta(seconds=5), "5 s"),
        (timedelta(seconds=59.9), "59 s"),
        (timedelta(seconds=125), "2 min 5 s"),
        (timedelta(hours=1), "1 h"),
        (timedelta(hours=1, minutes=2, seconds=5), "1 h 2 min"),
        (timedelta(days=2, hours=3, minutes=4), "2 d 3 h"),
        (timedelta(seconds=-65), "-1 min 5 s"),
    ],
)
def test_duration_words_gives_the_two_largest_units(delta, words):
    assert duration_words(delta) == words


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("0 * * * *", "at minute 0 of every hour"),
        ("15 */2 * * *", "every 2 hours at minute 15"),
        ("30 2 * * *", "daily at 02:30"),
        ("0 9,17 * * *", "daily at 09:00 and 17:00"),
        ("0 9 * * 1-5", "on weekdays at 09:00"),
        ("0 0 * * 0,6", "on weekends at 00:00"),
        ("0 10 * * 1", "every Monday at 10:00"),
        ("0 10 * * 1,3", "every Monday and Wednesday at 10:00"),
        ("0 0 1 * *", "monthly on the 1st at 00:00"),
        ("0 0 25 12 *", "yearly on December 25 at 00:00"),
    ],
)
def test_cron_words_describes_common_expressions(expression, words):
    assert cron_words(expression) == words


@pytest.mark.parametrize("expression", ["*/15 9-17 * * 1-5", "0 0 L * *", "not cron", ""])
def test_cron_words_falls_back_to_the_expression(expression):
    assert cron_words(expression) == expression


def test_every_words_names_whole_units():
    assert every_words(timedelta(minutes=5)) == "every 5 minutes"
    assert every_words(timedelta(hours=1)) == "every hour"
    assert every_words(timedelta(seconds=90)) == "every 90 seconds"
    assert every_words(timedelta(seconds=1.5)) == "every 1.5 s"


@pytest.mark.parametrize(
    ("text", "delta"),
    [("90", timedelta(seconds=90)), ("30s", timedelta(seconds=30)),
     ("5m", timedelta(minutes=5)), ("1h30m", timedelta(hours=1, minutes=30)),
     ("2d", timedelta(days=2)), ("250ms", timedelta(milliseconds=250)),
     ("0.5", timedelta(seconds=0.5))],
)
def test_parse_duration_reads_seconds_and_units(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "soon", "5x", "-5", "1h-2m"])
def test_parse_duration_rejects_what_it_cannot_read(text):
    with pytest.raises(ValueError):
        parse_duration(text)
