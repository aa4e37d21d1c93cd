"""Eager mode: ``enqueue()`` runs the new rows at once, in the enqueuing process.

The switch lives here, below the code that writes rows, so ``enqueue()`` can look at it. What
runs the rows (the worker's claim and a run on this thread) lives above, in
``django_jobs.worker.inprocess``, which installs itself here when it loads (the app's
``ready()`` loads it). ``django_jobs.testing.eager()`` is the public face.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .conf import jobs_settings


@dataclass
class EagerState:
    enabled: bool = False
    propagate: bool = False


_eager = EagerState()
_eager_lock = threading.Lock()
_runner: Callable[..., list[Any]] | None = None


def eager_state() -> EagerState:
    """Eager mode as set by ``testing.eager()``, or by ``DJANGO_JOBS["EAGER"]``."""
    if _eager.enabled:
        return _eager
    if jobs_settings.EAGER:
        return EagerState(enabled=True, propagate=False)
    return _eager


def set_eager(enabled: bool, propagate: bool = False) -> EagerState:
    """Switch eager mode (process-wide); return the previous state."""
    global _eager
    with _eager_lock:
        previous, _eager = _eager, EagerState(enabled=enabled, propagate=propagate)
    return previous


def restore_eager(state: EagerState) -> None:
    global _eager
    with _eager_lock:
        _eager = state


def install_runner(runner: Callable[..., list[Any]]) -> None:
    """What runs rows in eager mode: ``runner(rows, propagate=...)``."""
    global _runner
    _runner = runner


def run_if_eager(rows: list[Any]) -> list[Any]:
    """In eager mode, run the new rows now and return them as they ended; else as they are."""
    state = eager_state()
    if not state.enabled:
        return rows
    if _runner is None:
        raise RuntimeError("eager mode needs django_jobs in INSTALLED_APPS (its ready() loads "
                           "the in-process runner)")
    return _runner(rows, propagate=state.propagate)
