"""A workflow's members in dependency order, and its counts in words (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django_jobs.humanize import counts_words
from django_jobs.types import WorkflowInfo, WorkflowMember

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def member(label: str, *after: WorkflowMember | uuid.UUID) -> WorkflowMember:
    return WorkflowMember(
        id=uuid.uuid5(uuid.NAMESPACE_URL, label), name=label, status="waiting", progress=0.0,
        message="", attempt=1, run_when="success" if after else "",
        after=[item.id if isinstance(item, WorkflowMember) else item for item in after],
        started_at=None, finished_at=None, error="",
    )


def info(*members: WorkflowMember) -> WorkflowInfo:
    return WorkflowInfo(
        id=uuid.uuid4(), name="", status="running", on_failure="cancel", created_at=T0,
        cancelled_at=None, finished_at=None, progress=0.0, eta=None, counts={},
        members=list(members),
    )


def names(ordered) -> list[tuple[str, int]]:
    return [(m.name, depth) for m, depth in ordered]


def test_members_come_after_what_they_wait_for_and_chains_read_as_blocks():
    a1 = member("a1")
    b1 = member("b1")
    a2 = member("a2", a1)
    b2 = member("b2", b1)
    done = member("done", a2, b2)
    # Listed in an order that is not the graph's (members enqueued together share a time).
    ordered = info(done, b2, a2, b1, a1).in_dependency_order()
    assert names(ordered) == [("b1", 0), ("b2", 1), ("a1", 0), ("a2", 1), ("done", 2)]


def test_depth_is_the_longest_chain_a_member_waits_for():
    a = member("a")
    b = member("b", a)
    c = member("c", b)
    d = member("d", a, c)
    assert names(info(a, b, c, d).in_dependency_order()) == [
        ("a", 0), ("b", 1), ("c", 2), ("d", 3)]


def test_a_dependency_that_is_no_member_and_a_cycle_still_list_every_member():
    gone = uuid.uuid4()  # an attempt retried since: its retry is the member
    a = member("a", gone)
    x = member("x", uuid.uuid5(uuid.NAMESPACE_URL, "y"))
    y = member("y", x)
    assert names(info(x, y, a).in_dependency_order()) == [("a", 0), ("x", 0), ("y", 1)]


def test_counts_in_words_follow_a_job_s_life():
    assert counts_words({}) == "0 members"
    assert counts_words({"succeeded": 1}) == "1 member: 1 succeeded"
    assert counts_words({"failed": 1, "waiting": 2, "running": 1, "zapped": 1}) == (
        "5 members: 2 waiting, 1 running, 1 failed, 1 zapped")
