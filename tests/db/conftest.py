"""Fixtures of the in-process tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def replace_func():
    """Swap the function of a registered job type (a frozen dataclass) for the test."""
    swapped = []

    def swap(job_type, func):
        swapped.append((job_type, job_type.func))
        object.__setattr__(job_type, "func", func)

    yield swap
    for job_type, func in reversed(swapped):
        object.__setattr__(job_type, "func", func)
