#!/usr/bin/env bash
# Sets up and runs the demo: two tenants at http://acme.localhost:8000/board/
# and http://globex.localhost:8000/board/ (in-memory backends, SQLite, migrated
# and seeded here). Ctrl-C stops it. PORT=8001 scripts/demo.sh picks another port.
# DEMO_DATABASE=postgres scripts/demo.sh runs it on a throwaway local PostgreSQL
# with row-level security on (started like the test suite's, removed on exit).
source "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT="${PORT:-8000}"

DEMO_DATABASE="${DEMO_DATABASE:-sqlite}"
export DEMO_DATABASE

# A fresh clone's first page waits on the Rust build: the demo's light build
# (build_extension in scripts/env.sh), started as soon as maturin and Django
# (the package's one dependency) are in, while pip installs the rest of
# requirements/demo.txt beside it. docs/performance.md#the-demos-first-start
REQUIREMENTS="$ROOT/requirements/demo.txt"
create_venv
if requirements_installed "$REQUIREMENTS"; then
    build_extension demo
else
    log "installing maturin and Django"
    pip_install $(grep -E '^(maturin|Django)\b' "$REQUIREMENTS")
    install_requirements "$REQUIREMENTS" &
    installing=$!
    trap 'kill "$installing" 2>/dev/null || true' EXIT
    build_extension demo
    wait "$installing"
    trap - EXIT
fi

if [ "$DEMO_DATABASE" = postgres ]; then
    ensure_postgres
    log "starting a throwaway PostgreSQL; migrating, seeding and serving on 127.0.0.1:$PORT"
    cat <<MSG
    http://acme.localhost:$PORT/board/
    http://globex.localhost:$PORT/board/
MSG
    # tests/postgres_server.py runs the command with PG* naming the cluster,
    # and stops and removes the cluster when it ends (Ctrl-C included).
    exec "$PY" -m tests.postgres_server -- bash -c '
        set -e
        cd examples/demo
        "$0" manage.py migrate -v0
        "$0" manage.py seed_demo --skip-checks
        "$0" manage.py tenantry rls
        exec "$0" -m daphne -b 127.0.0.1 -p "$1" demo.asgi:application' "$PY" "$PORT"
elif [ "$DEMO_DATABASE" != sqlite ]; then
    echo "DEMO_DATABASE must be sqlite or postgres, got $DEMO_DATABASE" >&2
    exit 2
fi

cd "$ROOT/examples/demo"
log "migrating and seeding examples/demo/db.sqlite3"
"$PY" manage.py migrate -v0
"$PY" manage.py seed_demo --skip-checks  # migrate ran the system checks

log "serving on 127.0.0.1:$PORT"
cat <<MSG
    http://acme.localhost:$PORT/board/
    http://globex.localhost:$PORT/board/
MSG
exec "$PY" -m daphne -b 127.0.0.1 -p "$PORT" demo.asgi:application
