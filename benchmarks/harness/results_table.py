#!/usr/bin/env python3
"""Side-by-side markdown tables from the harness's ``summary.json`` files.

    python benchmarks/harness/results_table.py [--systems a,b] RUN_DIR [RUN_DIR...]

One section per run (scenario), one row per phase and metric, one column per system. Values
are the harness's own aggregates: medians (and peaks where said) of the 5 s samples of a phase;
latency samples are rolling 30 s percentiles of pickup latency (insert to start of the job).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

CHAOS_AND_RECOVERY = [
    ("jobs_lost", "jobs_lost (enqueued − completed over chaos+recovery)"),
    ("chaos_recovery_time_s", "chaos_recovery_time_s (to 90 % of baseline)"),
    ("peak_idle_dead_tup", "peak dead tuples in the idle-in-tx phase"),
    ("recovery_halflife_s", "recovery_halflife_s (dead tuples ≤ 10 % of peak)"),
    ("recovery_to_baseline_s", "recovery_to_baseline_s"),
]


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def metric(phase: dict, name: str, key: str = "median"):
    return (phase.get("metrics", {}).get(name) or {}).get(key)


def table_bytes(run_dir: Path, system: str) -> dict[str, float]:
    """Last total_relation_size_mb per table of ``system`` in raw.csv (sum)."""
    path = run_dir / "raw.csv"
    if not path.exists():
        return {}
    last: dict[str, tuple[float, float]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            if row["system"] != system or row["metric"] != "total_relation_size_mb":
                continue
            t = float(row["elapsed_s"])
            if row["subject"] not in last or t >= last[row["subject"]][0]:
                last[row["subject"]] = (t, float(row["value"]))
    return {subject: v for subject, (_, v) in last.items()}


def render(run_dir: Path, order: list[str] | None = None) -> str:
    summary = json.loads((run_dir / "summary.json").read_text())
    systems = list(summary["systems"])
    if order:
        systems.sort(key=lambda s: order.index(s) if s in order else len(order))
    phases = [p for p in summary["phases"] if p["type"] != "warmup"]
    out = [f"### `{summary.get('scenario') or 'custom'}` — `{summary['run_id']}`", ""]
    shape = " → ".join(f"{p['label']} ({p['type']}, {p['duration_s']} s)"
                       for p in summary["phases"])
    out += [f"Phases: {shape}.", ""]
    out.append("| phase | metric | " + " | ".join(systems) + " |")
    out.append("|---|---|" + "---:|" * len(systems))
    rows = [
        ("completion_rate", "median", "completions/s (median)", 1),
        ("enqueue_rate", "median", "enqueued/s (median)", 1),
        ("claim_p50_ms", "median", "pickup p50, ms (median of 30 s windows)", 1),
        ("claim_p95_ms", "median", "pickup p95, ms (median)", 1),
        ("claim_p99_ms", "median", "pickup p99, ms (median)", 1),
        ("claim_p99_ms", "peak", "pickup p99, ms (peak)", 1),
        ("queue_depth", "median", "due backlog (median)", 0),
        ("queue_depth", "peak", "due backlog (peak)", 0),
    ]
    for phase in phases:
        label = phase["label"]
        blocks = [summary["systems"][s]["phases"].get(label, {}) for s in systems]
        for name, key, title, digits in rows:
            values = [metric(b, name, key) for b in blocks]
            if all(v is None for v in values):
                continue
            out.append(f"| {label} | {title} | "
                       + " | ".join(fmt(v, digits) for v in values) + " |")
        for key, title in [("median_dead_tup", "dead tuples, event tables (median)"),
                           ("peak_dead_tup", "dead tuples, event tables (peak)"),
                           ("autovacuum_count_delta", "autovacuum runs in phase")]:
            values = [b.get(key) for b in blocks]
            if any(v is not None for v in values):
                out.append(f"| {label} | {title} | "
                           + " | ".join(fmt(v, 0) for v in values) + " |")
        for key, title in CHAOS_AND_RECOVERY:
            values = [b.get(key) for b in blocks]
            if any(key in b for b in blocks):
                out.append(f"| {label} | {title} | "
                           + " | ".join(fmt(v, 1) for v in values) + " |")
    sizes = [table_bytes(run_dir, s) for s in systems]
    if any(sizes):
        out.append("| end of run | event tables + indexes, MB | "
                   + " | ".join(fmt(sum(s.values()), 1) if s else "—" for s in sizes) + " |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    order = None
    if argv[:1] == ["--systems"] and len(argv) > 1:
        order, argv = argv[1].split(","), argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for arg in argv:
        print(render(Path(arg), order))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
