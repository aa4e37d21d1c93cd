"""Concurrency slots and rate tokens, taken in the claim transaction for rows with limits.

Both are enforced by the database, not by a process's bookkeeping:

- a concurrency limit of N is N possible ``JobTypeLock`` rows ``"<group>#0"`` ..
  ``"<group>#<N-1>"``; the primary key refuses a second holder of a slot. Slots are held and
  freed exactly like lock keys: with the run's outcome, its release, or the write-off of its
  lost worker, in the same transaction;
- a rate limit of N per period is N ``RateToken`` rows; taking one is a guarded UPDATE that
  only applies if the token was last used a whole period ago by the database's clock.

Only claims of workers that can take limited rows come here: the claim of a worker without
limits is today's query, unchanged.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, connections, transaction

from .. import clock, locks
from ..conf import jobs_settings
from ..jobtypes import registry
from ..limits import Limit, job_group, queue_limits
from ..models import Job, JobTypeLock, RateToken

#: Tries of other free slot numbers after a racing claim took the one chosen.
SLOT_TRIES = 3


@dataclass(frozen=True)
class Plan:
    """The limits a worker's claim may meet: of its job types, and of its queues."""

    job_limits: dict[str, tuple[int | None, object]]  # name -> (concurrency, Rate or None)
    queues: dict[str, Limit]

    def limits_of(self, row: Job) -> list[Limit]:
        found = []
        if row.limit_key:
            limits = self.job_limits.get(row.name)
            if limits is not None:
                found.append(Limit(job_group(row.limit_key), *limits))
        queue = self.queues.get(row.queue)
        if queue is not None:
            found.append(queue)
        return found


def plan(names: Iterable[str] | None, queues: Iterable[str] | None) -> Plan | None:
    """The limits a claim over ``names`` and ``queues`` may meet; ``None`` when there are
    none, and the claim stays the plain one."""
    limited_queues = queue_limits(jobs_settings.QUEUES)
    wanted = set(queues or ())
    if wanted:
        limited_queues = {q: limit for q, limit in limited_queues.items() if q in wanted}
    allowed = None if names is None else set(names)
    job_limits = {
        job_type.name: (job_type.concurrency, job_type.rate)
        for job_type in registry
        if job_type.has_limits and (allowed is None or job_type.name in allowed)
    }
    if not job_limits and not limited_queues:
        return None
    return Plan(job_limits, limited_queues)


@dataclass
class Limiter:
    """One claim's view of the limits: what is full, what it reserved, what it took."""

    plan: Plan
    claim_id: uuid.UUID
    worker: str
    owner: uuid.UUID | None
    lease: datetime | None
    full_groups: set[str] = field(default_factory=set)
    _held: dict[str, set[int]] = field(default_factory=dict)
    _tokens_left: dict[str, int] = field(default_factory=dict)
    _reserved: dict[object, list[tuple[Limit, int | None]]] = field(default_factory=dict)

    def read_use(self) -> None:
        """Find the groups at their limit, before the candidates are read: their rows are
        left out of the claim's window (fairness between keys)."""
        for group, (numbers, capacity) in JobTypeLock.objects.held_slot_numbers().items():
            self._held[group] = numbers
            if len(numbers) >= capacity:
                self.full_groups.add(group)
        for group, (used, capacity) in RateToken.objects.in_use().items():
            self._tokens_left[group] = capacity - used
            if used >= capacity:
                self.full_groups.add(group)

    @property
    def full_limit_keys(self) -> list[str]:
        return sorted(g[len("job:"):] for g in self.full_groups if g.startswith("job:"))

    @property
    def full_queues(self) -> list[str]:
        return sorted(g[len("queue:"):] for g in self.full_groups if g.startswith("queue:"))

    def admit(self, row: Job) -> bool:
        """Reserve, in memory, what ``row`` needs under its limits; ``False`` if it cannot
        start now. Nothing is written until ``take()``."""
        limits = self.plan.limits_of(row)
        if not limits:
            return True
        picks: list[tuple[Limit, int | None]] = []
        for limit in limits:
            if limit.group in self.full_groups:
                return False
            number = None
            if limit.concurrency is not None:
                number = _pick(limit.concurrency, self._held.setdefault(limit.group, set()))
                if number is None or any(p[0].group == limit.group for p in picks):
                    return False
            if limit.rate is not None and self._tokens_left.get(
                limit.group, limit.rate.count
            ) <= 0:
                return False
            picks.append((limit, number))
        for limit, number in picks:
            if number is not None:
                self._held[limit.group].add(number)
            if limit.rate is not None:
                self._tokens_left[limit.group] = self._tokens_left.get(
                    limit.group, limit.rate.count
                ) - 1
        self._reserved[row.pk] = picks
        return True

    def forget(self, row: Job) -> None:
        """Give back what ``admit()`` reserved for a row that is not taken after all."""
        for limit, number in self._reserved.pop(row.pk, ()):
            if number is not None:
                self._held[limit.group].discard(number)
            if limit.rate is not None:
                self._tokens_left[limit.group] += 1

    def take(self, rows: list[Job]) -> list[Job]:
        """Write the reserved slots and tokens of ``rows``; return the rows that got all of
        theirs. A racing claim may have taken some first: those rows stay scheduled, and
        what was taken for them (their lock key too) is given back in this transaction."""
        limited = [row for row in rows if self._reserved.get(row.pk)]
        if not limited:
            return rows
        dropped = self._take_slots(limited)
        dropped |= self._take_tokens([row for row in limited if row.pk not in dropped])
        if dropped:
            JobTypeLock.objects.filter(job_id__in=sorted(dropped, key=str),
                                       claim_id=self.claim_id).delete()
        return [row for row in rows if row.pk not in dropped]

    def _slot(self, row: Job, limit: Limit, number: int) -> JobTypeLock:
        return JobTypeLock(
            key=f"{limit.group}#{number}", job_id=row.pk, claim_id=self.claim_id,
            worker=self.worker, owner_id=self.owner,
            locked_until=None if self.owner is not None else self.lease,
            slot_of=limit.group, capacity=limit.concurrency,
        )

    def _take_slots(self, rows: list[Job]) -> set[object]:
        slots = [self._slot(row, limit, number) for row in rows
                 for limit, number in self._reserved[row.pk] if number is not None]
        if not slots:
            return set()
        db = jobs_settings.DATABASE
        try:
            with transaction.atomic(using=db):
                JobTypeLock.objects.bulk_create(slots)
            return set()
        except IntegrityError:
            pass
        # A racing claim took one of these numbers (or a slot of a run without a process is
        # past its lease): one slot at a time, trying a few other free numbers.
        dropped: set[object] = set()
        for row in rows:
            for limit, number in self._reserved[row.pk]:
                if number is None:
                    continue
                if not self._take_one_slot(row, limit, number):
                    dropped.add(row.pk)
                    break
        return dropped

    def _take_one_slot(self, row: Job, limit: Limit, number: int) -> bool:
        held = self._held.setdefault(limit.group, set())
        candidates = [number] + [n for n in range(limit.concurrency or 0) if n not in held]
        for n in candidates[:SLOT_TRIES + 1]:
            taken = locks.acquire(
                f"{limit.group}#{n}", job_id=row.pk, claim_id=self.claim_id,
                worker=self.worker, owner=self.owner, until=self.lease,
                slot_of=limit.group, capacity=limit.concurrency,
            )
            held.add(n)
            if taken:
                return True
        return False

    def _take_tokens(self, rows: list[Job]) -> set[object]:
        wanted: dict[str, tuple[Limit, list[Job]]] = {}
        for row in rows:
            for limit, _number in self._reserved[row.pk]:
                if limit.rate is not None:
                    wanted.setdefault(limit.group, (limit, []))[1].append(row)
        dropped: set[object] = set()
        for group, (limit, group_rows) in wanted.items():
            got = self._use_tokens(group, limit, len(group_rows))
            dropped.update(row.pk for row in group_rows[got:])
        return dropped

    def _use_tokens(self, group: str, limit: Limit, count: int) -> int:
        """Take up to ``count`` tokens of ``group``: free ones first, then new ones while the
        group has fewer than its limit. Returns how many were taken."""
        rate = limit.rate
        assert rate is not None
        db = jobs_settings.DATABASE
        tokens = RateToken.objects.filter(group=group, number__lt=rate.count)
        free = tokens.free().order_by("free_at")
        if connections[db].features.has_select_for_update_skip_locked:
            free = free.select_for_update(skip_locked=True)
        keys = list(free.values_list("key", flat=True)[:count])
        got = RateToken.objects.filter(key__in=keys).use(rate.seconds, rate.count) if keys else 0
        if got < count:
            existing = set(tokens.values_list("number", flat=True))
            new = []
            for _ in range(count - got):
                # Drawn at random: racing claims rarely pick the same number, so they rarely
                # wait on each other's inserts.
                number = _pick(rate.count, existing)
                if number is None:
                    break
                existing.add(number)
                new.append(RateToken(key=f"{group}#{number}", group=group, number=number,
                                     capacity=rate.count, free_at=clock.sql_now(rate.seconds)))
            if new:
                try:
                    with transaction.atomic(using=db):
                        RateToken.objects.bulk_create(new)
                    got += len(new)
                except IntegrityError:
                    pass  # a racing claim created them: its rows take them, ours wait
        return got


def _pick(capacity: int, held: set[int]) -> int | None:
    """A free slot number, drawn at random: concurrent claims of one group then rarely pick
    the same one, and rarely wait on each other's insert."""
    if len(held) >= capacity:
        return None
    for _ in range(8):
        number = random.randrange(capacity)
        if number not in held:
            return number
    return next((n for n in range(capacity) if n not in held), None)
