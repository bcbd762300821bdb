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

create_venv() {
    if [ ! -x "$PY" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
}

requirements_installed() {
    # $1: a requirements file; true when the venv has installed exactly it.
    cmp -s "$1" "$VENV/.requirements.$(basename "$1")"
}

pip_install() {
    # No self-upgrade of pip (scripts/demo.sh runs pip beside maturin's own),
    # and no byte-compiling here: install_requirements compiles everything
    # afterwards, so scripts/demo.sh's build starts without waiting for it.
    "$PY" -m pip install -q --no-compile "$@"
}

install_requirements() {
    # $1: a requirements file. Byte-compiles the venv's modules once, as pip
    # would have: with PYTHONDONTWRITEBYTECODE set, Python would otherwise
    # compile every module again at every start. Like pip, a module that
    # does not compile (a package's test data) is left to Python.
    log "installing $(basename "$1")"
    pip_install -r "$1"
    "$PY" -m compileall -q "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
        >/dev/null || true
    cp "$1" "$VENV/.requirements.$(basename "$1")"
}

ensure_venv() {
    create_venv
    requirements_installed "$1" || install_requirements "$1"
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

extension_build_args() {
    # $1: "full" (the release profile with every Cargo feature: what
    # scripts/test.sh tests and benchmarks measure) or "demo" (scripts/demo.sh:
    # the demo profile without the default features, i.e. no Redis TLS or
    # Cluster client, which builds in about half the time; see Cargo.toml).
    # Prints maturin's arguments for that build, one a line
    # (tests/ops/test_demo_build.py builds the demo's the same way).
    case "$1" in
        full) printf '%s\n' --profile release ;;
        demo) printf '%s\n' --profile demo --no-default-features ;;
        *) echo "unknown build $1 (full or demo)" >&2; return 2 ;;
    esac
}

build_extension() {
    # $1: the build, "full" unless given (see extension_build_args). A build
    # whose kind, sources and venv have not changed since the last one is
    # skipped; the stamp names the kind, so the test command never runs on
    # the demo's build (nor the demo on a stale one).
    local kind="${1:-full}" args
    mapfile -t args < <(extension_build_args "$kind")
    [ "${#args[@]}" -gt 0 ] || return 2
    local stamp="$VENV/.extension-build"
    local sources
    sources="$kind ${args[*]} $(cd "$ROOT" && cat Cargo.toml Cargo.lock pyproject.toml \
        $(find src -type f -name '*.rs' | sort) | sha256sum)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sources" ] \
        && "$PY" -c 'import tenantry._core' 2>/dev/null; then
        log "the Rust extension is up to date ($kind build)"
        return
    fi
    rm -f "$stamp"
    log "building the Rust extension ($kind: maturin develop ${args[*]})"
    (cd "$ROOT" && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
        "$VENV/bin/maturin" develop "${args[@]}" --quiet)
    echo "$sources" > "$stamp"
}
