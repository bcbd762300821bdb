#!/usr/bin/env bash
# Sets up and runs the demo: two tenants at http://acme.localhost:8000/board/
# and http://globex.localhost:8000/board/ (in-memory backends, SQLite, migrated
# and seeded here). Ctrl-C stops it. PORT=8001 scripts/demo.sh picks another port.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT="${PORT:-8000}"

ensure_venv "$ROOT/requirements/demo.txt"
build_extension

cd "$ROOT/examples/demo"
log "migrating and seeding examples/demo/db.sqlite3"
"$PY" manage.py migrate -v0
"$PY" manage.py seed_demo

log "serving on 127.0.0.1:$PORT"
cat <<MSG
    http://acme.localhost:$PORT/board/
    http://globex.localhost:$PORT/board/
MSG
exec "$PY" -m daphne -b 127.0.0.1 -p "$PORT" demo.asgi:application
