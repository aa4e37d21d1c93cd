#!/usr/bin/env bash
# Run the public postgresql-job-queue-benchmarking harness against a local PostgreSQL, without
# Docker, for django-jobs (benchmarks/harness/django-jobs-bench) and the harness's own
# procrastinate adapter (run natively too).
#
#   benchmarks/harness/run-local.sh setup                 # harness clone + patch + virtualenvs
#   benchmarks/harness/run-local.sh run [SCENARIO...]     # default: the four scenarios below
#   benchmarks/harness/run-local.sh collect OUT RUN_DIR...   # copy a run's outputs into OUT
#
# Everything it creates lives outside this repository (HARNESS_DIR, VENV_ROOT). See README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3.12}"
HARNESS_REPO="${HARNESS_REPO:-https://github.com/hardbyte/postgresql-job-queue-benchmarking}"
HARNESS_REF="${HARNESS_REF:-93677cab92dad89ee9eccb0d6e113893de43cbe6}"
HARNESS_DIR="${HARNESS_DIR:-/tmp/pgqb}"
VENV_ROOT="${VENV_ROOT:-/tmp}"
PATCH="$HERE/postgresql-job-queue-benchmarking-local.patch"

# The local server: trust auth for user postgres on 127.0.0.1:5432 by default.
export BENCH_EXTERNAL_PG=1
export BENCH_PG_HOST="${BENCH_PG_HOST:-127.0.0.1}"
export BENCH_PG_PORT="${BENCH_PG_PORT:-5432}"
export BENCH_PG_USER="${BENCH_PG_USER:-postgres}"
export BENCH_PG_PASSWORD="${BENCH_PG_PASSWORD-}"
export BENCH_NATIVE=procrastinate
export BENCH_EXTRA_ADAPTER_DIRS="$HERE/django-jobs-bench"
export DJANGO_JOBS_BENCH_PYTHON="$VENV_ROOT/djb-venv/bin/python"
export PROCRASTINATE_BENCH_PYTHON="$VENV_ROOT/procb-venv/bin/python"
# The same bulk producer shape for both systems: up to 128 rows per call, a call every 25 ms
# (the harness pacer's defaults; procrastinate's adapter reads them for its own loop).
export PRODUCER_BATCH_MAX="${PRODUCER_BATCH_MAX:-128}"
export PRODUCER_BATCH_MS="${PRODUCER_BATCH_MS:-25}"
export PYTHONUNBUFFERED=1

SYSTEMS="${SYSTEMS:-django-jobs,procrastinate}"
PRODUCER_RATE="${PRODUCER_RATE:-200}"
WORKER_COUNT="${WORKER_COUNT:-8}"
SAMPLE_EVERY="${SAMPLE_EVERY:-5}"
LOG_DIR="${LOG_DIR:-$HARNESS_DIR/logs}"
# Stop starting scenarios that would end after this time (epoch seconds); 0: no limit.
DEADLINE_EPOCH="${DEADLINE_EPOCH:-0}"

# Shortened phase lengths (same labels and phase types as the harness's named scenarios).
declare -A DURATIONS=(
  [long_horizon]="warmup=30s,clean_1=60s,idle_1=45s,recovery_1=60s,idle_2=40s"
  [idle_in_tx_saturation]="warmup=30s,clean_1=40s,idle_1=60s,recovery_1=60s"
  [chaos_crash_recovery]="warmup=20s,baseline=30s,kill=20s,restart=45s,recovery=30s"
  [chaos_pg_backend_kill]="warmup=20s,baseline=30s,kills=40s,recovery=40s"
)
# The phase COMPARISON.md is rendered for.
declare -A COMPARE_PHASE=(
  [long_horizon]=clean_1 [idle_in_tx_saturation]=clean_1
  [chaos_crash_recovery]=baseline [chaos_pg_backend_kill]=baseline
)
DEFAULT_SCENARIOS=(long_horizon chaos_crash_recovery chaos_pg_backend_kill idle_in_tx_saturation)

seconds_of() {  # "warmup=30s,clean_1=1m" -> 90
  local total=0 item d
  IFS=',' read -ra items <<<"$1"
  for item in "${items[@]}"; do
    d="${item#*=}"
    case "$d" in
      *m) total=$((total + ${d%m} * 60)) ;;
      *s) total=$((total + ${d%s})) ;;
      *) total=$((total + d)) ;;
    esac
  done
  echo "$total"
}

cmd_setup() {
  if [ ! -d "$HARNESS_DIR/.git" ]; then
    git clone --no-checkout "$HARNESS_REPO" "$HARNESS_DIR"
  fi
  # Only what the harness needs (its results/ history is large).
  git -C "$HARNESS_DIR" checkout "$HARNESS_REF" -- bench.py bench_harness procrastinate-bench \
    pyproject.toml tests README.md CONTRIBUTING_ADAPTERS.md docs LICENSE postgres.conf \
    docker-compose.yml init-databases.sql
  if git -C "$HARNESS_DIR" apply --check "$PATCH" 2>/dev/null; then
    git -C "$HARNESS_DIR" apply "$PATCH"
  elif git -C "$HARNESS_DIR" apply --reverse --check "$PATCH" 2>/dev/null; then
    echo "patch already applied"
  else
    echo "the patch does not apply to $HARNESS_DIR" >&2
    exit 1
  fi
  [ -x "$VENV_ROOT/pgqb-venv/bin/python" ] || "$PYTHON" -m venv "$VENV_ROOT/pgqb-venv"
  "$VENV_ROOT/pgqb-venv/bin/pip" install -q "psycopg[binary]>=3.2" "matplotlib>=3.9" \
    "pandas>=2.2" "numpy>=2.0" "pydantic>=2" pytest
  [ -x "$VENV_ROOT/djb-venv/bin/python" ] || "$PYTHON" -m venv "$VENV_ROOT/djb-venv"
  "$VENV_ROOT/djb-venv/bin/pip" install -q -e "$REPO_ROOT[postgres]"
  [ -x "$VENV_ROOT/procb-venv/bin/python" ] || "$PYTHON" -m venv "$VENV_ROOT/procb-venv"
  # The versions pinned by the harness's procrastinate-bench/pyproject.toml.
  "$VENV_ROOT/procb-venv/bin/pip" install -q "procrastinate==3.8.1" "psycopg[binary]==3.3.3"
  (cd "$HARNESS_DIR" && "$VENV_ROOT/pgqb-venv/bin/python" -m pytest -q tests)
  psql -h "$BENCH_PG_HOST" -p "$BENCH_PG_PORT" -U "$BENCH_PG_USER" -d postgres -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS pgstattuple_check" -c "CREATE DATABASE pgstattuple_check" >/dev/null
  psql -h "$BENCH_PG_HOST" -p "$BENCH_PG_PORT" -U "$BENCH_PG_USER" -d pgstattuple_check \
    -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pgstattuple" >/dev/null
  psql -h "$BENCH_PG_HOST" -p "$BENCH_PG_PORT" -U "$BENCH_PG_USER" -d postgres \
    -c "DROP DATABASE pgstattuple_check" >/dev/null
  echo "setup done: harness in $HARNESS_DIR, pgstattuple available"
}

cmd_run() {
  local scenarios=("$@") index=0 scenario order durations expected now limit log run_dir rc
  [ ${#scenarios[@]} -gt 0 ] || scenarios=("${DEFAULT_SCENARIOS[@]}")
  mkdir -p "$LOG_DIR"
  for scenario in "${scenarios[@]}"; do
    # DURATIONS_<scenario>="label=duration,..." overrides the lengths below.
    local var="DURATIONS_$scenario"
    durations="${!var:-${DURATIONS[$scenario]:?no durations for $scenario}}"
    # Alternate which system goes first, so that neither always runs on the warmer server.
    if [ $((index % 2)) -eq 0 ]; then order="$SYSTEMS"
    else order="$(echo "$SYSTEMS" | awk -F, '{for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? "," : "")}')"
    fi
    index=$((index + 1))
    expected=$(( $(seconds_of "$durations") * $(echo "$SYSTEMS" | awk -F, '{print NF}') ))
    limit=$((expected + 240))
    if [ "$DEADLINE_EPOCH" -gt 0 ]; then
      now=$(date +%s)
      if [ $((now + expected + 30)) -gt "$DEADLINE_EPOCH" ]; then
        echo "SKIPPED $scenario: ${expected}s of phases would end past the deadline" | tee -a "$LOG_DIR/runs.txt"
        continue
      fi
      [ $((DEADLINE_EPOCH - now)) -lt "$limit" ] && limit=$((DEADLINE_EPOCH - now))
    fi
    log="$LOG_DIR/$scenario.log"
    echo "$(date -u +%FT%TZ) START $scenario systems=$order phases=$durations" | tee -a "$LOG_DIR/runs.txt"
    set +e
    (cd "$HARNESS_DIR" && BENCH_PHASE_DURATIONS="$durations" timeout -s INT "$limit" \
      "$VENV_ROOT/pgqb-venv/bin/python" bench.py run --scenario "$scenario" --systems "$order" \
      --producer-rate "$PRODUCER_RATE" --worker-count "$WORKER_COUNT" \
      --sample-every "$SAMPLE_EVERY") >"$log" 2>&1
    rc=$?
    set -e
    run_dir="$(grep -o 'results at: .*' "$log" | tail -n 1 | sed 's/results at: //')"
    if [ -z "$run_dir" ]; then
      run_dir="$(grep -o 'run_id = .*' "$log" | head -n 1 | sed "s#run_id = #$HARNESS_DIR/results/#")"
    fi
    if [ -n "$run_dir" ] && [ -f "$run_dir/summary.json" ]; then
      (cd "$HARNESS_DIR" && "$VENV_ROOT/pgqb-venv/bin/python" bench.py compare "$run_dir" \
        --phase "${COMPARE_PHASE[$scenario]}") >>"$log" 2>&1 || true
      cp "$log" "$run_dir/harness.log"
    fi
    echo "$(date -u +%FT%TZ) END $scenario rc=$rc dir=$run_dir" | tee -a "$LOG_DIR/runs.txt"
  done
}

cmd_collect() {
  local out="$1" run_dir name dest f
  shift
  for run_dir in "$@"; do
    name="$(basename "$run_dir")"
    dest="$out/${name%%-2*}"
    mkdir -p "$dest/plots"
    for f in summary.json manifest.json README.md COMPARISON.md; do
      [ -f "$run_dir/$f" ] && cp "$run_dir/$f" "$dest/"
    done
    echo "$name" >"$dest/RUN_ID"
    cp "$run_dir"/plots/*.png "$dest/plots/" 2>/dev/null || true
    for f in raw.csv harness.log index.html; do
      [ -f "$run_dir/$f" ] || continue
      if [ "$(stat -c %s "$run_dir/$f")" -lt 2000000 ]; then
        cp "$run_dir/$f" "$dest/"
      else
        gzip -9 -c "$run_dir/$f" >"$dest/$f.gz"
        [ "$(stat -c %s "$dest/$f.gz")" -lt 2000000 ] || rm -f "$dest/$f.gz"
      fi
    done
  done
}

case "${1:-}" in
  setup) shift; cmd_setup "$@" ;;
  run) shift; cmd_run "$@" ;;
  collect) shift; cmd_collect "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
