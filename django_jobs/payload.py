"""Strict JSON for payloads and results: only what round-trips unchanged is accepted.

Datetimes, decimals, sets, bytes and NaN are refused instead of being silently converted,
so what a job receives is exactly what the caller passed.
"""

from __future__ import annotations

import json
import math
from typing import Any

_SCALARS = (str, int, bool, type(None))
#: Exact types that need no further look (subclasses go through isinstance).
_PLAIN = frozenset({str, int, bool, type(None)})


def find_non_json(value: Any, path: str) -> str | None:
    """Return a description of the first value under ``path`` that is not plain JSON."""
    found = _first_problem(value)
    if found is None:
        return None
    trail, problem = found
    return f"{path}{''.join(reversed(trail))} {problem}"


def _first_problem(value: Any) -> tuple[list[str], str] | None:
    """The first non-JSON value: its path (innermost first) and what is wrong with it.

    The path is built only on the way back from a problem, so clean payloads (nearly all of
    them, and checked on every enqueue) cost one type check per value.
    """
    kind = type(value)
    if kind in _PLAIN or isinstance(value, _SCALARS):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return [], f"is {value!r}, which JSON cannot represent"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return [], (
                    f"has a key {key!r} of type {type(key).__name__}; JSON keys are strings"
                )
            if type(item) in _PLAIN:
                continue
            found = _first_problem(item)
            if found:
                found[0].append(f"[{key!r}]")
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if type(item) in _PLAIN:
                continue
            found = _first_problem(item)
            if found:
                found[0].append(f"[{index}]")
                return found
        return None
    return [], f"is of type {kind.__name__}, which is not JSON-serialisable{_fix(value)}"


def _fix(value: Any) -> str:
    """How to pass ``value`` instead: the conversions a job can undo on the other side."""
    if hasattr(value, "isoformat"):  # datetime, date, time
        return "; pass value.isoformat() and parse it in the job"
    if hasattr(value, "_meta") and hasattr(value, "pk"):  # a model instance
        return "; pass its .pk and fetch the row in the job"
    if type(value).__name__ in ("UUID", "Decimal"):
        return "; pass str(value)"
    if isinstance(value, (set, frozenset)):
        return "; pass a list"
    if isinstance(value, (bytes, bytearray)):
        return "; pass text (decode it, or base64 for binary data)"
    if hasattr(value, "total_seconds"):  # timedelta
        return "; pass value.total_seconds()"
    return ""


def dumps(value: Any, *, what: str, limit: int | None = None) -> str:
    """Encode ``value`` as JSON or raise ``TypeError``/``ValueError`` naming the culprit."""
    problem = find_non_json(value, what)
    if problem:
        raise TypeError(problem)
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    if limit is not None and len(text.encode()) > limit:
        raise ValueError(
            f"{what} is {len(text.encode())} bytes of JSON, over the limit of {limit} bytes "
            "(DJANGO_JOBS['MAX_PAYLOAD_BYTES'])"
        )
    return text


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, keeping its head and tail (tracebacks end usefully)."""
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text) - limit} characters truncated] ...\n"
    if len(marker) >= limit:  # no room for the marker: a plain cut still honours the limit
        return text[: max(limit, 0)]
    keep = limit - len(marker)
    head = keep // 2
    return text[:head] + marker + text[len(text) - (keep - head) :]


def storable_text(text: str, limit: int) -> str:
    """``text`` as every supported database can store it: no NUL characters (PostgreSQL
    refuses them), no lone surrogates (no encoding accepts them), at most ``limit`` characters.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return truncate(text, limit)
