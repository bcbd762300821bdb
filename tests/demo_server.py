"""Runs the demo project (examples/demo) under daphne, a real ASGI server, on
a free loopback port: migrated and seeded into a fresh SQLite file, or into a
fresh database of a PostgreSQL server (row-level security on)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"


def demo_database(workdir: Path) -> str:
    """The PostgreSQL database a demo_server(workdir, postgres=...) uses."""
    return f"demo_{workdir.name}"[:63]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"demo server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"demo server did not listen on {port}")


#: daphne's command line, with every thread's stack and every asyncio task's
#: (a coroutine waiting on a lock shows only there) written to its log on
#: SIGUSR1: a test that waited too long for the server asks for them
#: (:func:`dump_stacks`), so a stall says where it was.
DAPHNE_WITH_STACK_DUMPS = """
import asyncio, faulthandler, signal, sys

def dump(signum, frame):
    faulthandler.dump_traceback(all_threads=True)
    loop = asyncio._get_running_loop()
    tasks = asyncio.all_tasks(loop) if loop is not None else ()
    print(f"--- {len(tasks)} asyncio tasks ---", file=sys.stderr)
    for task in tasks:
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()

signal.signal(signal.SIGUSR1, dump)
from daphne.cli import CommandLineInterface
sys.argv[0] = "daphne"
CommandLineInterface.entrypoint()
"""


def dump_stacks(process: subprocess.Popen) -> None:
    """Every thread's stack of a running demo server, into its daphne.log."""
    if process.poll() is None:
        process.send_signal(signal.SIGUSR1)


@contextmanager
def demo_server(
    workdir: Path,
    *,
    extra_tenants: int = 0,
    tenants: list[str] = (),
    env: dict[str, str] | None = None,
    postgres: Any = None,
    started: list[subprocess.Popen] | None = None,
    seed: bool = True,
    log_name: str = "daphne.log",
):
    """Yields the port. ``env`` adds environment variables (e.g. DJUST_CONFIG
    overrides the demo settings read from DEMO_* variables). ``tenants``:
    more load-test tenants by id, besides ``extra_tenants``'s t000... ``postgres`` (a
    tests.postgres_server.PostgresServer): the demo's database is a new
    database ``demo_<workdir name>`` there (see :func:`demo_database`).
    ``started``: the server's process is appended to it (to kill it).
    ``seed=False``: another process of a demo already migrated and seeded in
    ``workdir`` (the fleet tests run several on one database), its output
    in ``log_name``."""
    environ = {**os.environ, "DEMO_DB": str(workdir / "db.sqlite3"), **(env or {})}
    if postgres is not None:
        database = postgres.create_database(demo_database(workdir))
        environ.update(postgres.env(database), DEMO_DATABASE="postgres")
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    python = sys.executable
    seeding = ["seed_demo", f"--extra={extra_tenants}", *(f"--tenant={t}" for t in tenants)]
    for command in (["migrate", "-v0"], seeding) if seed else ():
        subprocess.run(
            [python, "manage.py", *command],
            cwd=DEMO,
            env=environ,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port = free_port()
    with open(workdir / log_name, "w") as log:
        process = subprocess.Popen(
            [
                python,
                "-c",
                DAPHNE_WITH_STACK_DUMPS,
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                # Under load (hundreds of handshakes on 2 cores) the default
                # 5 s handshake limit would drop clients, not test tenancy.
                "--websocket_connect_timeout",
                "120",
                # Clients stand behind a proxy: X-Forwarded-For names the
                # client's address (the soak's clients at many addresses).
                "--proxy-headers",
                "demo.asgi:application",
            ],
            cwd=DEMO,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if started is not None:
            started.append(process)
        try:
            wait_for_port(port, process)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
