"""Turning calls into ``Job`` rows: options, JSON validation, uniqueness, bulk inserts.

Everything here writes through the jobs database alias inside the caller's transaction, so a
job enqueued in ``transaction.atomic()`` exists for workers only once that transaction commits.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import OperationalError, ProgrammingError, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from . import clock, eager, payload
from . import workflows as _workflows
from .composition import Chain, Group, Node, Step
from .conf import jobs_settings
from .models import Job, JobDependency, RunWhen, Workflow, unique_slot
from .models.inserting import insert_new_jobs
from .models.tables import raise_if_missing_table
from .options import (
    ENQUEUE_OPTIONS,
    QUEUE_MAX_LENGTH,
    check_priority,
)

if TYPE_CHECKING:
    from .jobtypes import JobType

#: The longest ``delay=``: a longer one is a mistake (milliseconds taken for seconds...).
MAX_DELAY = timedelta(days=3650)
#: The latest ``run_at=``: far enough for any plan, short of what databases can store.
LATEST_RUN_AT = datetime(9000, 1, 1, tzinfo=UTC)

__all__ = [
    "ENQUEUE_OPTIONS", "build_row", "enqueue_job", "enqueue_many", "enqueue_workflow",
]


def enqueue_job(job_type: JobType, kwargs: dict[str, Any]) -> Job:
    options = {key: kwargs.pop(key) for key in list(kwargs) if key in ENQUEUE_OPTIONS}
    after = options.pop("after", None)
    job_type.check_payload(kwargs)
    row, text = RowOptions(job_type, **options).row_and_json(kwargs)
    if after is not None or _workflows.current_workflow() is not None:
        try:
            return _workflows.enqueue_after(job_type, row, text, after)
        except (OperationalError, ProgrammingError) as exc:
            raise_if_missing_table(exc)
            raise
    try:
        if row.unique_key is None:
            insert_new_jobs([row], jobs_settings.DATABASE, data_json=[text])
        else:
            row = _save_unique(job_type, row)
    except (OperationalError, ProgrammingError) as exc:
        raise_if_missing_table(exc)
        raise
    return _maybe_eager([row])[0]


def enqueue_many(
    job_type: JobType, payloads: Iterable[Mapping[str, Any]], **options: Any
) -> list[Job]:
    """One bulk write for many payloads sharing ``options``; all or nothing."""
    unknown = set(options) - ENQUEUE_OPTIONS
    if "after" in options:
        raise TypeError("enqueue_many() cannot take after=: enqueue each job with "
                        "enqueue(after=...), or build a group() of steps")
    if unknown:
        raise TypeError(f"enqueue_many() got unknown options: {', '.join(sorted(unknown))}")
    shared = RowOptions(job_type, now=clock.now(), **options)
    check = job_type.payload_checker()
    rows, texts = [], []
    for index, data in enumerate(payloads):
        if not isinstance(data, Mapping):
            raise TypeError(
                f"enqueue_many() item {index} is {type(data).__name__}; each must be a dict"
            )
        try:
            check(data)
        except TypeError as exc:
            raise TypeError(f"enqueue_many() payload[{index}]: {exc}") from None
        row, text = shared.row_and_json(dict(data), what=f"payload[{index}]")
        rows.append(row)
        texts.append(text)
    if not rows:
        return []
    db = jobs_settings.DATABASE
    try:
        if shared.unique_key is not None:
            # Uniqueness is decided row by row against what is already pending.
            with transaction.atomic(using=db):
                saved = [_save_unique(job_type, row) for row in rows]
        else:
            insert_new_jobs(rows, db, data_json=texts)
            saved = rows
    except (OperationalError, ProgrammingError) as exc:
        raise_if_missing_table(exc)
        raise
    return _maybe_eager(saved)


def _maybe_eager(rows: list[Job]) -> list[Job]:
    """In eager mode (``django_jobs.testing.eager()``) run the new rows at once, here."""
    return eager.run_if_eager(rows)


def build_row(job_type: JobType, data: dict[str, Any], **options: Any) -> Job:
    """An unsaved ``Job`` for one call, or a clear error naming the bad argument."""
    job_type.check_payload(data)
    return RowOptions(job_type, **options).row_and_json(data)[0]


def _check_delay(delay: Any) -> timedelta:
    """``delay=`` as a ``timedelta``, or a clear error naming the option and its range."""
    if isinstance(delay, bool) or not isinstance(delay, (timedelta, int, float)):
        raise TypeError(f"delay must be a timedelta or seconds, not {delay!r}")
    if isinstance(delay, timedelta):
        in_range = timedelta(0) <= delay <= MAX_DELAY
    else:
        # Compared as numbers first: NaN, infinities and huge values cannot become timedeltas.
        in_range = math.isfinite(delay) and 0 <= delay <= MAX_DELAY.total_seconds()
    if not in_range:
        raise ValueError(
            f"delay must be from 0 to {MAX_DELAY.days} days ({MAX_DELAY.days // 365} years), "
            f"not {delay!r}"
        )
    return delay if isinstance(delay, timedelta) else timedelta(seconds=delay)


class RowOptions:
    """The enqueue options of a call, checked once, and the rows they make.

    ``enqueue_many()`` shares one set of options among thousands of payloads: only the payload
    and what derives from it (the lock key) is looked at row by row.
    """

    def __init__(
        self,
        job_type: JobType,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        created_by: Any = None,
        meta: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        now = now or clock.now()
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise TypeError(
                f"meta of job {job_type.name!r} must be a dict, not {type(meta).__name__}"
            )
        if meta:
            payload.dumps(meta, what=f"meta of job {job_type.name!r}")
        if run_at is not None and delay is not None:
            raise TypeError("give run_at= or delay=, not both")
        if run_at is not None:
            if not isinstance(run_at, datetime):
                raise TypeError(f"run_at must be a datetime, not {type(run_at).__name__}")
            if timezone.is_naive(run_at):
                raise ValueError("run_at must be an aware datetime (use django.utils.timezone)")
            if run_at > LATEST_RUN_AT:
                raise ValueError(
                    f"run_at must be no later than {LATEST_RUN_AT:%Y-%m-%d}, not {run_at}"
                )
        elif delay is not None:
            run_at = now + _check_delay(delay)
        else:
            run_at = now
        if priority is None:
            priority = job_type.priority
        check_priority(priority)
        queue = job_type.queue if queue is None else queue
        if not isinstance(queue, str) or not queue or len(queue) > QUEUE_MAX_LENGTH:
            raise ValueError(
                f"queue must be a non-empty string of at most {QUEUE_MAX_LENGTH} chars"
            )
        if unique_key is None and job_type.unique is not None:
            unique_key = job_type.name
        if unique_key is not None and (not isinstance(unique_key, str) or len(unique_key) > 255):
            raise ValueError("unique_key must be a string of at most 255 characters")
        self.job_type = job_type
        self.unique_key = unique_key
        self.limit = jobs_settings.MAX_PAYLOAD_BYTES
        self.template = _template(
            name=job_type.name,
            queue=queue,
            priority=priority,
            run_at=run_at,
            created_at=now,
            max_attempts=job_type.max_attempts,
            unique_key=unique_key,
            created_by_id=getattr(created_by, "pk", created_by),
            meta=meta,
        )

    def row_and_json(self, data: dict[str, Any], *, what: str = "payload") -> tuple[Job, str]:
        """The unsaved row for ``data``, and ``data`` as the JSON it was checked as."""
        job_type = self.job_type
        text = payload.dumps(data, what=f"{what} of job {job_type.name!r}", limit=self.limit)
        values = self.template.copy()
        values[_ID] = uuid.uuid4()
        values[_DATA] = data
        values[_LOCK_KEY] = job_type.lock_key_for(data)
        values[_LIMIT_KEY] = job_type.limit_key_for(data)
        return _instantiate(values), text


def _instantiate(values: list[Any]) -> Job:
    """A ``Job`` from every field's value, in field order.

    With a value for every field, ``Model.__init__`` only sets them one by one and sends
    ``pre_init``/``post_init``; filling the instance's ``__dict__`` at once, as unpickling does,
    halves the cost of ``enqueue_many()``. When anything listens to those signals for ``Job``,
    the regular constructor runs so that it hears them.
    """
    if pre_init.has_listeners(Job) or post_init.has_listeners(Job):
        return Job(*values)
    job = Job.__new__(Job)
    job._state = ModelState()
    job.__dict__.update(zip(_ATTNAMES, values, strict=True))
    return job


def _template(**columns: Any) -> list[Any]:
    """Every concrete field of ``Job`` in order: the value given, or its default."""
    values = _defaults().copy()
    for name, value in columns.items():
        values[_INDEX[name]] = value
    return values


@functools.cache
def _defaults() -> list[Any]:
    """The defaults of ``Job``'s fields, computed once.

    Fields with a callable default (``uuid4``, ``dict``, ``now``) are all set by ``RowOptions``
    (a test holds that), so no mutable default is shared between rows.
    """
    return [
        None if field.attname in _SET_BY_ROW_OPTIONS else field.get_default()
        for field in Job._meta.concrete_fields
    ]


_ATTNAMES = tuple(field.attname for field in Job._meta.concrete_fields)
_INDEX = {attname: index for index, attname in enumerate(_ATTNAMES)}
_ID, _DATA, _LOCK_KEY = _INDEX["id"], _INDEX["data"], _INDEX["lock_key"]
_LIMIT_KEY = _INDEX["limit_key"]
#: What ``RowOptions`` always sets, so these fields' callable defaults are never needed.
_SET_BY_ROW_OPTIONS = frozenset(
    {"id", "data", "lock_key", "name", "queue", "priority", "run_at", "created_at",
     "max_attempts", "unique_key", "created_by_id", "meta", "limit_key"}
)


def _save_unique(job_type: JobType, row: Job) -> Job:
    """Apply ``unique``: "skip" keeps the pending job, "replace" cancels it for the new one."""
    row.unique_slot = unique_slot(job_type.name, row.unique_key)
    return Job.objects.using(jobs_settings.DATABASE).insert_scheduled(
        row, replace=job_type.unique == "replace"
    )


def enqueue_workflow(node: Node, *, name: str = "", on_failure: str = "cancel") -> Workflow:
    """Write ``node`` (a step, chain or group) as a new workflow, in one transaction."""
    if not isinstance(node, (Step, Chain, Group)):
        raise TypeError(f"cannot enqueue {type(node).__name__} as a workflow")
    new = Workflow(name=_workflows.check_name(name), on_failure=_workflows.check_policy(on_failure),
                   created_at=clock.now())
    builder = _Builder(new)
    builder.add(node, after=[], run_when=RunWhen.SUCCESS)
    with transaction.atomic(using=jobs_settings.DATABASE):
        new.save(using=jobs_settings.DATABASE, force_insert=True)
        builder.write()
    _workflows.run_if_eager(new)
    return new


class _Builder:
    """The rows and edges of a workflow, built in memory, then written with two bulk inserts."""

    def __init__(self, new: Workflow) -> None:
        self.workflow = new
        self.rows: list[Job] = []
        self.texts: list[str] = []
        self.edges: list[JobDependency] = []
        self.now = new.created_at

    def add(self, node: Node, *, after: list[Job], run_when: str) -> list[Job]:
        """Add ``node`` to run after ``after``; return the rows that end it."""
        if isinstance(node, Step):
            return [self._step(node, after, run_when)]
        if isinstance(node, Chain):
            ends = after
            for index, item in enumerate(node.items):
                # Only the chain's first item waits on the chain's own condition.
                ends = self.add(item, after=ends, run_when=run_when if index == 0
                                else RunWhen.SUCCESS)
            return ends
        ends = []
        for item in node.items:
            ends += self.add(item, after=after, run_when=run_when)
        for callback, when in ((node.on_success, RunWhen.SUCCESS),
                               (node.on_failure, RunWhen.FAILURE),
                               (node.on_finish, RunWhen.FINISH)):
            if callback is not None:
                self.add(callback, after=ends, run_when=when)
        return ends

    def _step(self, step: Step, after: list[Job], run_when: str) -> Job:
        job_type: JobType = step.job_type
        _workflows.refuse_unique(job_type)
        # One microsecond apart: rows list (and are claimed, at equal priority) in the order
        # they were given.
        now = self.now + timedelta(microseconds=len(self.rows))
        row, text = RowOptions(job_type, now=now, **step.options).row_and_json(
            dict(step.data))
        row.workflow_id = self.workflow.pk
        if after:
            _workflows.make_waiting(row, len(after), run_when)
            for position, dependency in enumerate(after):
                self.edges.append(JobDependency(
                    job_id=row.pk, depends_on_id=dependency.pk, workflow_id=self.workflow.pk,
                    position=position,
                ))
        self.rows.append(row)
        self.texts.append(text)
        return row

    def write(self) -> None:
        insert_new_jobs(self.rows, jobs_settings.DATABASE, data_json=self.texts)
        JobDependency.objects.bulk_create(self.edges, batch_size=1000)
