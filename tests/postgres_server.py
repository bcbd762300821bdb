"""A throwaway PostgreSQL cluster on loopback, for the test suite, the demo
and the benchmarks (one implementation for all three).

``PostgresServer().start()`` runs ``initdb`` into a fresh temporary folder,
starts ``postgres`` on a free 127.0.0.1 port (its unix socket inside that
folder, so it never meets a system cluster), and creates:

- ``tenantry_app``: the application's role. NOT a superuser and without
  ``BYPASSRLS`` (either would ignore row-level security), with ``CREATEDB``
  so pytest-django can create its test database;
- ``tenantry``: a database owned by that role;
- the ``pg_stat_statements`` extension in it (loaded at start), so tests and
  benchmarks can count statements server-side.

``postgres`` (the bootstrap superuser) is used only to set this up and to
inspect or alter roles in tests. ``stop()`` stops the server and removes the
folder. PostgreSQL refuses to run as root: as root, ``initdb`` and ``pg_ctl``
run as the ``postgres`` system user (Debian's package creates it) through
``runuser``, and the folder is owned by that user. A missing PostgreSQL is an
error, never a skip: scripts/env.sh (``ensure_postgres``) installs it.

Command line (scripts/demo.sh)::

    python -m tests.postgres_server -- COMMAND ...

starts a cluster, runs COMMAND with ``PGHOST``, ``PGPORT``, ``PGUSER`` and
``PGDATABASE`` naming the application's role and database, and stops the
cluster when COMMAND ends (also on Ctrl-C). This module does not import
pytest (the demo's environment has none); the fixtures are in
tests/postgres_fixtures.py.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

APP_ROLE = "tenantry_app"
DATABASE = "tenantry"
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback TCP port nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
            "scripts/test.sh installs it (apt-get install postgresql)"
        )
    return Path(found[-1]).parent


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1 (see the module docs)."""

    def __init__(self, *, log_statements: bool = False) -> None:
        self.bin = bin_dir()
        self.port = free_port()
        self.log_statements = log_statements
        self.directory: Path | None = None
        self._as_user: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        self._options = ""

    # -- where and as whom -------------------------------------------------------

    def _prepare_directory(self) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="tenantry-pg-"))
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                shutil.rmtree(directory, ignore_errors=True)
                raise RuntimeError(
                    f"PostgreSQL refuses to run as root and there is no {SYSTEM_USER!r} "
                    "system user to run it as (apt-get install postgresql creates it)"
                ) from None
            os.chown(directory, self._owner.pw_uid, self._owner.pw_gid)
            self._as_user = ["runuser", "-u", SYSTEM_USER, "--"]
        return directory

    def _run(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}):\n{output}")
        return result.stdout

    @property
    def data(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "postgres.log"

    # -- connections ---------------------------------------------------------------

    def conninfo(self, user: str = APP_ROLE, dbname: str = DATABASE) -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def connect(self, user: str = APP_ROLE, dbname: str = DATABASE) -> psycopg.Connection:
        """A psycopg connection in autocommit mode (the caller closes it)."""
        return psycopg.connect(self.conninfo(user, dbname), autocommit=True)

    def superuser(self, dbname: str = DATABASE) -> psycopg.Connection:
        return self.connect(SUPERUSER, dbname)

    def create_database(self, name: str) -> str:
        """A fresh database owned by the app role (its old copy dropped)."""
        with self.superuser("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}')
        return name

    def env(self, dbname: str = DATABASE) -> dict[str, str]:
        """libpq's variables naming the application's role and database."""
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": APP_ROLE,
            "PGDATABASE": dbname,
        }

    def django_settings(self) -> dict[str, object]:
        """The keys of a ``DATABASES`` entry that reach this server as the app role."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "USER": APP_ROLE,
            "PASSWORD": "",
            "NAME": DATABASE,
        }

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> PostgresServer:
        if self.directory is not None:
            return self
        self.directory = self._prepare_directory()
        try:
            self._run(
                str(self.bin / "initdb"),
                "-D", str(self.data),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
            options = [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.directory}",
                "-c shared_preload_libraries=pg_stat_statements",
                "-c pg_stat_statements.track=all",
                "-c pg_stat_statements.track_planning=on",
                # A throwaway cluster: durability buys nothing here.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                # The soak opens hundreds of ASGI request and WebSocket contexts
                # at once, each with its own connection.
                "-c max_connections=1000",
            ]
            if self.log_statements:
                options.append("-c log_statement=all")
            self._options = " ".join(options)
            self._pg_ctl_start()
            self._create_roles()
        except BaseException:
            self.stop()
            raise
        return self

    def _pg_ctl_start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.log_file),
            "-o", self._options,
            "-w", "-t", str(int(STARTUP_TIMEOUT)),
            "start",
        )  # fmt: skip

    def halt(self) -> None:
        """Stop the server under its clients (``fast``: every session is cut
        off), keeping its data for :meth:`resume`. Not ``immediate``: with
        ``synchronous_commit=off`` that would lose the last commits, a
        different failure than the one tested."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the halted server again on the same port and data."""
        self._pg_ctl_start()

    def _create_roles(self) -> None:
        # Databases are copies of template1: the extension made there first is
        # in the app's database and in pytest-django's test database.
        with self.superuser("template1") as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        with self.superuser("postgres") as conn:
            conn.execute(
                f"CREATE ROLE {APP_ROLE} LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS NOCREATEROLE"
            )
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {APP_ROLE}")

    def stop(self) -> None:
        directory, self.directory = self.directory, None
        if directory is None:
            return
        data = directory / "data"
        try:
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    [*self._as_user, str(self.bin / "pg_ctl"), "-D", str(data),
                     "-m", "fast", "-w", "-t", "30", "stop"],
                    capture_output=True, timeout=60,
                )  # fmt: skip
            self._kill_leftover(data)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    @staticmethod
    def _kill_leftover(data: Path) -> None:
        """The postmaster, if ``pg_ctl stop`` left it running."""
        try:
            pid = int((data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with PostgresServer() as server:
        print(
            f"==> PostgreSQL on 127.0.0.1:{server.port} (role {APP_ROLE}, database {DATABASE})",
            file=sys.stderr,
        )
        child = subprocess.Popen(argv, env={**os.environ, **server.env()})

        # Ctrl-C, `kill` or a closed terminal reach the command, and this
        # process waits for it to end, then stops the cluster (pg_ctl
        # detached it: nothing else would).
        def forward(signum: int, frame: object) -> None:
            if child.poll() is None:
                child.send_signal(signum)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        return child.wait()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
