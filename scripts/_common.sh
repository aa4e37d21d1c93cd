# Shared by scripts/test and scripts/demo: a virtualenv with the app installed, and services.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DJANGO_JOBS_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

apt_install() {
  # Install Debian packages that are missing (and only then touch apt).
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_venv() {
  # ensure_venv DIR PYTHON [pip requirement arguments...]: a virtualenv with django-jobs
  # installed in editable mode plus the given requirements; reinstalled when they change.
  local venv="$1" python="$2"; shift 2
  local stamp="$venv/.django-jobs-installed"
  local want
  want="$( (cat "$ROOT/pyproject.toml" "$ROOT/requirements-test.txt"; echo "$*") | sha1sum | cut -c1-12)"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv ($python)"
    "$python" -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing django-jobs into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e "$ROOT" "$@"
    echo "$want" > "$stamp"
  fi
}

python_for() {
  # The first interpreter found for a version (3.12, 3.13): on PATH or under pyenv.
  # (A pyenv shim answers to the name even when it cannot run it, so each one is tried.)
  local version="$1" candidate
  for candidate in /root/.pyenv/versions/"$version".*/bin/python "$(command -v "python$version")"; do
    if [ -x "$candidate" ] && "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))" 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

start_postgresql() {
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.2; done
  log "PostgreSQL did not start"; return 1
}

start_pgbouncer() {
  # PgBouncer in transaction mode on 127.0.0.1:6432 in front of the PostgreSQL on 5432, for
  # tests/concurrency/test_pgbouncer.py: every database name passes through (pytest-django's
  # test_* databases included), user postgres without a password, like 5432 here.
  pg_isready -q -h 127.0.0.1 -p 6432 -U postgres 2>/dev/null && return 0
  apt_install pgbouncer
  local dir="${PGBOUNCER_DIR:-/tmp/django-jobs-pgbouncer}" version
  # PgBouncer refuses to run as root: it runs as postgres, which writes its pid and log here.
  as_root install -d -o postgres -g postgres "$dir"
  version="$(/usr/sbin/pgbouncer --version | awk 'NR == 1 { print $2 }')"
  {
    printf '[databases]\n* = host=127.0.0.1 port=5432\n\n[pgbouncer]\n'
    printf 'listen_addr = 127.0.0.1\nlisten_port = 6432\nunix_socket_dir =\n'
    printf 'auth_type = trust\nauth_file = %s/userlist.txt\nadmin_users = postgres\n' "$dir"
    printf 'pool_mode = transaction\nmax_client_conn = 1000\ndefault_pool_size = 20\n'
    printf 'pidfile = %s/pgbouncer.pid\nlogfile = %s/pgbouncer.log\n' "$dir" "$dir"
    printf 'log_connections = 0\nlog_disconnections = 0\n'
    # psycopg 2 sends it at startup; PgBouncer refuses unknown startup parameters.
    printf 'ignore_startup_parameters = extra_float_digits\n'
    # From 1.21 PgBouncer keeps prepared statements of clients apart in transaction mode.
    if dpkg --compare-versions "$version" ge 1.21; then
      printf 'max_prepared_statements = 200\n'
    fi
  } | as_root tee "$dir/pgbouncer.ini" >/dev/null
  echo '"postgres" ""' | as_root tee "$dir/userlist.txt" >/dev/null
  log "starting PgBouncer $version (transaction mode) on 127.0.0.1:6432"
  as_root /usr/sbin/pgbouncer -d -u postgres "$dir/pgbouncer.ini"
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 6432 -U postgres && return 0; sleep 0.2; done
  log "PgBouncer did not start (see $dir/pgbouncer.log)"; return 1
}

start_mariadb() {
  mariadb-admin -h 127.0.0.1 -u root status >/dev/null 2>&1 && return 0
  log "starting MariaDB"
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 100); do mariadb-admin -h 127.0.0.1 -u root status >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "MariaDB did not start"; return 1
}
