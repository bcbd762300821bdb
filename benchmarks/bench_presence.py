"""Presence: tenantry's backends against djust.tenants' (in memory and in
Redis), tenantry's per-connection ``track``/``untrack`` against its own
user-keyed ``join``/``leave`` (same run), Redis round trips and commands per
operation (from ``INFO commandstats``), and single-operation latency against
``redis-benchmark -c 1`` on the same server. The Redis part starts its own
redis-server on a free loopback port and stops it at the end.

Datasets: one tenant with a 10-user room; 1,000 tenants × 10 rooms × 10
users (the measured room is one of them); 100,000 tenants × 1 room × 1 user
(memory only); and single rooms of 10, 1,000 and 10,000 users for ``list``
and ``count``. Both libraries get the same dataset, built before timing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

import redis
from djust.tenants.backends import TenantAwareMemoryBackend as DjustMemory
from djust.tenants.backends import TenantAwareRedisBackend as DjustRedis

from benchmarks.timing import fmt_ns, ns_per_item, ns_per_op, ratio_table
from tenantry import TenantAwareMemoryBackend, TenantAwareRedisBackend
from tenantry.presence import PRESENCE_DEFAULT_REF

META = {"name": "Alice", "color": "#6c63ff"}
ROOM = "room5"
TARGET = "t500"  # the measured tenant of the many-tenant datasets
NEW_USERS = [f"new{i}" for i in range(200)]
#: Presence timeout of every Redis backend here (both libraries): the
#: datasets are written once, untimed, and a busy machine can take more than
#: the default minute to get through a section; with the default they would
#: expire mid-measurement and the lists would time empty rooms.
TIMEOUT = 3600


# --- datasets --------------------------------------------------------------


def scenarios() -> list[tuple[str, list[tuple[str, str, int]], str]]:
    """(label, [(tenant, room, users)], measured tenant)."""
    return [
        ("1 tenant", [("acme", ROOM, 10)], "acme"),
        (
            "1,000 tenants × 10 rooms × 10 users",
            [(f"t{t}", f"room{r}", 10) for t in range(1000) for r in range(10)],
            TARGET,
        ),
    ]


def users(n: int) -> list[str]:
    return [f"u{i}" for i in range(n)]


# --- memory ---------------------------------------------------------------


def fill_memory(make, layout) -> None:
    for tenant, room, n in layout:
        backend = make(tenant)
        for user in users(n):
            backend.join(room, user, META)


OPS = ("join", "leave", "heartbeat", "list", "count")
# Loopback latency on a VM swings between runs and within one: every
# comparison alternates the two sides and keeps the best of each.
ROUNDS = 5


def op_timers(backend, room: str, number: int) -> dict[str, Callable[[], float]]:
    """One timer per operation on ``room`` (which holds users ``u0``…)."""

    def clear_new():
        for u in NEW_USERS:
            backend.leave(room, u)

    def join_new():
        for u in NEW_USERS:
            backend.join(room, u, META)

    return {
        "join": lambda: ns_per_item(
            clear_new, lambda u: backend.join(room, u, META), NEW_USERS, repeat=2
        ),
        "leave": lambda: ns_per_item(
            join_new, lambda u: backend.leave(room, u), NEW_USERS, repeat=2
        ),
        "heartbeat": lambda: ns_per_op(
            lambda: backend.heartbeat(room, "u1"), number=number, repeat=2
        ),
        "list": lambda: ns_per_op(lambda: backend.list(room), number=number, repeat=2),
        "count": lambda: ns_per_op(lambda: backend.count(room), number=number, repeat=2),
    }


def compare(timers: dict[str, dict[str, Callable[[], float]]], ops=OPS) -> dict:
    """Best time per (library, operation) over ``ROUNDS`` rounds that
    alternate the libraries operation by operation, so both see the same
    machine load."""
    best: dict[str, dict[str, float]] = {lib: {} for lib in timers}
    for _ in range(ROUNDS):
        for op in ops:
            for lib, lib_timers in timers.items():
                ns = lib_timers[op]()
                best[lib][op] = min(best[lib].get(op, ns), ns)
    return best


def memory_tables() -> str:
    libs: dict[str, tuple[Callable, Callable]] = {
        "djust": (lambda t: DjustMemory(t), DjustMemory.clear_all),
        "tenantry": (lambda t: TenantAwareMemoryBackend(t), TenantAwareMemoryBackend.clear_all),
    }
    rows: list[tuple[str, float, float]] = []
    layouts = [*scenarios(), ("100,000 tenants × 1 room × 1 user", None, "t50000")]
    for label, layout, target in layouts:
        if layout is None:  # built lazily: 100k entries
            layout = [(f"t{t}", ROOM, 1) for t in range(100_000)]
        for make, clear_all in libs.values():
            clear_all()
            fill_memory(make, layout)
        best = compare(
            {name: op_timers(make(target), ROOM, 10_000) for name, (make, _) in libs.items()}
        )
        for _, clear_all in libs.values():
            clear_all()
        for op in OPS:
            rows.append((f"{op}, {label}", best["djust"][op], best["tenantry"][op]))
    size_rows = []
    for size in (10, 1_000, 10_000):
        for make, clear_all in libs.values():
            clear_all()
            fill_memory(make, [("acme", "big", size)])
        number = max(10, 100_000 // size)
        best = compare(
            {name: op_timers(make("acme"), "big", number) for name, (make, _) in libs.items()},
            ops=("list", "count"),
        )
        for _, clear_all in libs.values():
            clear_all()
        for op in ("list", "count"):
            size_rows.append(
                (f"{op}, room of {size:,} users", best["djust"][op], best["tenantry"][op])
            )
    return "\n".join(
        [
            ratio_table("Presence in memory: per operation", rows, goal=10),
            ratio_table("Presence in memory: list and count by room size", size_rows, goal=10),
        ]
    )


# --- Redis ----------------------------------------------------------------


class RedisProcess:
    """redis-server on a free loopback port, in its own temporary directory."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/bench.sh installs it)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="tenantry-bench-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def fill_redis(server: RedisProcess, layout) -> None:
    """Writes both libraries' layouts directly (pipelined, untimed). Ours: each
    user with one connection of the default ref, as ``join`` leaves it
    (docs/presence.md, "Redis key layout")."""
    client = server.client
    now = float(client.time()[0])
    pipe = client.pipeline(transaction=False)
    ours: dict[str, TenantAwareRedisBackend] = {}
    meta = json.dumps(META)
    for i, (tenant, room, n) in enumerate(layout):
        backend = ours.setdefault(
            tenant, TenantAwareRedisBackend(tenant, redis_url=server.url, timeout=TIMEOUT)
        )
        users_key, conns_key, refs_key, data_key = backend.keys_for(room)
        dz = f"djust:tenant:{tenant}:{room}:zset"
        dm = f"djust:tenant:{tenant}:{room}:meta"
        for user in users(n):
            record = {"id": user, "tenant_id": tenant, "joined_at": now, "meta": META}
            field = f"{len(user)}:{user}"
            conn = f"{field}:{PRESENCE_DEFAULT_REF}"
            pipe.zadd(users_key, {field: now})
            pipe.zadd(conns_key, {conn: now})
            pipe.zadd(refs_key, {conn: 0})
            pipe.hset(data_key, mapping={field: f"{now:.6f} {meta}", conn: f"{now:.6f} {meta}"})
            pipe.zadd(dz, {user: now})
            pipe.hset(dm, user, json.dumps(record))
        for key in (users_key, conns_key, refs_key, data_key, dz, dm):
            pipe.expire(key, 2 * TIMEOUT)
        if i % 200 == 0:
            pipe.execute()
    pipe.execute()


def redis_tables(server: RedisProcess) -> str:
    rows: list[tuple[str, float, float]] = []
    for label, layout, target in scenarios():
        server.client.flushall()
        fill_redis(server, layout)
        best = compare(
            {
                "djust": op_timers(
                    DjustRedis(tenant_id=target, redis_url=server.url, timeout=TIMEOUT), ROOM, 500
                ),
                "tenantry": op_timers(
                    TenantAwareRedisBackend(target, redis_url=server.url, timeout=TIMEOUT),
                    ROOM,
                    500,
                ),
            }
        )
        for op in OPS:
            rows.append((f"{op}, {label}", best["djust"][op], best["tenantry"][op]))
    size_rows = []
    for size in (10, 1_000, 10_000):
        server.client.flushall()
        fill_redis(server, [("acme", "big", size)])
        backends = {
            "djust": DjustRedis(tenant_id="acme", redis_url=server.url, timeout=TIMEOUT),
            "tenantry": TenantAwareRedisBackend("acme", redis_url=server.url, timeout=TIMEOUT),
        }
        for name, backend in backends.items():
            assert len(backend.list("big")) == size, (name, size)
        number = max(2, 5_000 // size)
        # Milliseconds over loopback vary from sample to sample on a VM:
        # more samples, best kept, for both libraries alike.
        best = compare(
            {
                name: {
                    "list": lambda b=backend, n=number: ns_per_op(
                        lambda: b.list("big"), number=n, repeat=5
                    ),
                    "count": lambda b=backend: ns_per_op(
                        lambda: b.count("big"), number=500, repeat=2
                    ),
                }
                for name, backend in backends.items()
            },
            ops=("list", "count"),
        )
        for op in ("list", "count"):
            goal = 10 if (op, size) == ("list", 1_000) else None
            size_rows.append(
                (f"{op}, room of {size:,} users", best["djust"][op], best["tenantry"][op], goal)
            )
    return "\n".join(
        [
            ratio_table("Presence in Redis: per operation", rows, goal=None),
            ratio_table("Presence in Redis: list and count by room size", size_rows, goal=None),
        ]
    )


def connection_timers(backend, room: str) -> dict[str, Callable[[], float]]:
    """Per-connection ``track``/``untrack`` and user-keyed ``join``/``leave``
    of the same 200 new users on ``room`` (which holds 10 users)."""

    def clear_new():
        for u in NEW_USERS:
            backend.leave(room, u)

    def join_new():
        for u in NEW_USERS:
            backend.join(room, u, META)

    def track_new():
        for u in NEW_USERS:
            backend.track(room, u, "tab-1", META)

    def tab_two():
        clear_new()
        track_new()

    def tabs_new():
        track_new()
        for u in NEW_USERS:
            backend.track(room, u, "tab-2", META)

    def timer(prepare, op):
        return lambda: ns_per_item(prepare, op, NEW_USERS, repeat=2)

    return {
        "join": timer(clear_new, lambda u: backend.join(room, u, META)),
        "track": timer(clear_new, lambda u: backend.track(room, u, "tab-1", META)),
        "track, second tab": timer(tab_two, lambda u: backend.track(room, u, "tab-2", META)),
        "leave": timer(join_new, lambda u: backend.leave(room, u)),
        "untrack": timer(track_new, lambda u: backend.untrack(room, u, "tab-1")),
        "untrack, one of two tabs": timer(tabs_new, lambda u: backend.untrack(room, u, "tab-2")),
    }


#: ``(per-connection operation, the user-keyed one it is compared with)``.
CONNECTION_PAIRS = (
    ("track", "join"),
    ("track, second tab", "join"),
    ("untrack", "leave"),
    ("untrack, one of two tabs", "leave"),
)


def connection_table(server: RedisProcess) -> str:
    """tenantry's per-connection operations against its own user-keyed ones,
    memory and Redis, alternating operation by operation (goal: a connection
    costs at most 1.2× a user-keyed call)."""
    TenantAwareMemoryBackend.clear_all()
    memory = TenantAwareMemoryBackend("acme")
    for user in users(10):
        memory.join(ROOM, user, META)
    server.client.flushall()
    fill_redis(server, [("acme", ROOM, 10)])
    rows = []
    for label, backend in (
        ("memory", memory),
        ("Redis", TenantAwareRedisBackend("acme", redis_url=server.url, timeout=TIMEOUT)),
    ):
        timers = connection_timers(backend, ROOM)
        best: dict[str, float] = {}
        for _ in range(ROUNDS):
            for op, timer in timers.items():
                ns = timer()
                best[op] = min(best.get(op, ns), ns)
        for ours, theirs in CONNECTION_PAIRS:
            rows.append((f"{ours} vs {theirs}, {label}", best[theirs], best[ours]))
    TenantAwareMemoryBackend.clear_all()
    return ratio_table(
        "Presence per connection against user-keyed calls (goal: ≤ 1.2×, i.e. speed-up ≥ 0.83×)",
        rows,
        goal=0.83,
        ours="track/untrack",
        theirs="join/leave",
    )


class CountingConnection(redis.Connection):
    """redis-py connection that counts requests sent (one per round trip: a
    pipeline is sent as one request)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent += 1
        return super().send_packed_command(command, check_health)


def command_stats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): v["calls"]
        for name, v in stats.items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }


def round_trip_table(server: RedisProcess) -> str:
    """Round trips and server-side commands per operation (10-user room,
    and a 1,000-user room for list)."""
    server.client.flushall()
    fill_redis(server, [("acme", ROOM, 10), ("acme", "big", 1_000)])
    pool = redis.ConnectionPool.from_url(server.url, connection_class=CountingConnection)
    djust = DjustRedis(tenant_id="acme", redis_url=server.url, timeout=TIMEOUT)
    djust._client = redis.Redis(connection_pool=pool, decode_responses=True)
    djust._client.ping()  # open the connection (its handshake is not an operation's)
    ours = TenantAwareRedisBackend("acme", redis_url=server.url, timeout=TIMEOUT)
    # Load every script (a first call loads its script with EVAL).
    ours.count(ROOM)
    ours.list(ROOM)
    ours.heartbeat(ROOM, "u1")
    ours.untrack(ROOM, "u1", "warm-up")
    ours.leave(ROOM, "nobody")
    reps = 50
    cases: list[tuple[str, Callable[[object], object]]] = [
        ("join", lambda b: b.join(ROOM, "u1", META)),
        ("leave (present user)", None),
        ("heartbeat", lambda b: b.heartbeat(ROOM, "u1")),
        ("track (same ref again)", "retrack"),
        ("track (a tab per call)", "tabs"),
        ("untrack (one of two tabs)", "untrack"),
        ("count", lambda b: b.count(ROOM)),
        ("list, 10 users", lambda b: b.list(ROOM)),
        ("list, 1,000 users", lambda b: b.list("big")),
    ]
    lines = [
        "### Redis round trips and commands per operation",
        "",
        "Commands are Redis' own count (`INFO commandstats`, every command the "
        "server ran for the operation, the ones inside tenantry's Lua script "
        "included). Round trips: tenantry's are the requests the server read "
        "(`total_reads_processed`; `list` sends its script and an `HGETALL` "
        "pipelined behind it, one request); djust's are the requests redis-py "
        "sent (a pipeline is one).",
        "",
        "| operation | djust round trips | djust commands | tenantry round trips "
        "| tenantry commands | tenantry top-level commands |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, op in cases:
        per: dict[str, tuple[float, float, str]] = {}
        for name, backend in (("djust", djust), ("tenantry", ours)):
            if not hasattr(backend, "track") and op in ("retrack", "tabs", "untrack"):
                per[name] = (float("nan"), float("nan"), "")  # djust has no connections
                continue
            if op is None:  # leave: join first (untimed, uncounted)
                for i in range(reps):
                    backend.join(ROOM, f"leaver{i}", META)
            if op == "untrack":  # two tabs each first (untimed, uncounted)
                for i in range(reps):
                    backend.track(ROOM, f"tabbed{i}", "a", META)
                    backend.track(ROOM, f"tabbed{i}", "b", META)
            server.client.config_resetstat()
            CountingConnection.sent = 0
            reads = server.client.info("stats")["total_reads_processed"]
            for i in range(reps):
                if op is None:
                    backend.leave(ROOM, f"leaver{i}")
                elif op == "retrack":
                    backend.track(ROOM, "u1", "tab-1", META)
                elif op == "tabs":
                    backend.track(ROOM, "u2", f"tab-{i}", META)
                elif op == "untrack":
                    backend.untrack(ROOM, f"tabbed{i}", "b")
                elif callable(op):
                    op(backend)
            # Less this INFO's own read.
            read = server.client.info("stats")["total_reads_processed"] - reads - 1
            stats = command_stats(server.client)
            commands = sum(stats.values()) / reps
            if name == "tenantry":
                top = {k: v for k, v in stats.items() if k in ("evalsha", "eval", "script|load")}
                trips = read / reps
                shown = ", ".join(f"{k} × {v / reps:g}" for k, v in sorted(top.items()))
            else:
                trips = CountingConnection.sent / reps
                shown = ""
            per[name] = (trips, commands, shown)
        lines.append(
            f"| {label} | {per['djust'][0]:g} | {per['djust'][1]:g} | {per['tenantry'][0]:g} "
            f"| {per['tenantry'][1]:g} | {per['tenantry'][2]} |"
        )
    return "\n".join(lines) + "\n"


def redis_benchmark(server: RedisProcess, args: list[str], n: int) -> float:
    """ns per request of ``redis-benchmark -c 1 -n n`` with ``args`` (a
    ``-t`` test list, or one command of its own); the fastest line."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-c", "1",
         "-n", str(n), "--csv", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout  # fmt: skip
    best = 0.0
    for line in out.splitlines()[1:]:
        fields = [f.strip('"') for f in line.split(",")]
        try:
            best = max(best, float(fields[1]))
        except (IndexError, ValueError):
            continue
    if best == 0.0:
        raise RuntimeError(f"no result from redis-benchmark {args}: {out!r}")
    return 1e9 / best


def redis_benchmark_ns(server: RedisProcess, command: str, n: int = 20_000) -> float:
    """ns per request of ``redis-benchmark -c 1`` for one command."""
    return redis_benchmark(server, ["-t", command], n)


def latency_table(server: RedisProcess) -> str:
    """Our single operations against ``redis-benchmark -c 1`` for ZADD and
    PING, measured in alternation (``ROUNDS`` rounds, best of each) so both sides see
    the same machine load."""
    server.client.flushall()
    fill_redis(server, [("acme", ROOM, 10)])
    backend = TenantAwareRedisBackend("acme", redis_url=server.url, timeout=TIMEOUT)
    best: dict[str, float] = {}

    def keep(name: str, ns: float) -> None:
        best[name] = min(best.get(name, ns), ns)

    for _ in range(ROUNDS):
        for cmd in ("ping", "zadd"):
            keep(cmd, redis_benchmark_ns(server, cmd, n=5_000))
        for op, timer in op_timers(backend, ROOM, 500).items():
            keep(op, timer())
    lines = [
        "### Redis single-operation latency against redis-benchmark",
        "",
        f"`redis-benchmark -c 1 -t <command>` on the same server, in alternation with "
        f"tenantry's operations (best of {ROUNDS} rounds each): PING {fmt_ns(best['ping'])}, "
        f"ZADD {fmt_ns(best['zadd'])} per request. tenantry's operation (from Python, "
        "through its Lua script, 10-user room) against one ZADD:",
        "",
        "| operation | tenantry | redis-benchmark ZADD | ratio | goal ≤ 2× |",
        "|---|---:|---:|---:|:---:|",
    ]
    for op in ("join", "leave", "heartbeat", "count", "list"):
        ratio = best[op] / best["zadd"]
        label = "list (10 users)" if op == "list" else op
        lines.append(
            f"| {label} | {fmt_ns(best[op])} | {fmt_ns(best['zadd'])} | {ratio:.2f}× "
            f"| {'yes' if ratio <= 2 else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def run() -> str:
    parts = [memory_tables()]
    server = RedisProcess()
    try:
        parts += [
            redis_tables(server),
            connection_table(server),
            round_trip_table(server),
            latency_table(server),
        ]
    finally:
        server.stop()
    return "\n".join(parts)


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
