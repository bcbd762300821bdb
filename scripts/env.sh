# Shared set-up for scripts/test.sh and scripts/demo.sh (sourced, not run).
# Creates .venv, installs the Python requirements, installs Debian's
# redis-server, postgresql and pgbouncer when missing, and builds the Rust extension
# into the venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    # $@: Debian packages to install when their command is missing.
    log "installing $* from Debian's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
    local requirements="$1"
    if [ ! -x "$PY" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.requirements.$(basename "$requirements")"
    if [ ! -f "$stamp" ] || ! cmp -s "$requirements" "$stamp"; then
        log "installing $(basename "$requirements")"
        "$PY" -m pip install -q --upgrade pip
        "$PY" -m pip install -q -r "$requirements"
        cp "$requirements" "$stamp"
    fi
}

ensure_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null \
        || ! command -v redis-benchmark >/dev/null; then
        apt_install redis-server redis-tools
    fi
    # openssl makes the throwaway CA of the TLS Redis in tests/redis_servers.py.
    command -v openssl >/dev/null || apt_install openssl
}

ensure_postgres() {
    # initdb/pg_ctl live in /usr/lib/postgresql/<version>/bin (not on PATH);
    # tests/postgres_server.py finds them there and runs them as the
    # `postgres` system user (PostgreSQL refuses root), which the package creates.
    if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
        || ! compgen -G "/usr/lib/postgresql/*/lib/pg_stat_statements.so" >/dev/null \
        || ! id postgres >/dev/null 2>&1; then
        apt_install postgresql
    fi
}

ensure_pgbouncer() {
    # tests/pgbouncer_server.py runs Debian's pgbouncer (as the `postgres`
    # system user when run as root) in front of the suite's PostgreSQL.
    if [ ! -x /usr/sbin/pgbouncer ]; then
        apt_install pgbouncer
    fi
}

ensure_chromium() {
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
        apt_install chromium chromium-driver
    fi
}

build_extension() {
    # $1: the Cargo profile, "release" unless given (scripts/demo.sh: "demo",
    # which builds in a fraction of the time). A build whose sources, profile
    # and venv have not changed since the last one is skipped.
    local profile="${1:-release}"
    local stamp="$VENV/.extension-build"
    local sources
    sources="$profile $(cd "$ROOT" && cat Cargo.toml Cargo.lock pyproject.toml \
        $(find src -type f -name '*.rs' | sort) | sha256sum)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sources" ] \
        && "$PY" -c 'import tenantry._core' 2>/dev/null; then
        log "the Rust extension is up to date ($profile)"
        return
    fi
    log "building the Rust extension (maturin develop --profile $profile)"
    (cd "$ROOT" && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
        "$VENV/bin/maturin" develop --profile "$profile" --quiet)
    echo "$sources" > "$stamp"
}
