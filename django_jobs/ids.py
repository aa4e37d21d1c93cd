"""Short job ids: the first hex characters of a job's UUID, as the admin and the CLI show them.

Pure: no ORM, so the control API can tell an id from a name before any query.
"""

from __future__ import annotations

import string
import uuid

#: Fewest hex characters of a short id: fewer would match a sixteenth of the table.
SHORT_ID_MIN = 4
#: How many characters the admin and the jobs command show.
SHORT_ID_SHOWN = 8
_HEX = frozenset(string.hexdigits)


def short_id(job_id: object) -> str:
    return str(job_id)[:SHORT_ID_SHOWN]


def id_prefix_range(prefix: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The smallest and largest UUIDs starting with ``prefix`` (hex digits, dashes ignored).

    ``None`` when ``prefix`` is not hex. A range on the primary key reads its index on every
    engine, whether the UUID is stored as ``uuid`` (PostgreSQL) or ``char(32)`` (others);
    a ``LIKE`` on a cast would not.
    """
    digits = prefix.strip().replace("-", "").lower()
    if not digits or len(digits) > 32 or not _HEX.issuperset(digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def dashed_prefix(prefix: str) -> str:
    """``abcd12345`` -> ``abcd1234-5``: the prefix as it reads in a UUID's usual text form."""
    digits = prefix.strip().replace("-", "").lower()
    parts, start = [], 0
    for size in (8, 4, 4, 4, 12):
        if start >= len(digits):
            break
        parts.append(digits[start:start + size])
        start += size
    return "-".join(parts)
