"""A streaming read replica of a throwaway PostgreSQL (tests/postgres_server.py),
for the fleet data-plane suites (tests/fleet_data/test_replica.py).

``StreamingReplica(primary).start()`` copies the running primary with
``pg_basebackup`` (``-R``: it writes ``standby.signal`` and the
``primary_conninfo`` that streams from the primary) into a fresh temporary
folder, and starts it as a hot standby on another free 127.0.0.1 port. Every
role and database of the primary is there, and every later change streams
to it; :meth:`caught_up` waits until it has replayed what the primary wrote.
The primary's ``pg_hba.conf`` (initdb's) trusts replication from loopback.
"""

from __future__ import annotations

import time

from tests.postgres_server import APP_ROLE, DATABASE, SUPERUSER, PostgresServer

CATCH_UP_TIMEOUT = 30.0


class StreamingReplica(PostgresServer):
    """A hot standby streaming from ``primary`` (see the module docs)."""

    def __init__(self, primary: PostgresServer) -> None:
        super().__init__()
        self.primary = primary

    def start(self) -> StreamingReplica:
        if self.directory is not None:
            return self
        self.directory = self._prepare_directory()
        try:
            self._run(
                str(self.bin / "pg_basebackup"),
                "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", SUPERUSER,
                "-D", str(self.data),
                "-R", "-X", "stream", "--no-sync", "--checkpoint=fast",
            )  # fmt: skip
            self._options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={self.directory}",
                    "-c hot_standby=on",
                    "-c fsync=off",
                    # A standby needs at least the primary's max_connections.
                    "-c max_connections=1000",
                ]
            )
            self._pg_ctl_start()
        except BaseException:
            self.stop()
            raise
        return self

    def _create_roles(self) -> None:  # they stream from the primary
        raise NotImplementedError

    def caught_up(self, dbname: str = DATABASE) -> None:
        """Wait until the replica has replayed everything the primary has
        written so far."""
        with self.primary.superuser(dbname) as primary:
            primary.execute("SELECT pg_switch_wal()")  # flush the current WAL now
            (target,) = primary.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        with self.superuser(dbname) as replica:
            while True:
                (done,) = replica.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [str(target)]
                ).fetchone()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the replica did not replay up to {target}")
                time.sleep(0.02)


__all__ = ["APP_ROLE", "StreamingReplica"]
