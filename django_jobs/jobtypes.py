"""Job types: what ``@job`` declares, validated once at start-up, and the registry holding them.

This is the layer of declarations: it imports no model, because ``@job`` runs while Django
populates its apps (``jobs.py`` modules, and this package itself, load before the models are
ready). A ``JobType``'s ``enqueue()`` and ``run()`` reach the modules that write rows when they
are called. The public ``django_jobs.registry`` is the control API (``django_jobs.control``)
composed over the ``registry`` of this module.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal, overload

from django.core.exceptions import ImproperlyConfigured

from .composition import Step
from .exceptions import LockKeyError, UnknownJob
from .limits import Rate, check_concurrency, parse_rate
from .options import (
    ENQUEUE_OPTIONS,
    NAME_MAX_LENGTH,
    QUEUE_MAX_LENGTH,
    check_priority,
    positional_error,
)
from .schedule import Schedule, ScheduleError, get_zone, validate_cron

if TYPE_CHECKING:
    from .models import Job

#: What ``JobType.run()`` calls: running a job is a layer above its declaration, so the
#: runner installs itself here when it loads (``django_jobs.runner``, loaded by ``ready()``).
_run_now: Callable[[JobType, dict[str, Any]], Any] | None = None

CATCH_UP_POLICIES = ("latest", "skip", "all")
UNIQUE_POLICIES = ("skip", "replace")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def install_runner(run_now: Callable[[JobType, dict[str, Any]], Any]) -> None:
    global _run_now
    _run_now = run_now


def env_flag_name(name: str) -> str:
    """``billing:invoice-sync`` -> ``JOBS_BILLING_INVOICE_SYNC_ENABLED``."""
    return "JOBS_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_ENABLED"


def _seconds(value: Any, what: str, *, allow_zero: bool) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise ValueError(f"{what} must be a timedelta or a number of seconds, not {value!r}")
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta < timedelta(0) or (delta == timedelta(0) and not allow_zero):
        least = "zero or positive" if allow_zero else "positive"
        raise ValueError(f"{what} must be {least}, not {value!r}")
    return delta


@dataclass(frozen=True, eq=False)
class JobType:
    """One registered job: its function and its options, validated."""

    func: Callable[..., Any]
    name: str
    cron: str | None = None
    every: timedelta | None = None
    next_run: Callable[[datetime | None], datetime] | None = None
    timezone: str | tzinfo | None = None
    catch_up: Literal["latest", "skip", "all"] = "latest"
    overlap: bool | int = False
    queue: str = "default"
    priority: int = 0
    lock: bool | Callable[[dict[str, Any]], str] | None = None
    concurrency: int | None = None
    concurrency_key: Callable[[dict[str, Any]], str] | None = None
    rate_limit: str | None = None
    max_snoozes: int = 100
    max_attempts: int = 1
    retry_delay: timedelta = timedelta(seconds=30)
    retry_backoff: float = 2.0
    timeout: timedelta = timedelta(minutes=5)
    keep: timedelta | None = timedelta(days=7)
    unique: Literal["skip", "replace"] | None = None
    precheck: Callable[..., str | None] | None = None
    on_error: Callable[..., Any] | None = None
    on_stale: Callable[..., Any] | None = None
    enabled: bool = True
    module: str = field(default="", compare=False)

    # -- derived -----------------------------------------------------------------------------

    @property
    def is_recurring(self) -> bool:
        return bool(self.cron or self.every or self.next_run)

    @property
    def schedule(self) -> Schedule | None:
        if not self.is_recurring:
            return None
        return Schedule(cron=self.cron, every=self.every, next_run=self.next_run,
                        timezone=self.timezone)

    @property
    def max_pending_occurrences(self) -> int:
        """How many occurrences may be scheduled or running at once (``overlap``)."""
        return 1 if self.overlap is False else int(self.overlap)

    @property
    def uses_lock(self) -> bool:
        """Recurring jobs are locked unless told otherwise (or given a concurrency limit);
        others are not."""
        if self.lock is None:
            return self.is_recurring and self.concurrency is None
        return bool(self.lock)

    @property
    def rate(self) -> Rate | None:
        """``rate_limit`` parsed (it was validated at registration)."""
        return None if self.rate_limit is None else parse_rate(self.rate_limit)

    @property
    def has_limits(self) -> bool:
        """A concurrency or rate limit of its own (``lock`` is apart)."""
        return self.concurrency is not None or self.rate_limit is not None

    def limit_key_for(self, data: Mapping[str, Any]) -> str | None:
        """The key its concurrency and rate limits count under (``Job.limit_key``), or
        ``None`` without limits: the name, or ``"<name>:<key>"`` with a ``concurrency_key``."""
        if not self.has_limits:
            return None
        if self.concurrency_key is None:
            return self.name
        try:
            key = self.concurrency_key(dict(data))
        except Exception as exc:
            raise LockKeyError(
                f"the concurrency_key function of job {self.name!r} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(key, str) or not key:
            raise TypeError(
                f"the concurrency_key function of job {self.name!r} returned {key!r}; it must "
                "return a non-empty string"
            )
        return f"{self.name}:{key}"

    def lock_key_for(self, data: Mapping[str, Any]) -> str | None:
        """The ``JobTypeLock`` key a run with ``data`` must hold, or ``None``."""
        if not self.uses_lock:
            return None
        if callable(self.lock) and self.lock is not True:
            try:
                key = self.lock(dict(data))
            except Exception as exc:
                raise LockKeyError(
                    f"the lock function of job {self.name!r} raised {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(key, str) or not key:
                raise TypeError(
                    f"the lock function of job {self.name!r} returned {key!r}; it must return a "
                    "non-empty string"
                )
            return f"{self.name}:{key}"
        return self.name

    @property
    def env_flag(self) -> str:
        return env_flag_name(self.name)

    def env_enabled(self) -> bool | None:
        """What ``JOBS_<NAME>_ENABLED`` says, or ``None`` when it is unset or unreadable."""
        raw = os.environ.get(self.env_flag)
        if raw is None:
            return None
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        return None

    @property
    def is_enabled(self) -> bool:
        """The environment wins over ``enabled=`` so an operator can switch a job off."""
        from_env = self.env_enabled()
        return self.enabled if from_env is None else from_env

    # -- the payload -------------------------------------------------------------------------

    @functools.cached_property
    def signature(self) -> inspect.Signature | None:
        """The function's signature, read once; ``None`` if Python cannot tell it."""
        try:
            return inspect.signature(self.func)
        except (TypeError, ValueError):
            return None

    def check_payload(self, data: Mapping[str, Any]) -> None:
        """``TypeError`` naming the job and the argument if the function cannot take ``data``.

        Caught at enqueue, where the mistake is made, rather than on a worker three attempts
        later.
        """
        if self.signature is None:
            return
        try:
            self.signature.bind(None, **data)
        except TypeError as exc:
            raise TypeError(self._payload_problem(data) or f"job {self.name!r}: {exc}") from None

    @functools.cached_property
    def _payload_keys(self) -> tuple[frozenset[str] | None, frozenset[str]]:
        """``(accepted, required)`` keyword names; accepted is ``None`` with ``**kwargs``."""
        if self.signature is None:
            return None, frozenset()
        params = list(self.signature.parameters.values())[1:]
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        accepted = None if takes_any else frozenset(p.name for p in named)
        return accepted, frozenset(p.name for p in named if p.default is p.empty)

    def payload_checker(self) -> Callable[[Mapping[str, Any]], None]:
        """A cheap check of many payloads (``enqueue_many()``): key sets, no binding."""
        accepted, required = self._payload_keys

        def check(data: Mapping[str, Any]) -> None:
            keys = data.keys()
            if (accepted is not None and not keys <= accepted) or not required <= keys:
                self.check_payload(data)

        return check

    def _payload_problem(self, data: Mapping[str, Any]) -> str | None:
        # An unknown name first: it is usually the misspelling of the missing one.
        accepted, required = self._payload_keys
        if accepted is not None:
            unknown = sorted(set(data) - accepted)
            if unknown:
                close = difflib.get_close_matches(unknown[0], sorted(accepted), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                takes = ", ".join(sorted(accepted)) or "no arguments"
                plural = "s" if len(unknown) > 1 else ""
                return (f"job {self.name!r} got the unknown argument{plural} "
                        f"{', '.join(map(repr, unknown))}{hint}; it takes: {takes}")
        missing = sorted(required - set(data))
        if missing:
            return (f"job {self.name!r} needs the argument{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(map(repr, missing))}; it was not given")
        return None

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, bypassing rows and locks (handy in unit tests)."""
        return self.func(*args, **kwargs)

    def enqueue(self, *args: Any, **data: Any) -> Job:
        """Schedule one run; see ``django_jobs.enqueuing.enqueue`` for the options."""
        # Imported when called: this module loads with the package, while Django populates its
        # apps, and the modules that write rows need the models (see the module docstring).
        from .enqueuing import enqueue_job

        if args:
            raise positional_error(self.name, "enqueue", args)
        return enqueue_job(self, data)

    def enqueue_many(self, payloads: Iterable[Mapping[str, Any]], **options: Any) -> list[Job]:
        """Schedule many runs with one bulk ``INSERT``."""
        from .enqueuing import enqueue_many  # when called: see enqueue()

        return enqueue_many(self, payloads, **options)

    def step(self, *args: Any, **data: Any) -> Step:
        """One step of a workflow (``chain()``, ``group()``): this job with ``data``, not yet
        enqueued. Takes the enqueue options too, except ``after`` and ``unique_key``."""
        if args:
            raise positional_error(self.name, "step", args)
        options = {key: data.pop(key) for key in list(data) if key in ENQUEUE_OPTIONS}
        for option in ("after", "unique_key"):
            if option in options:
                raise TypeError(f"step() of job {self.name!r} cannot take {option}=: "
                                + ("the workflow decides what runs after what"
                                   if option == "after" else "workflow members are not unique"))
        self.check_payload(data)
        return Step(self, data, options)

    def run(self, *args: Any, **data: Any) -> Any:
        """Run now in this process, with a row, the lock and the bookkeeping; return the result."""
        if _run_now is None:
            raise RuntimeError(
                "run() needs django_jobs in INSTALLED_APPS (its ready() loads the runner)"
            )

        if args:
            raise positional_error(self.name, "run", args)
        return _run_now(self, data)

    def __repr__(self) -> str:
        return f"<JobType {self.name}>"


_OPTION_NAMES = tuple(f.name for f in fields(JobType) if f.name not in ("func", "module"))


def build_job_type(func: Callable[..., Any], options: dict[str, Any]) -> JobType:
    """Validate ``@job`` options; raise ``ImproperlyConfigured`` naming the job and its module."""
    module = getattr(func, "__module__", "?")
    name = options.get("name") or default_name(func)
    where = f"@job {name!r} in {module}"
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        hint = ""
        close = difflib.get_close_matches(unknown[0], _OPTION_NAMES, n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        raise ImproperlyConfigured(
            f"{where}: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}{hint}"
        )
    try:
        values = _validate_options(func, name, options)
    except (ValueError, TypeError, ScheduleError) as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None
    return JobType(func=func, module=module, **values)


def _validate_options(func: Callable[..., Any], name: Any, options: dict[str, Any]) -> dict:
    if not callable(func):
        raise TypeError(f"@job decorates a function, not {func!r}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string")
    if len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"name is longer than {NAME_MAX_LENGTH} characters")
    _check_signature(func)
    values: dict[str, Any] = dict(options, name=name)
    _check_parameters(func, recurring=any(
        options.get(key) is not None for key in ("cron", "every", "next_run")
    ))

    schedules = [key for key in ("cron", "every", "next_run") if options.get(key) is not None]
    if len(schedules) > 1:
        raise ValueError(f"give only one of cron, every and next_run (got {', '.join(schedules)})")
    if options.get("cron") is not None:
        validate_cron(options["cron"])
    if options.get("every") is not None:
        values["every"] = _seconds(options["every"], "every", allow_zero=False)
    if options.get("next_run") is not None and not callable(options["next_run"]):
        raise TypeError("next_run must be a callable (last_run_at) -> datetime")
    if options.get("timezone") is not None:
        if not isinstance(options["timezone"], (str, tzinfo)):
            raise TypeError("timezone must be a zone name such as 'Europe/Paris'")
        get_zone(options["timezone"], "UTC")
    if "catch_up" in options and options["catch_up"] not in CATCH_UP_POLICIES:
        raise ValueError(
            f"catch_up must be one of {', '.join(map(repr, CATCH_UP_POLICIES))}, "
            f"not {options['catch_up']!r}"
        )
    if "overlap" in options:
        overlap = options["overlap"]
        if overlap is not False and (
            isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1
        ):
            raise ValueError(
                "overlap must be False or an integer of at least 1 (the most occurrences "
                f"scheduled or running at once), not {overlap!r}"
            )
        if overlap is not False and not schedules:
            raise ValueError("overlap applies to recurring jobs (cron, every or next_run) only")
    if "queue" in options:
        queue = options["queue"]
        if not isinstance(queue, str) or not queue or len(queue) > QUEUE_MAX_LENGTH:
            raise ValueError(
                f"queue must be a non-empty string of at most {QUEUE_MAX_LENGTH} characters"
            )
    if "priority" in options:
        check_priority(options["priority"])
    if "lock" in options:
        lock = options["lock"]
        if lock is not None and not isinstance(lock, bool) and not callable(lock):
            raise TypeError("lock must be True, False or a callable (data) -> str")
    _check_limits(options, values)
    if "max_attempts" in options:
        attempts = options["max_attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"max_attempts must be an integer of at least 1, not {attempts!r}")
    if "retry_delay" in options:
        values["retry_delay"] = _seconds(options["retry_delay"], "retry_delay", allow_zero=True)
    if "retry_backoff" in options:
        backoff = options["retry_backoff"]
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 1:
            raise ValueError(f"retry_backoff must be a number of at least 1, not {backoff!r}")
        values["retry_backoff"] = float(backoff)
    if "timeout" in options:
        values["timeout"] = _seconds(options["timeout"], "timeout", allow_zero=False)
    if options.get("keep") is not None:
        values["keep"] = _seconds(options["keep"], "keep", allow_zero=True)
    if options.get("unique") is not None and options["unique"] not in UNIQUE_POLICIES:
        raise ValueError(f"unique must be 'skip', 'replace' or None, not {options['unique']!r}")
    for hook in ("precheck", "on_error", "on_stale"):
        if options.get(hook) is not None and not callable(options[hook]):
            raise TypeError(f"{hook} must be a callable")
    if "enabled" in options and not isinstance(options["enabled"], bool):
        raise TypeError(f"enabled must be True or False, not {options['enabled']!r}")
    return values


def _check_limits(options: dict[str, Any], values: dict[str, Any]) -> None:
    concurrency = options.get("concurrency")
    if concurrency is not None:
        check_concurrency(concurrency)
        if options.get("lock"):
            raise ValueError(
                "give lock or concurrency, not both: lock=True is a concurrency limit of 1 "
                "(per key with a lock callable)"
            )
    if options.get("rate_limit") is not None:
        parse_rate(options["rate_limit"])
    key = options.get("concurrency_key")
    if key is not None:
        if not callable(key):
            raise TypeError(f"concurrency_key must be a callable (data) -> str, not {key!r}")
        if concurrency is None and options.get("rate_limit") is None:
            raise ValueError("concurrency_key needs concurrency or rate_limit: it names what "
                             "they count per key")
    snoozes = options.get("max_snoozes", 100)
    if isinstance(snoozes, bool) or not isinstance(snoozes, int) or snoozes < 0:
        raise ValueError(f"max_snoozes must be an integer of at least 0, not {snoozes!r}")


def _check_signature(func: Callable[..., Any]) -> None:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return
    positional = [
        p for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if not positional:
        raise TypeError(
            f"{func.__qualname__}() must take the JobContext as its first positional argument"
        )


def _check_parameters(func: Callable[..., Any], *, recurring: bool) -> None:
    """Refuse parameters that no enqueue could ever fill."""
    try:
        params = list(inspect.signature(func).parameters.values())[1:]
    except (TypeError, ValueError):
        return
    for param in params:
        if param.name in ENQUEUE_OPTIONS and param.kind in (
            param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY
        ):
            raise ValueError(
                f"parameter {param.name!r} is named like an enqueue() option, so it could never "
                "be given as payload; rename it"
            )
        if recurring and param.default is param.empty and param.kind in (
            param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY
        ):
            raise ValueError(
                f"parameter {param.name!r} has no default, but a recurring job runs with an "
                "empty payload; give it a default or drop the schedule"
            )


def default_name(func: Callable[..., Any]) -> str:
    """``<app_label>.<function>``: the label of the app whose module defines the function."""
    module = getattr(func, "__module__", "") or ""
    label = None
    from django.apps import apps

    if apps.apps_ready:
        config = apps.get_containing_app_config(module)
        if config is not None:
            label = config.label
    if label is None:
        label = module.split(".")[0] or "jobs"
    return f"{label}.{func.__name__}"


class Registry:
    """Every registered job type, by name. ``django_jobs.registry`` is the one instance."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> JobType:
        existing = self._types.get(job_type.name)
        if existing is not None and not _same_definition(existing, job_type):
            raise ImproperlyConfigured(
                f"@job {job_type.name!r} in {job_type.module} is registered twice: it is already "
                f"defined by {existing.module}.{existing.func.__qualname__}. Give one of them "
                "another name=."
            )
        self._types[job_type.name] = job_type
        return job_type

    def unregister(self, name: str) -> None:
        self._types.pop(name, None)

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._types), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownJob(f"no job named {name!r} is registered{hint}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self):
        return iter(sorted(self._types.values(), key=lambda jt: jt.name))

    def __len__(self) -> int:
        return len(self._types)

    def __bool__(self) -> bool:
        # Always true, even when empty: autodiscover_modules() tests ``if register_to:``.
        return True

    # autodiscover_modules(register_to=registry) snapshots ``_registry`` before importing each
    # app's jobs.py and restores it when the import fails, so no half-registered types remain.
    @property
    def _registry(self) -> dict[str, JobType]:
        return self._types

    @_registry.setter
    def _registry(self, value: dict[str, JobType]) -> None:
        self._types = value

    def names(self) -> list[str]:
        return sorted(self._types)

    def disabled_names(self) -> list[str]:
        return sorted(name for name, jt in self._types.items() if not jt.is_enabled)


def _same_definition(a: JobType, b: JobType) -> bool:
    """A module imported twice (reload, autodiscover) re-registers the same function."""
    return a.module == b.module and a.func.__qualname__ == b.func.__qualname__


registry = Registry()


@overload
def job(func: Callable[..., Any], /) -> JobType: ...


@overload
def job(**options: Any) -> Callable[[Callable[..., Any]], JobType]: ...


def job(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a job: ``@job`` or ``@job(name=..., cron=..., ...)``; see the options table."""

    def decorate(f: Callable[..., Any]) -> JobType:
        return registry.register(build_job_type(f, options))

    if func is not None:
        return decorate(func)
    return decorate
