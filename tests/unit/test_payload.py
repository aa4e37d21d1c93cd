"""Strict JSON for payloads and results, and truncation of long texts."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from django_jobs.payload import dumps, find_non_json, truncate


@pytest.mark.parametrize(
    "value",
    [
        None, True, 0, -3, 1.5, "text", "",
        [], {}, [1, "a", None, 2.5], (1, 2),
        {"a": {"b": [1, {"c": None}]}, "d": False},
    ],
)
def test_plain_json_is_accepted(value):
    assert find_non_json(value, "payload") is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({1, 2}, "payload is of type set"),
        (object(), "payload is of type object"),
        (b"raw", "payload is of type bytes"),
        (datetime(2024, 1, 1, tzinfo=UTC), "payload is of type datetime"),
        (Decimal("1.5"), "payload is of type Decimal"),
        (math.nan, "payload is nan"),
        (math.inf, "payload is inf"),
        (-math.inf, "payload is -inf"),
    ],
)
def test_values_json_cannot_round_trip_are_named(value, fragment):
    problem = find_non_json(value, "payload")
    assert problem is not None
    assert fragment in problem


def test_non_string_keys_are_refused_with_the_key_shown():
    problem = find_non_json({"ok": 1, 7: "seven"}, "payload")
    assert problem == "payload has a key 7 of type int; JSON keys are strings"


def test_the_message_gives_the_path_to_a_nested_value():
    value = {"users": [{"id": 1}, {"id": 2, "seen": {"at": datetime(2024, 1, 1, tzinfo=UTC)}}]}
    problem = find_non_json(value, "payload")
    assert problem.startswith("payload['users'][1]['seen']['at'] is of type datetime")


def test_the_first_offender_is_reported():
    problem = find_non_json({"a": [1, 2, {3}], "b": b"x"}, "data")
    assert problem.startswith("data['a'][2] is of type set")


def test_dumps_returns_compact_json_that_round_trips():
    value = {"a": [1, 2.5, None], "b": {"c": "é"}}
    text = dumps(value, what="payload")
    assert json.loads(text) == value
    assert " " not in text


def test_dumps_raises_type_error_naming_the_culprit():
    with pytest.raises(TypeError, match=r"payload\['when'\] is of type datetime"):
        dumps({"when": datetime(2024, 1, 1, tzinfo=UTC)}, what="payload")
    with pytest.raises(TypeError, match=r"payload\['ratio'\] is nan"):
        dumps({"ratio": math.nan}, what="payload")


def test_dumps_refuses_payloads_over_the_byte_limit():
    value = {"text": "x" * 100}
    size = len(json.dumps(value, separators=(",", ":")).encode())
    assert dumps(value, what="payload", limit=size)  # exactly at the limit is fine
    with pytest.raises(ValueError, match=rf"payload is {size} bytes of JSON, over the limit of "
                                         rf"{size - 1} bytes"):
        dumps(value, what="payload", limit=size - 1)


def test_dumps_counts_bytes_not_characters():
    value = {"t": "é" * 10}  # 10 characters, 20 bytes in UTF-8 (json escapes them: more)
    text = json.dumps(value, separators=(",", ":"))
    with pytest.raises(ValueError):
        dumps(value, what="payload", limit=len(text.encode()) - 1)


def test_truncate_leaves_short_text_alone():
    assert truncate("short", 10) == "short"
    assert truncate("x" * 10, 10) == "x" * 10


def test_truncate_keeps_head_and_tail_and_says_how_much_was_cut():
    text = "HEAD-" + "m" * 5000 + "-TAIL"
    cut = truncate(text, 200)
    assert len(cut) == 200
    assert cut.startswith("HEAD-")
    assert cut.endswith("-TAIL")
    assert f"[{len(text) - 200} characters truncated]" in cut


def test_truncate_keeps_the_end_of_a_traceback():
    lines = [f'  File "mod.py", line {i}, in f{i}' for i in range(2000)]
    text = "Traceback (most recent call last):\n" + "\n".join(lines) + "\nValueError: the cause"
    cut = truncate(text, 1000)
    assert cut.startswith("Traceback (most recent call last):")
    assert cut.endswith("ValueError: the cause")


@pytest.mark.parametrize("limit", [0, 1, 10, 30])
def test_truncate_never_exceeds_the_limit_even_when_tiny(limit):
    assert len(truncate("y" * 500, limit)) <= limit
