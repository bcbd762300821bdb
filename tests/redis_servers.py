"""Real Redis servers for the suite: ``redis-server`` processes on free
loopback ports, each with its own temporary directory, no persistence, and
stopped when their fixture ends.

``redis_server`` (session-scoped) is the one most tests share; tests that
stop a server use ``redis_server_factory`` to get their own.
``redis_cluster`` (session-scoped) is a real 3-master Redis Cluster: three
``redis-server`` processes with ``cluster-enabled yes`` (each with its own
directory and nodes file, data and cluster bus on free ports), joined by
``redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`` and
waited for until every node reports ``cluster_state:ok``.
``redis_replicated_cluster`` (session-scoped) is a Redis Cluster of 3
masters, each with a replica, and a short ``cluster-node-timeout``: the
fleet tests kill a master and watch its replica take over
(:class:`ReplicatedRedisCluster`).
``redis_tls_cluster`` (session-scoped) is the same cluster speaking only TLS,
to clients and between nodes, with certificates of one throwaway CA.
``redis_tls_server`` (session-scoped) is a ``redis-server`` that only speaks
TLS (``--port 0 --tls-port …``), with a throwaway CA and a server certificate
for 127.0.0.1/localhost made by ``openssl`` in its directory.
``redis_target`` is parametrized over both (``single``, ``cluster``): the
Redis test suites take it to run against each. A missing ``redis-server``
or ``redis-cli`` is an error, never a skip: scripts/test.sh installs them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import redis.cluster

STARTUP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback TCP port nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; ``stop()`` and ``start()`` again keep
    the port (and forget the data: nothing is persisted)."""

    kind = "single"

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed; scripts/test.sh installs it "
                "(apt-get install redis-server)"
            )
        self.binary = binary
        self.directory = directory
        self.password = password
        self.extra_args = extra_args or []
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A redis-py client for inspecting what the backends stored."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    # The same inspection helpers as RedisCluster, so tests run on both.

    def keys(self, pattern: str) -> list[str]:
        return self.client().keys(pattern)

    def node_client(self, key: str) -> redis.Redis:
        """The client of the server holding ``key`` (this one)."""
        return self.client()

    def node_clients(self) -> list[redis.Redis]:
        return [self.client()]

    def listen_args(self) -> list[str]:
        return ["--port", str(self.port)]

    def start(self) -> RedisServer:
        if self.process is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            *self.listen_args(),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                pass
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited on port {self.port}:\n{log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("openssl is not installed; scripts/env.sh installs it")
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path) -> Path:
    """A throwaway certificate authority in ``directory`` (``ca.pem``, ``ca.key``)."""
    directory.mkdir(parents=True, exist_ok=True)
    # fmt: off
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=tenantry test CA", "-keyout", directory / "ca.key",
             "-out", directory / "ca.pem")
    # fmt: on
    return directory


class TlsRedisServer(RedisServer):
    """A ``redis-server`` listening only on a TLS port, its certificate signed
    by a CA made for it (``ca_file``); clients are not asked for certificates."""

    def __init__(
        self, directory: Path, *, ca: Path | None = None, extra_args: list[str] | None = None
    ) -> None:
        super().__init__(directory, extra_args=extra_args)
        directory.mkdir(parents=True, exist_ok=True)
        # The CA of ``ca`` (a folder made by make_ca), or one of its own.
        ca = ca or make_ca(directory / "ca")
        self.ca_file = ca / "ca.pem"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        csr, ext = directory / "server.csr", directory / "ext.cnf"
        # fmt: off
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", self.key_file, "-out", csr)
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", ca / "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", self.cert_file)
        # fmt: on

    def listen_args(self) -> list[str]:
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.cert_file),
            "--tls-key-file", str(self.key_file),
            "--tls-ca-cert-file", str(self.ca_file),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    @property
    def bare_url(self) -> str:
        """``rediss://`` without a CA: verified against the system's roots."""
        return f"rediss://127.0.0.1:{self.port}/0"

    @property
    def url(self) -> str:
        return f"{self.bare_url}?ssl_ca_certs={self.ca_file}"


class RedisCluster:
    """A Redis Cluster of ``masters`` primaries (no replicas) on loopback.

    Each node is a :class:`RedisServer` with ``cluster-enabled yes``, its own
    directory (and so its own ``nodes.conf``), and its cluster bus on a free
    port of its own (``cluster-port``). ``stop_node``/``start_node`` stop and
    restart one node on the same ports; it rejoins from its nodes file.
    """

    kind = "cluster"
    #: Short, so a stopped node is noticed (and a restarted one accepted)
    #: quickly, long enough not to flap on a busy 2-core machine.
    NODE_TIMEOUT_MS = 3000

    #: Replicas per master.
    REPLICAS = 0

    def __init__(self, directory: Path, *, masters: int = 3) -> None:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError(
                "redis-cli is not installed; scripts/test.sh installs it "
                "(apt-get install redis-tools)"
            )
        self.cli = binary
        count = masters * (1 + self.REPLICAS)
        self.nodes = [self._make_node(directory / f"node-{i}") for i in range(count)]

    def _make_node(self, directory: Path) -> RedisServer:
        return RedisServer(directory, extra_args=self._node_args())

    def _node_args(self) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(free_port()),
            "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS),
        ]  # fmt: skip

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{seeds}/0"

    def _cli_args(self) -> list[str]:
        """What ``redis-cli`` needs to reach the nodes."""
        return []

    def _client_options(self) -> dict[str, object]:
        return {}

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        result = subprocess.run(
            [self.cli, *self._cli_args(), "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.REPLICAS), "--cluster-yes"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            self.stop()
            output = result.stdout + result.stderr
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
        self.wait_ok()
        return self

    def wait_ok(self, limit: float = 60.0) -> None:
        """Until every node reports ``cluster_state:ok`` and the same slots."""
        deadline = time.monotonic() + limit
        while True:
            try:
                infos = [n.client().execute_command("CLUSTER", "INFO") for n in self.nodes]
                states = [info if isinstance(info, str) else str(info) for info in infos]
                if all("cluster_state:ok" in s for s in states):
                    covered = [
                        sum(int(r[1]) - int(r[0]) + 1 for r in n.client().cluster("slots"))
                        for n in self.nodes
                    ]
                    if all(c == 16384 for c in covered):
                        return
            except (redis.RedisError, TypeError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def client(self) -> redis.cluster.RedisCluster:
        node = self.nodes[0]
        return redis.cluster.RedisCluster(
            host="127.0.0.1", port=node.port, decode_responses=True, **self._client_options()
        )

    def keyslot(self, key: str) -> int:
        return int(self.nodes[0].client().execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot."""
        slot = self.keyslot(key)
        for start, end, primary, *_ in self.nodes[0].client().execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(primary[1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def keys(self, pattern: str) -> list[str]:
        return [k for node in self.nodes for k in node.client().keys(pattern)]

    def node_client(self, key: str) -> redis.Redis:
        return self.owner(key).client()

    def node_clients(self) -> list[redis.Redis]:
        return [node.client() for node in self.nodes]


class ReplicatedRedisCluster(RedisCluster):
    """A :class:`RedisCluster` whose masters each have a replica
    (``--cluster-replicas 1``: 3 masters, 3 replicas). ``kill`` SIGKILLs a
    node (no shutdown, no handover: a crash), and its replica is promoted
    once the others have not heard from it for ``NODE_TIMEOUT_MS``;
    ``heal`` starts the dead nodes again (each rejoins from its nodes file,
    as a replica of whoever took its slots) and waits until every master
    has a replica in sync again."""

    REPLICAS = 1
    #: Short, so a failover takes seconds; not so short that a busy 2-core
    #: machine makes nodes look dead.
    NODE_TIMEOUT_MS = 1500

    def _alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def primaries(self) -> list[RedisServer]:
        """The nodes serving slots now (as a live node sees it)."""
        ports = {
            int(primary[1])
            for _s, _e, primary, *_ in self._alive()[0].client().execute_command("CLUSTER", "SLOTS")
        }
        return [n for n in self.nodes if n.port in ports]

    def owner(self, key: str) -> RedisServer:
        slot = self.keyslot(key)
        for start, end, primary, *_ in (
            self._alive()[0].client().execute_command("CLUSTER", "SLOTS")
        ):
            if int(start) <= slot <= int(end):
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(f"no node serves slot {slot}")

    def keyslot(self, key: str) -> int:
        return int(self._alive()[0].client().execute_command("CLUSTER", "KEYSLOT", key))

    def keys(self, pattern: str) -> list[str]:
        """Keys of every primary (replicas hold the same ones)."""
        return [k for node in self.primaries() for k in node.client().keys(pattern)]

    def node_clients(self) -> list[redis.Redis]:
        return [node.client() for node in self.primaries()]

    def client(self) -> redis.cluster.RedisCluster:
        node = self._alive()[0]
        return redis.cluster.RedisCluster(host="127.0.0.1", port=node.port, decode_responses=True)

    def kill(self, node: RedisServer) -> None:
        """SIGKILL ``node``: a crash, its data gone with it (no persistence)."""
        process, node.process = node.process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def wait_ok(self, limit: float = 60.0) -> None:
        """Until every live node reports ``cluster_state:ok`` and full slots."""
        deadline = time.monotonic() + limit
        while True:
            try:
                alive = self._alive()
                infos = [str(n.client().execute_command("CLUSTER", "INFO")) for n in alive]
                if all("cluster_state:ok" in info for info in infos):
                    covered = sum(
                        int(r[1]) - int(r[0]) + 1
                        for r in alive[0].client().execute_command("CLUSTER", "SLOTS")
                    )
                    if covered == 16384:
                        return
            except (redis.RedisError, TypeError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def wait_replicated(self, limit: float = 60.0) -> None:
        """Until every node is up, the cluster ok, and each master has a
        replica whose link to it is up."""
        deadline = time.monotonic() + limit
        while True:
            self.wait_ok(max(1.0, deadline - time.monotonic()))
            try:
                masters = self.primaries()
                synced = 0
                for node in self.nodes:
                    if node in masters:
                        continue
                    info = node.client().info("replication")
                    if info.get("role") == "slave" and info.get("master_link_status") == "up":
                        synced += 1
                if len(masters) * self.REPLICAS == synced == len(self.nodes) - len(masters):
                    return
            except (redis.RedisError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster's replicas did not come back in sync")
            time.sleep(0.1)

    def heal(self) -> None:
        """Starts every killed node again and waits for the replicas."""
        for node in self.nodes:
            if node.process is None:
                node.start()
        self.wait_replicated()

    def start(self) -> ReplicatedRedisCluster:
        super().start()
        self.wait_replicated()
        return self


class TlsRedisCluster(RedisCluster):
    """A :class:`RedisCluster` whose nodes speak only TLS, to clients and on
    the cluster bus (``tls-cluster yes``), with certificates of one CA."""

    def __init__(self, directory: Path, *, masters: int = 3) -> None:
        self.ca = make_ca(directory / "ca")
        self.ca_file = self.ca / "ca.pem"
        super().__init__(directory, masters=masters)

    def _make_node(self, directory: Path) -> RedisServer:
        node_args = [*self._node_args(), "--tls-cluster", "yes"]
        return TlsRedisServer(directory, ca=self.ca, extra_args=node_args)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"rediss+cluster://{seeds}/0?ssl_ca_certs={self.ca_file}"

    def _cli_args(self) -> list[str]:
        return ["--tls", "--cacert", str(self.ca_file)]

    def _client_options(self) -> dict[str, object]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca_file)}


S = TypeVar("S", bound="RedisServer | RedisCluster")


def _running(server: S) -> Iterator[S]:
    """Starts ``server`` (a server or a cluster), yields it, stops it also
    when the tests using it failed."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    yield from _running(RedisCluster(tmp_path_factory.mktemp("redis-cluster")))


@pytest.fixture(scope="session")
def redis_replicated_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ReplicatedRedisCluster]:
    yield from _running(ReplicatedRedisCluster(tmp_path_factory.mktemp("redis-replicated")))


@pytest.fixture(params=["single", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisServer | RedisCluster:
    """The shared single server, then the shared cluster: tests taking this
    run once against each."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster")
    return request.getfixturevalue("redis_server")


@pytest.fixture
def redis_cluster_factory(tmp_path: Path) -> Iterator:
    """``make() -> RedisCluster``: clusters of this test only (tests that
    stop nodes)."""
    clusters: list[RedisCluster] = []

    def make() -> RedisCluster:
        cluster = RedisCluster(tmp_path / f"cluster-{len(clusters)}")
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from _running(RedisServer(tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def redis_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedisServer]:
    yield from _running(TlsRedisServer(tmp_path_factory.mktemp("redis-tls")))


@pytest.fixture(scope="session")
def redis_tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedisCluster]:
    yield from _running(TlsRedisCluster(tmp_path_factory.mktemp("redis-tls-cluster")))


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator:
    """``make(password=None) -> RedisServer``: servers of this test only."""
    servers: list[RedisServer] = []

    def make(*, password: str | None = None) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", password=password)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
