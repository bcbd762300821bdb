#!/usr/bin/env bash
# Sets up everything and runs every test: cargo test (the pure Rust core),
# then pytest (real Django, real djust, real Redis servers that the suite
# starts on free loopback ports and stops afterwards). Exits non-zero on any
# failure. Usage: scripts/test.sh [extra pytest args]
source "$(dirname "$0")/env.sh"
cd "$ROOT"

ensure_redis
ensure_chromium
ensure_venv "$ROOT/requirements/test.txt"

log "cargo fmt --check, cargo clippy, ruff"
cargo fmt --check
cargo clippy --quiet --features python --all-targets -- -D warnings
"$VENV/bin/ruff" check --quiet python tests benchmarks examples

log "cargo test (Rust core, no Python)"
cargo test --quiet

build_extension

log "pytest"
mkdir -p "$ROOT/test-output"
"$PY" -m pytest "$@"
