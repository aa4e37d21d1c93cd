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
  # $1: extra pip requirements (a file), optional.
  local stamp="$VENV/.django-jobs-installed"
  local want
  want="$(cat "$ROOT/pyproject.toml" ${1:+"$1"} | sha1sum | cut -c1-12)"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing django-jobs${1:+ and $(basename "$1")} into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT" ${1:+-r "$1"}
    echo "$want" > "$stamp"
  fi
}

start_postgresql() {
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.2; done
  log "PostgreSQL did not start"; return 1
}

start_mariadb() {
  mariadb-admin -h 127.0.0.1 -u root status >/dev/null 2>&1 && return 0
  log "starting MariaDB"
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 100); do mariadb-admin -h 127.0.0.1 -u root status >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "MariaDB did not start"; return 1
}
