"""Live counters of one adapter process, shared by the job threads, the producer and the
sampler.

Latency percentiles use a rolling window of per-second log-bucketed histograms: bounded
memory whatever the rate or the run's length, and about three significant digits (bucket
width 0.1 %), as the harness contract asks.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

_RATIO = 1.001
_LOG_RATIO = math.log(_RATIO)
_FLOOR_MS = 0.001  # values below 1 us share the lowest bucket


def _bucket(value_ms: float) -> int:
    return int(round(math.log(max(value_ms, _FLOOR_MS)) / _LOG_RATIO))


def _value(bucket: int) -> float:
    return _RATIO ** bucket


class WindowedHistogram:
    """Percentiles over the last ``window_s`` seconds, one histogram per second."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._slots: dict[int, Counter[int]] = {}
        self._lock = threading.Lock()

    def record(self, value_ms: float) -> None:
        second = int(time.monotonic())
        bucket = _bucket(value_ms)
        with self._lock:
            slot = self._slots.get(second)
            if slot is None:
                slot = self._slots[second] = Counter()
                self._expire(second)
            slot[bucket] += 1

    def _expire(self, now_second: int) -> None:
        oldest = now_second - int(self.window_s)
        for second in [s for s in self._slots if s < oldest]:
            del self._slots[second]

    def percentiles(self, *quantiles: float) -> list[float]:
        now_second = int(time.monotonic())
        merged: Counter[int] = Counter()
        with self._lock:
            self._expire(now_second)
            for second, slot in self._slots.items():
                if second > now_second - self.window_s:
                    merged.update(slot)
        total = sum(merged.values())
        if not total:
            return [0.0 for _ in quantiles]
        ordered = sorted(merged.items())
        out = []
        for q in quantiles:
            rank = max(1, math.ceil(q * total))
            seen = 0
            for bucket, count in ordered:
                seen += count
                if seen >= rank:
                    out.append(round(_value(bucket), 3))
                    break
        return out


class Telemetry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enqueued = 0
        self.enqueue_errors = 0
        self.completed = 0
        self.failed = 0
        self.pickup = WindowedHistogram(30.0)
        self.producer_call = WindowedHistogram(30.0)

    def picked_up(self, latency_ms: float) -> None:
        self.pickup.record(latency_ms)

    def add_enqueued(self, n: int, call_ms: float) -> None:
        with self._lock:
            self.enqueued += n
        self.producer_call.record(call_ms)

    def add_enqueue_error(self, n: int) -> None:
        with self._lock:
            self.enqueue_errors += n

    def finished(self, status: str) -> None:
        with self._lock:
            if status == "succeeded":
                self.completed += 1
            else:
                self.failed += 1

    def counters(self) -> tuple[int, int, int, int]:
        with self._lock:
            return self.enqueued, self.completed, self.failed, self.enqueue_errors


TELEMETRY = Telemetry()
