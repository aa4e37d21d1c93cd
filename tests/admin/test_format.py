"""The admin's fallback words for durations and cron expressions (no database).

The admin uses ``django_jobs.humanize`` when it is there; these fallbacks keep it working alone.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_jobs.admin.format import _cron_words as cron_words
from django_jobs.admin.format import _duration_words as duration_words


@pytest.mark.parametrize(("seconds", "words"), [
    (0, "0 s"), (0.4, "0.4 s"), (5, "5 s"), (59, "59 s"), (60, "1 min"), (125, "2 min 5 s"),
    (3600, "1 h"), (3725, "1 h 2 min"), (90000, "1 d 1 h"),
])
def test_duration_words(seconds, words):
    assert duration_words(timedelta(seconds=seconds)) == words


@pytest.mark.parametrize(("expression", "words"), [
    ("* * * * *", "every minute"),
    ("*/5 * * * *", "every 5 minutes"),
    ("0 * * * *", "every hour at minute 0"),
    ("15 */2 * * *", "every 2 hours at minute 15"),
    ("30 4 * * *", "every day at 04:30"),
    ("0 9 * * 1-5", "every Monday to Friday at 09:00"),
    ("0 9 1 * *", "on day 1 of every month at 09:00"),
    ("0 9 1 1 *", "cron 0 9 1 1 *"),
])
def test_cron_words(expression, words):
    assert cron_words(expression) == words
