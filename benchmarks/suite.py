"""django-jobs against its peers, side by side: one command, one table.

    python benchmarks/suite.py                     # defaults: about 14 minutes on 2 cores
    python benchmarks/suite.py --jobs 5000         # the published table: about 21 minutes
    python benchmarks/suite.py --dbs postgres --runs 5 --jobs 20000
    scripts/bench                                   # the same, after starting the databases

Each system (django-jobs from this working tree, django-tasks-db, procrastinate) gets its own
virtualenv under ``benchmarks/.venvs/`` (created on first use, Python 3.12, the same Django for
all) and its own scratch database (``bench_<system>`` on PostgreSQL and MariaDB,
``/tmp/bench_<system>.sqlite3``). The per-system harnesses live in ``benchmarks/systems/``; this
driver only runs them, interleaved, and collects the JSON they print.

Workloads: 1. enqueue rate (one call each in autocommit, one call each in one transaction,
bulk); 2. drain rate of no-op jobs, 1 worker x 1 and the best of several processes x threads
configurations; 3. pickup latency of an idle worker; 4. idle cost; 5. claim time against table
size (django-jobs only). Figures are medians of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYSTEMS_DIR = HERE / "systems"
VENVS = HERE / ".venvs"

OURS = "django-jobs"
SYSTEMS = {
    # name: (harness script, pip requirements, databases it runs on)
    OURS: ("django_jobs_bench.py", ["-e", f"{ROOT}[postgres,mysql]", "Django>=6.0,<6.2"],
           ("postgres", "sqlite", "mariadb")),
    "django-tasks-db": ("tasks_db_bench.py",
                        ["django-tasks-db", "Django>=6.0,<6.2", "psycopg[binary]", "mysqlclient"],
                        ("postgres", "sqlite", "mariadb")),
    "procrastinate": ("procrastinate_bench.py",
                      ["procrastinate[django]", "Django>=6.0,<6.2", "psycopg[binary]"],
                      ("postgres",)),
}
VERSION_OF = {OURS: "django-rowjobs", "django-tasks-db": "django-tasks-db",
              "procrastinate": "procrastinate"}

# Drain configurations tried per system, as (processes, threads per process). 1x1 comes first
# and is always reported; the best of the others is reported as "best".
# django-tasks-db's db_worker runs one task at a time, so only processes vary; procrastinate's
# --concurrency is the number of jobs one worker runs at once.
# Kept short to bound the suite time; on 2 cores more than 2 processes only added contention
# in trial runs.
DRAIN_CONFIGS = {
    OURS: {"default": [(1, 1), (2, 2), (2, 4)], "sqlite": [(1, 1), (1, 4), (2, 2)]},
    "django-tasks-db": {"default": [(1, 1), (2, 1)]},
    "procrastinate": {"default": [(1, 1), (1, 16), (2, 8)]},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- virtualenvs ----------------------------------------------------------------------------

def find_python312(given: str | None) -> str:
    candidates = [given] if given else []
    candidates += [sys.executable, shutil.which("python3.12") or "",
                   *sorted(str(p) for p in Path("/root/.pyenv/versions").glob("3.12*/bin/python")),
                   shutil.which("python3.13") or ""]
    for c in candidates:
        if not c:
            continue
        try:
            out = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out == "True":
            return c
    raise SystemExit("Python >= 3.12 is needed (Django 6 runs the peers): pass --python")


def ensure_venv(system: str, python: str) -> str:
    _, reqs, _ = SYSTEMS[system]
    venv = VENVS / system
    py = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    want = hashlib.sha1(json.dumps([python, reqs]).encode()).hexdigest()
    if not py.exists():
        log(f"creating virtualenv {venv}")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    if not stamp.exists() or stamp.read_text() != want:
        log(f"installing {system} into {venv}")
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *reqs], check=True)
        stamp.write_text(want)
    return str(py)


def versions(py: str, system: str) -> dict:
    code = ("import importlib.metadata as m, sys, json; "
            f"print(json.dumps({{'python': sys.version.split()[0], 'django': m.version('Django'), "
            f"'package': m.version({VERSION_OF[system]!r})}}))")
    return json.loads(subprocess.run([py, "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


# --- running harnesses ----------------------------------------------------------------------

class Runner:
    def __init__(self, pythons: dict[str, str], timeout: float):
        self.pythons = pythons
        self.timeout = timeout

    def cmd(self, system: str, db: str, *args: str) -> list[str]:
        return [self.pythons[system], str(SYSTEMS_DIR / SYSTEMS[system][0]), db, *args]

    def run(self, system: str, db: str, *args: str, timeout: float | None = None) -> dict:
        cmd = self.cmd(system, db, *args)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=timeout or self.timeout, cwd=SYSTEMS_DIR)
        except subprocess.TimeoutExpired:
            log(f"  {system}/{db} {' '.join(args)}: timed out")
            return {"error": "timeout"}
        if proc.returncode != 0:
            log(f"  {system}/{db} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def start(self, system: str, db: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(system, db, *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=SYSTEMS_DIR)


def med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


# --- the suite ------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dbs", default="postgres,sqlite",
                   help="comma list of postgres, sqlite, mariadb (MariaDB: django-jobs and "
                        "django-tasks-db only)")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--jobs", type=int, default=2000,
                   help="jobs per enqueue/drain run (2,000 keeps the default suite under 15 "
                        "minutes on 2 cores; --jobs 5000 is the size of the published table)")
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    p.add_argument("--latency-jobs", type=int, default=200)
    p.add_argument("--gap", type=float, default=0.05, help="seconds between latency jobs")
    p.add_argument("--idle-seconds", type=float, default=30)
    p.add_argument("--idle-runs", type=int, default=1)
    p.add_argument("--depths", default="1000,100000,1000000",
                   help="table sizes for the claim-cost test (django-jobs)")
    p.add_argument("--skip", default="", help="comma list of: enqueue,drain,latency,idle,claim")
    p.add_argument("--python", help="Python >= 3.12 for the virtualenvs")
    p.add_argument("--timeout", type=float, default=300, help="seconds per harness call")
    p.add_argument("--json", help="also write all raw results to this file")
    p.add_argument("--markdown", help="also write the report to this file")
    p.add_argument("--render", metavar="JSON", help="only print the report of an earlier --json")
    a = p.parse_args()
    if a.render:
        raw = json.loads(Path(a.render).read_text())
        args = argparse.Namespace(**raw["args"])
        print(render(raw, args.dbs.split(","), list(raw["versions"]), args))
        return

    started = time.monotonic()
    dbs = [d for d in a.dbs.split(",") if d]
    systems = [s for s in a.systems.split(",") if s]
    skip = set(a.skip.split(","))
    python = find_python312(a.python)
    pythons = {s: ensure_venv(s, python) for s in systems}
    vers = {s: versions(pythons[s], s) for s in systems}
    runner = Runner(pythons, a.timeout)
    raw: dict = {"args": vars(a), "versions": vers, "results": {}}
    R = raw["results"]

    def put(db, system, key, value):
        if not key.endswith(("_stmts", "_xacts")):
            log(f"  {db} {system} {key}: "
                + (f"{value:,.1f}" if isinstance(value, (int, float)) else str(value)))
        R.setdefault(db, {}).setdefault(system, {}).setdefault(key, []).append(value)

    def on(db):
        return [s for s in systems if db in SYSTEMS[s][2]]

    for db in dbs:
        for s in on(db):
            out = runner.run(s, db, "setup", timeout=120)
            if "error" in out:
                raise SystemExit(f"setup of {s} on {db} failed: {out['error']}")

    for db in dbs:
        members = on(db)
        drain_best: dict[str, tuple] = {}
        for run in range(a.runs):
            # Interleave: each run visits the systems in a rotated order.
            order = members[run % len(members):] + members[:run % len(members)]
            log(f"{db}: run {run + 1}/{a.runs} ({', '.join(order)})")
            if "enqueue" not in skip:
                for mode in ("single", "atomic", "bulk"):
                    for s in order:
                        out = runner.run(s, db, "enqueue", "--jobs", str(a.jobs), "--mode", mode)
                        put(db, s, f"enqueue_{mode}", out.get("rate"))
            if "drain" not in skip:
                for s in order:
                    configs = DRAIN_CONFIGS[s].get(db, DRAIN_CONFIGS[s]["default"])
                    if run > 0:  # after the first run: 1x1 and the leading configuration
                        configs = list(dict.fromkeys([configs[0], drain_best[s]]))
                    for procs, threads in configs:
                        # Long-running workers, as deployed; the one-shot modes beside them.
                        out = runner.run(s, db, "drain", "--jobs", str(a.jobs), "--long",
                                         "--processes", str(procs), "--threads", str(threads))
                        put(db, s, f"drain_{procs}x{threads}", out.get("rate"))
                        put(db, s, f"drain_{procs}x{threads}_steady", out.get("steady_rate"))
                        put(db, s, f"drain_{procs}x{threads}_stmts", out.get("statements_per_job"))
                        put(db, s, f"drain_{procs}x{threads}_xacts", out.get("xacts_per_job"))
                        if (procs, threads) == configs[0] or run == 0:
                            out = runner.run(s, db, "drain", "--jobs", str(a.jobs),
                                             "--processes", str(procs), "--threads",
                                             str(threads))
                            put(db, s, f"oneshot_{procs}x{threads}", out.get("rate"))
                            put(db, s, f"oneshot_{procs}x{threads}_steady",
                                out.get("steady_rate"))
                    # The leader among every configuration, 1x1 included: for a system whose
                    # extra processes only contend, one process is its best.
                    drain_best[s] = max(
                        (c for c in DRAIN_CONFIGS[s].get(db, DRAIN_CONFIGS[s]["default"])
                         if med(R[db][s].get(f"drain_{c[0]}x{c[1]}", [])) is not None),
                        key=lambda c: med(R[db][s][f"drain_{c[0]}x{c[1]}"]),
                        default=(1, 1),
                    )
                    R[db][s]["drain_best_config"] = [f"{drain_best[s][0]}x{drain_best[s][1]}"]
            if "latency" not in skip:
                for s in order:
                    out = runner.run(s, db, "latency", "--jobs", str(a.latency_jobs),
                                     "--gap", str(a.gap))
                    for q in ("p50", "p95", "p99"):
                        put(db, s, f"latency_{q}", out.get(q))
            log(f"{db}: run {run + 1} done, {time.monotonic() - started:.0f} s so far")

    if "idle" not in skip:
        # Idle workers are measured all at once: each system has its own database (server
        # counters are per database) and its own process (CPU is per process).
        for _ in range(a.idle_runs):
            log(f"idle: {a.idle_seconds:.0f} s, every system and database at once")
            procs = {(db, s): runner.start(s, db, "idle", "--seconds", str(a.idle_seconds))
                     for db in dbs for s in on(db)}
            for (db, s), proc in procs.items():
                stdout, stderr = proc.communicate(timeout=a.idle_seconds + 120)
                if proc.returncode != 0:
                    log(f"  idle {s}/{db} failed:\n{stderr[-2000:]}")
                    continue
                out = json.loads(stdout.strip().splitlines()[-1])
                for k in ("xacts_per_s", "statements_per_s", "cpu_percent"):
                    put(db, s, f"idle_{k}", out.get(k))

    if "claim" not in skip and OURS in systems:
        for db in dbs:
            log(f"{db}: claim cost at depths {a.depths}")
            out = runner.run(OURS, db, "claimdepth", "--depths", a.depths, timeout=900)
            R.setdefault(db, {}).setdefault(OURS, {})["claimdepth"] = out.get("depths", out)

    raw["elapsed_seconds"] = time.monotonic() - started
    report = render(raw, dbs, systems, a)
    print(report)
    if a.markdown:
        Path(a.markdown).write_text(report)
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1))
    log(f"finished in {raw['elapsed_seconds'] / 60:.1f} minutes")


# --- the report -----------------------------------------------------------------------------

ROWS = [
    # key, label, unit/format, higher is better
    ("enqueue_single", "enqueue, one call each (autocommit)", "{:,.0f} jobs/s", True),
    ("enqueue_atomic", "enqueue, one call each in one transaction", "{:,.0f} jobs/s", True),
    ("enqueue_bulk", "enqueue, bulk", "{:,.0f} jobs/s", True),
    ("drain_1x1", "drain (long-running workers), 1 worker x 1", "{:,.0f} jobs/s", True),
    ("drain_best", "drain (long-running workers), best configuration", "{:,.0f} jobs/s", True),
    ("drain_1x1_steady", "drain (long-running), 1 worker x 1, first job to last",
     "{:,.0f} jobs/s", True),
    ("drain_best_steady", "drain (long-running), best configuration, first job to last",
     "{:,.0f} jobs/s", True),
    ("oneshot_1x1", "drain (one-shot mode: --burst / --one-shot / --batch), 1 worker x 1",
     "{:,.0f} jobs/s", True),
    ("oneshot_1x1_steady", "drain (one-shot mode), 1 worker x 1, first job to last",
     "{:,.0f} jobs/s", True),
    ("drain_1x1_stmts", "statements per job (drain 1x1, client side)", "{:.2f}", False),
    ("drain_1x1_xacts", "transactions per job (drain 1x1, server side)", "{:.2f}", False),
    ("latency_p50", "pickup latency p50", "{:.1f} ms", False),
    ("latency_p95", "pickup latency p95", "{:.1f} ms", False),
    ("latency_p99", "pickup latency p99", "{:.1f} ms", False),
    ("idle_xacts_per_s", "idle worker: transactions/s (server side)", "{:.2f}", False),
    ("idle_statements_per_s", "idle worker: statements/s (client side)", "{:.2f}", False),
    ("idle_cpu_percent", "idle worker: CPU %", "{:.2f} %", False),
]


def best_drain_config(res: dict) -> str | None:
    """The configuration with the highest median among those measured in every run."""
    runs = {key[len("drain_"):]: values for key, values in res.items()
            if key.startswith("drain_") and key.count("_") == 1 and key != "drain_best_config"}
    runs = {cfg: values for cfg, values in runs.items() if med(values) is not None}
    if not runs:
        return None
    most = max(len(values) for values in runs.values())
    return max((cfg for cfg, values in runs.items() if len(values) == most),
               key=lambda cfg: med(runs[cfg]))


def value(res: dict, key: str):
    if key in ("drain_best", "drain_best_steady"):
        cfg = best_drain_config(res)
        suffix = "_steady" if key.endswith("_steady") else ""
        return (med(res.get(f"drain_{cfg}{suffix}", [])), cfg) if cfg else (None, None)
    return med(res.get(key, [])), None


def render(raw: dict, dbs: list[str], systems: list[str], a) -> str:
    R, vers = raw["results"], raw["versions"]
    peers = [s for s in systems if s != OURS]
    lines = [f"Medians of {a.runs} runs ({a.jobs:,} jobs; latency: {a.latency_jobs} jobs "
             f"{a.gap * 1000:.0f} ms apart; idle: {a.idle_runs} x {a.idle_seconds:.0f} s). "
             f"Ratios are ours/theirs: above 1 is better for rates, below 1 for latencies and "
             f"idle costs.", ""]
    for db in dbs:
        res = R.get(db, {})
        present = [s for s in systems if s in res]
        lines.append(f"### {db}")
        lines.append("")
        head = ["workload", *present] + [f"{OURS}/{p}" for p in peers if p in present
                                         and OURS in present]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for key, label, fmt, _higher in ROWS:
            cells, vals = [], {}
            for s in present:
                v, cfg = value(res[s], key)
                vals[s] = v
                if key == "enqueue_bulk" and v is None and s == "django-tasks-db":
                    cells.append("n/a (no bulk API)")
                elif v is None:
                    cells.append("—")
                else:
                    cells.append(fmt.format(v) + (f" ({cfg})" if cfg else ""))
            for p in peers:
                if p in present and OURS in present:
                    o, t = vals.get(OURS), vals.get(p)
                    cells.append(f"{o / t:.2f}" if o is not None and t else "—")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        cd = res.get(OURS, {}).get("claimdepth")
        if isinstance(cd, dict) and cd:
            lines.append(f"Claim cost, django-jobs on {db} (one row in 5 scheduled and due, the "
                         f"rest finished; median of 20 claims of 1 job, 10 of 10 jobs):")
            lines.append("")
            lines.append("| rows in table | claim 1 job | claim 10 jobs | index used by the claim "
                         "SELECT | fill time |")
            lines.append("|---|---|---|---|---|")
            for depth, d in cd.items():
                lines.append(f"| {int(depth):,} | {d['claim1_ms']:.2f} ms | "
                             f"{d['claim10_ms']:.2f} ms | {d['uses_index']} | "
                             f"{d['fill_seconds']:.1f} s |")
            deepest = list(cd.values())[-1]
            lines.append("")
            lines.append(f"Plan of the claim SELECT at {int(list(cd)[-1]):,} rows:")
            lines.append("")
            lines.append("```")
            lines.extend(deepest["plan"].splitlines())
            lines.append("```")
            lines.append("")
    lines.append("Versions: " + "; ".join(
        f"{s} {v['package']} (Django {v['django']}, Python {v['python']})"
        for s, v in vers.items()))
    lines.append("")
    lines.extend(targets(raw, dbs, peers))
    lines.append("")
    lines.append(f"Suite time: {raw['elapsed_seconds'] / 60:.1f} minutes.")
    return "\n".join(lines) + "\n"


def targets(raw, dbs, peers) -> list[str]:
    R = raw["results"]
    out = ["Targets:", ""]

    def check(label, ok, detail):
        mark = "—" if ok is None else ("met" if ok else "NOT met")
        out.append(f"- {label}: **{mark}** ({detail})")

    for db in dbs:
        res = R.get(db, {})
        ours = res.get(OURS)
        if not ours:
            continue
        pv = {p: res[p] for p in peers if p in res}
        factor = 2 if db == "sqlite" else 3
        for key, how in (("drain_best", "from launch"), ("drain_best_steady", "steady")):
            best = value(ours, key)[0]
            peer_best = {p: value(r, key)[0] for p, r in pv.items()}
            peer_best = {p: v for p, v in peer_best.items() if v}
            if peer_best:
                fastest = max(peer_best, key=peer_best.get)
                ok = best is not None and best >= factor * peer_best[fastest]
                check(f"{db}: drain ({how}) >= {factor}x the faster peer", ok,
                      f"{best or 0:,.0f} vs {fastest} {peer_best[fastest]:,.0f} jobs/s = "
                      f"{(best or 0) / peer_best[fastest]:.2f}x")
        # Latency, enqueue and idle targets are set for PostgreSQL (SQLite has no NOTIFY).
        on_postgres = db == "postgres"
        p50, p99 = value(ours, "latency_p50")[0], value(ours, "latency_p99")[0]
        if on_postgres and p50 is not None:
            check(f"{db}: pickup p50 <= 5 ms, p99 <= 10 ms", p50 <= 5 and p99 <= 10,
                  f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        bulk = value(ours, "enqueue_bulk")[0]
        if on_postgres and bulk is not None:
            check(f"{db}: bulk enqueue >= 20,000 jobs/s", bulk >= 20000, f"{bulk:,.0f} jobs/s")
        single = value(ours, "enqueue_single")[0]
        ps = {p: value(r, "enqueue_single")[0] for p, r in pv.items()}
        ps = {p: v for p, v in ps.items() if v}
        if on_postgres and single is not None and ps:
            fastest = max(ps, key=ps.get)
            check(f"{db}: single enqueue >= the faster peer", single >= ps[fastest],
                  f"{single:,.0f} vs {fastest} {ps[fastest]:,.0f} jobs/s")
        idle = value(ours, "idle_xacts_per_s")[0]
        if on_postgres and idle is not None:
            check(f"{db}: idle worker <= 0.5 transaction/s", idle <= 0.5,
                  f"{idle:.2f} transactions/s")
        cd = ours.get("claimdepth")
        if isinstance(cd, dict) and len(cd) >= 2:
            vals = list(cd.values())
            lo, hi = vals[0]["claim1_ms"], vals[-1]["claim1_ms"]
            check(f"{db}: claim at {int(list(cd)[-1]):,} rows within 2x of {int(list(cd)[0]):,}",
                  hi <= 2 * lo and not any(v["uses_index"].startswith("NO") for v in vals),
                  f"{lo:.2f} ms -> {hi:.2f} ms")
    return out


if __name__ == "__main__":
    main()
