#!/usr/bin/env bash
# Runs every benchmark in its own environment (.bench-venv, with djust 1.2.x
# from PyPI) and prints one Markdown report of side-by-side ratios.
# Usage: scripts/bench.sh [> report.md]
source "$(dirname "$0")/env.sh"
VENV="$ROOT/.bench-venv"
PY="$VENV/bin/python"
cd "$ROOT"

ensure_redis
ensure_postgres
ensure_venv "$ROOT/requirements/bench.txt"
build_extension
"$PY" -m benchmarks "$@"
