"""A throwaway pgbouncer on loopback, in front of a throwaway PostgreSQL
(tests/postgres_server.py), for the fleet data-plane suites (tests/fleet_data/).

``PgBouncer(server, databases).start()`` writes a configuration into a fresh
temporary folder, starts Debian's ``pgbouncer`` on a free 127.0.0.1 port in
the foreground (a child process this object stops) and waits until it
accepts connections. Each entry of ``databases`` is a database name clients
use, mapped to a database of ``server`` with pgbouncer's per-database
options, e.g.::

    PgBouncer(server, {
        "pooled": "dbname=test_tenantry pool_size=2",                     # transaction pooling
        "single": "dbname=test_tenantry pool_size=1",
        "by_session": "dbname=test_tenantry pool_size=4 pool_mode=session",
    })

``pool_mode = transaction`` is the default of every entry; ``max_db_connections``
bounds the server connections of each database name. Clients log in without
a password (``auth_type = trust``) as the application's role or the
superuser, which pgbouncer passes on to PostgreSQL (the server's
``pg_hba.conf`` trusts loopback).

pgbouncer refuses to run as root: as root it runs as the ``postgres`` system
user (the one PostgreSQL runs as, see tests/postgres_server.py). A missing
pgbouncer is an error, never a skip: scripts/env.sh (``ensure_pgbouncer``)
installs it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.postgres_server import APP_ROLE, SUPERUSER, SYSTEM_USER, PostgresServer, free_port

BINARY = "/usr/sbin/pgbouncer"
STARTUP_TIMEOUT = 30.0


class PgBouncer:
    """One pgbouncer on 127.0.0.1 (see the module docs)."""

    def __init__(self, server: PostgresServer, databases: dict[str, str]) -> None:
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(
                f"pgbouncer is not installed ({BINARY}); scripts/test.sh installs it "
                "(apt-get install pgbouncer)"
            )
        self.server = server
        self.databases = databases
        self.port = free_port()
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        assert self.directory is not None
        lines = ["[databases]"]
        for name, options in self.databases.items():
            lines.append(f"{name} = host=127.0.0.1 port={self.server.port} {options}")
        lines += [
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            f"unix_socket_dir = {self.directory}",
            "auth_type = trust",
            f"auth_file = {self.directory / 'users.txt'}",
            f"admin_users = {SUPERUSER}",
            "pool_mode = transaction",
            "max_client_conn = 200",
            "default_pool_size = 2",
            "max_db_connections = 2",
            "server_round_robin = 0",
            # psycopg and Django send these at log-in; pgbouncer would refuse them.
            "ignore_startup_parameters = extra_float_digits,options",
            f"logfile = {self.directory / 'pgbouncer.log'}",
            "log_connections = 0",
            "log_disconnections = 0",
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> PgBouncer:
        if self.process is not None:
            return self
        self.directory = Path(tempfile.mkdtemp(prefix="tenantry-pgbouncer-"))
        try:
            (self.directory / "users.txt").write_text(f'"{APP_ROLE}" ""\n"{SUPERUSER}" ""\n')
            config = self.directory / "pgbouncer.ini"
            config.write_text(self._config())
            user = None
            if os.geteuid() == 0:
                owner = pwd.getpwnam(SYSTEM_USER)
                for path in (self.directory, *self.directory.iterdir()):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
                user = owner.pw_uid
            self.process = subprocess.Popen(
                [BINARY, str(config)],
                user=user,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                status = self.process.returncode
                raise RuntimeError(f"pgbouncer exited ({status}):\n{self.log_tail()}")
            try:
                with self.admin() as admin:
                    admin.execute("SHOW VERSION")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start:\n{self.log_tail()}") from None
                time.sleep(0.05)

    def conninfo(self, dbname: str, user: str = APP_ROLE) -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def connect(self, dbname: str, user: str = APP_ROLE) -> psycopg.Connection:
        """A psycopg connection through pgbouncer, in autocommit mode, with no
        prepared statements (a transaction pool cannot keep them)."""
        return psycopg.connect(self.conninfo(dbname, user), autocommit=True, prepare_threshold=None)

    def admin(self) -> psycopg.Connection:
        """pgbouncer's admin console (``SHOW POOLS``, ``SHOW SERVERS``): simple
        query protocol only, so statements are sent without parameters."""
        conn = psycopg.connect(self.conninfo("pgbouncer", SUPERUSER), autocommit=True)
        conn.prepare_threshold = None
        return conn

    def show(self, what: str) -> list[dict[str, object]]:
        """``SHOW <what>`` on the admin console, one dict per row."""
        with self.admin() as admin:
            cursor = admin.cursor()
            cursor.execute(f"SHOW {what}", prepare=False)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def django_settings(self, dbname: str) -> dict[str, object]:
        """The keys of a ``DATABASES`` entry that reach ``dbname`` through
        pgbouncer as the app role (no server-side cursors: a transaction
        pool cannot keep them between transactions)."""
        return {
            **self.server.django_settings(),
            "PORT": str(self.port),
            "NAME": dbname,
            "DISABLE_SERVER_SIDE_CURSORS": True,
        }

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return (self.directory / "pgbouncer.log").read_text(errors="replace")[-chars:]  # type: ignore[operator]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
