#!/usr/bin/env bash
# Sets up everything and runs every test: cargo test (the pure Rust core),
# then pytest (real Django, real djust, real Redis servers that the suite
# starts on free loopback ports and stops afterwards), twice: on SQLite, then
# the database suites again on a real PostgreSQL with row-level security on
# (TENANTRY_TEST_DB=postgres; the suite starts and removes a throwaway
# cluster, see tests/postgres_fixtures.py). Exits non-zero on any failure.
# Usage: scripts/test.sh [extra pytest args]
source "$(dirname "$0")/env.sh"
cd "$ROOT"

ensure_redis
ensure_postgres
ensure_pgbouncer
ensure_chromium
ensure_venv "$ROOT/requirements/test.txt"

log "cargo fmt --check, cargo clippy, ruff"
cargo fmt --check
cargo clippy --quiet --features python --all-targets -- -D warnings
# The demo's light build (scripts/demo.sh): the same code without the Redis
# TLS and Cluster features must compile clean too.
cargo clippy --quiet --no-default-features --features python --lib -- -D warnings
"$VENV/bin/ruff" check --quiet python tests benchmarks examples

log "cargo test (Rust core, no Python)"
cargo test --quiet

build_extension

# pytest exits 5 when the arguments select no test of that run (e.g.
# scripts/test.sh tests/stores/test_state.py has no PostgreSQL test): only both
# runs selecting nothing is a failure.
run_pytest() {
    local status=0
    "$PY" -m pytest "$@" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
        exit "$status"
    fi
    return "$status"
}

mkdir -p "$ROOT/test-output"
log "pytest (SQLite)"
sqlite_status=0
TENANTRY_TEST_DB=sqlite run_pytest "$@" || sqlite_status=$?
log "pytest (PostgreSQL, row-level security on: the database suites)"
postgres_status=0
TENANTRY_TEST_DB=postgres run_pytest "$@" || postgres_status=$?
if [ "$sqlite_status" -ne 0 ] && [ "$postgres_status" -ne 0 ]; then
    exit 5
fi
