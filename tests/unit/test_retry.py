"""Backoff: attempt n waits ``retry_delay * retry_backoff ** (n - 1)``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_jobs.jobtypes import build_job_type
from django_jobs.retry import retry_delay, should_retry


def test_default_policy_doubles_from_thirty_seconds():
    def fn(ctx):
        return None

    jt = build_job_type(fn, {"name": "t.defaults"})
    delays = [retry_delay(n, jt.retry_delay, jt.retry_backoff) for n in (1, 2, 3, 4)]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240)]


@pytest.mark.parametrize(
    ("attempt", "base", "backoff", "expected"),
    [
        (1, timedelta(seconds=10), 3.0, timedelta(seconds=10)),
        (2, timedelta(seconds=10), 3.0, timedelta(seconds=30)),
        (3, timedelta(seconds=10), 3.0, timedelta(seconds=90)),
        (5, timedelta(seconds=1), 1.5, timedelta(seconds=1.5**4)),
        (4, timedelta(seconds=7), 1.0, timedelta(seconds=7)),  # no backoff: constant
        (3, timedelta(0), 2.0, timedelta(0)),  # retry at once
        (2, timedelta(milliseconds=200), 2.0, timedelta(milliseconds=400)),
    ],
)
def test_attempt_n_waits_delay_times_backoff_to_the_n_minus_one(attempt, base, backoff, expected):
    assert retry_delay(attempt, base, backoff) == expected


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt):
    with pytest.raises(ValueError, match="1-based"):
        retry_delay(attempt, timedelta(seconds=30), 2.0)


def test_should_retry_while_attempts_remain():
    assert should_retry(1, 3)
    assert should_retry(2, 3)
    assert not should_retry(3, 3)
    assert not should_retry(1, 1)  # the default max_attempts=1 never retries
