"""State: the in-memory backend against a plain ``dict`` guarded by a
``threading.Lock`` (what an app would write without tenantry), the Redis
backend against ``redis-benchmark -c 1`` for ``GET``/``SET`` on the same
server, and memory per stored key for 1,000,000 small values.

The Redis part starts its own redis-server on a free loopback port and stops
it at the end. The memory-per-key figures come from a fresh child process per
case (so memory freed by earlier benchmarks cannot hide growth): resident set
size before and after storing 1,000,000 keys, and the store's own accounting.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

from benchmarks.timing import fmt_ns, ns_per_item
from tenantry import TenantStateMemoryBackend, TenantStateRedisBackend

KEYS = [f"user:{i:06d}:prefs" for i in range(10_000)]  # 17-byte names
BYTES = b"0123456789abcdef"  # 16 bytes
JSON = {"theme": "dark", "step": 2}
ROUNDS = 5

if TYPE_CHECKING:
    from benchmarks.bench_presence import RedisProcess


def best_of_rounds(timers: dict[str, object]) -> dict[str, float]:
    """Best ns per op for each timer over ``ROUNDS`` rounds, alternating the
    timers so every case sees the same machine load."""
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, timer in timers.items():
            ns = timer()
            best[name] = min(best.get(name, ns), ns)
    return best


def table(title: str, note: str, header: tuple[str, str], rows, goal: str | None, ok=None) -> str:
    """Markdown: heading, note, then the table (``ratio`` = ours ÷ theirs; a
    goal column only when there is a goal)."""
    goal_head, goal_rule = (f" {goal} |", ":---:|") if goal else ("", "")
    lines = [
        f"### {title}",
        "",
        note,
        "",
        f"| operation | {header[0]} | {header[1]} | ratio |{goal_head}",
        f"|---|---:|---:|---:|{goal_rule}",
    ]
    for label, ours, theirs in rows:
        ratio = ours / theirs
        met = f" {'yes' if ok(ratio) else 'NO'} |" if goal else ""
        lines.append(f"| {label} | {fmt_ns(ours)} | {fmt_ns(theirs)} | {ratio:.2f}× |{met}")
    return "\n".join(lines) + "\n"


# --- memory against a locked dict ----------------------------------------------


def memory_table() -> str:
    TenantStateMemoryBackend.clear_all()
    state = TenantStateMemoryBackend("acme")
    lock = threading.Lock()
    store: dict[str, object] = {}

    def d_set(value):
        def op(key):
            with lock:
                store["acme:" + key] = value

        return op

    def d_get(key):
        with lock:
            return store.get("acme:" + key)

    def d_incr(key):
        with lock:
            store["acme:n:" + key] = store.get("acme:n:" + key, 0) + 1

    def d_exists(key):
        with lock:
            return "acme:" + key in store

    def fill(value):
        def prepare():
            for key in KEYS:
                state.set(key, value)
                store["acme:" + key] = value

        return prepare

    nothing = lambda: None  # noqa: E731
    cases = {
        "set, 16-byte bytes": (nothing, lambda k: state.set(k, BYTES), d_set(BYTES)),
        "get, 16-byte bytes": (fill(BYTES), state.get, d_get),
        "set, small JSON dict": (nothing, lambda k: state.set(k, JSON), d_set(JSON)),
        "get, small JSON dict": (fill(JSON), state.get, d_get),
        "set with TTL, 16-byte bytes": (
            nothing,
            lambda k: state.set(k, BYTES, ttl=600),
            d_set(BYTES),
        ),
        "incr": (nothing, lambda k: state.incr("n:" + k), d_incr),
        "exists": (fill(BYTES), state.exists, d_exists),
    }
    timers = {}
    for label, (prepare, ours, theirs) in cases.items():
        timers[(label, "ours")] = lambda p=prepare, o=ours: ns_per_item(p, o, KEYS, repeat=3)
        timers[(label, "dict")] = lambda p=prepare, t=theirs: ns_per_item(p, t, KEYS, repeat=3)
    best = best_of_rounds(timers)
    TenantStateMemoryBackend.clear_all()
    rows = [(label, best[(label, "ours")], best[(label, "dict")]) for label in cases]
    note = (
        "The `dict` stores a reference to the caller's object under one lock; "
        "tenantry validates the key, stores a copy (JSON-encoded for the dict "
        "rows: `get` decodes a fresh object) in a sharded, tenant-scoped, "
        "bounded store with expiry. 10,000 keys, cycled. No goal: for scale."
    )
    return table(
        "State in memory: tenantry against a dict behind a threading.Lock",
        note,
        ("tenantry", "dict + Lock"),
        rows,
        None,
    )


# --- Redis against redis-benchmark --------------------------------------------


def redis_benchmark_ns(server: RedisProcess, command: str, n: int = 20_000) -> float:
    """ns per request of ``redis-benchmark -c 1`` for one command, 16-byte
    values (``-d 16``), like the value tenantry stores below."""
    from benchmarks.bench_presence import redis_benchmark

    return redis_benchmark(server, ["-d", "16", "-t", command], n)


def redis_table(server: RedisProcess) -> str:
    state = TenantStateRedisBackend("acme", redis_url=server.url)
    for key in KEYS[:2000]:
        state.set(key, BYTES)
    keys = KEYS[:2000]
    nothing = lambda: None  # noqa: E731
    timers = {
        "redis-benchmark SET": lambda: redis_benchmark_ns(server, "set", 10_000),
        "redis-benchmark GET": lambda: redis_benchmark_ns(server, "get", 10_000),
        "set": lambda: ns_per_item(nothing, lambda k: state.set(k, BYTES), keys, repeat=2),
        "set with TTL": lambda: ns_per_item(
            nothing, lambda k: state.set(k, BYTES, ttl=600), keys, repeat=2
        ),
        "get": lambda: ns_per_item(nothing, state.get, keys, repeat=2),
        "incr": lambda: ns_per_item(nothing, lambda k: state.incr("n:" + k), keys, repeat=2),
        "exists": lambda: ns_per_item(nothing, state.exists, keys, repeat=2),
    }
    best = best_of_rounds(timers)
    set_ns, get_ns = best["redis-benchmark SET"], best["redis-benchmark GET"]
    rows = [
        ("set (one EVALSHA: SET + index upkeep)", best["set"], set_ns),
        ("set with TTL", best["set with TTL"], set_ns),
        ("incr (one EVALSHA)", best["incr"], set_ns),
        ("get (GET)", best["get"], get_ns),
        ("exists (EXISTS)", best["exists"], get_ns),
    ]
    note = (
        f"`redis-benchmark -c 1 -d 16 -t set|get` on the same server, in "
        f"alternation with tenantry (best of {ROUNDS} rounds each): SET "
        f"{fmt_ns(set_ns)}, GET {fmt_ns(get_ns)} per request. tenantry from "
        "Python, 16-byte values, 2,000 keys cycled; writes are compared with "
        "SET, reads with GET."
    )
    state.delete_tenant()
    return table(
        "State in Redis: single-operation latency against redis-benchmark",
        note,
        ("tenantry", "redis-benchmark"),
        rows,
        "goal ≤ 2×",
        lambda r: r <= 2,
    )


def redis_memory(server: RedisProcess, n: int = 100_000) -> str:
    """Redis' own ``used_memory`` per key, tenantry (key + index entry)
    against a plain ``SET`` of the same name and value."""
    client = server.client
    client.flushall()
    base = client.info("memory")["used_memory"]
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"user:{i:07d}:prefs", "x" * 32)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    plain = (client.info("memory")["used_memory"] - base) / n
    client.flushall()
    base = client.info("memory")["used_memory"]
    state = TenantStateRedisBackend("acme", redis_url=server.url)
    for i in range(n):
        state.set(f"user:{i:07d}:prefs", b"x" * 31)  # + its tag: 32 bytes stored
    ours = (client.info("memory")["used_memory"] - base) / n
    client.flushall()
    return (
        f"Redis memory per key ({n:,} keys, 18-byte name, 32-byte stored value, "
        f"`INFO memory` used_memory): plain `SET` {plain:,.0f} B; tenantry "
        f"{ours:,.0f} B (the key, with its `djust:{{tenant:acme}}:state:` prefix, "
        "plus its entry in the tenant's index).\n"
    )


# --- memory per key ------------------------------------------------------------

MEMORY_CASES = [(16, 8), (16, 32), (16, 100)]
MEMORY_KEYS = 1_000_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def memory_child(name_len: int, value_len: int) -> dict:
    """Runs in a fresh process: stores MEMORY_KEYS keys, reports growth."""
    names = [f"{i:0{name_len}d}" for i in range(MEMORY_KEYS)]
    value = b"v" * value_len
    # A million keys are more than the default share allows one tenant (the
    # store's bounds are not what this measures): both raised to 4 GiB.
    TenantStateMemoryBackend.set_memory_limit(4 << 30, 4 << 30)
    state = TenantStateMemoryBackend("acme")
    before = rss_bytes()
    for name in names:
        state.set(name, value)
    after = rss_bytes()
    stats = TenantStateMemoryBackend.store_stats()
    assert stats["keys"] == MEMORY_KEYS
    return {"rss": (after - before) / MEMORY_KEYS, "accounted": stats["bytes"] / MEMORY_KEYS}


def memory_per_key_table() -> str:
    lines = [
        f"### State in memory: bytes per stored key, {MEMORY_KEYS:,} keys",
        "",
        "One tenant, bytes values, no TTL, a fresh process per row. *RSS* is "
        "the growth of the process' resident set while storing (what the "
        "machine pays: tables, allocations, allocator overhead); *accounted* "
        "is what the store counts against `STATE_MEMORY_MAX_BYTES`. Raw = "
        "name + value bytes as given by the caller.",
        "",
        "| name + value | raw | RSS per key | accounted per key | RSS ÷ raw | goal < 2× |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for name_len, value_len in MEMORY_CASES:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_state", "--memory-child",
             str(name_len), str(value_len)],
            check=True, capture_output=True, text=True, timeout=600,
        ).stdout  # fmt: skip
        result = json.loads(out.strip().splitlines()[-1])
        raw = name_len + value_len
        ratio = result["rss"] / raw
        lines.append(
            f"| {name_len} + {value_len} B | {raw} B | {result['rss']:.0f} B "
            f"| {result['accounted']:.0f} B | {ratio:.2f}× | {'yes' if ratio < 2 else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def run() -> str:
    from benchmarks.bench_presence import RedisProcess

    parts = [memory_table(), memory_per_key_table()]
    server = RedisProcess()
    try:
        parts += [redis_table(server), redis_memory(server)]
    finally:
        server.stop()
    return "\n".join(parts)


if __name__ == "__main__":
    from benchmarks import setup

    # The child too: a store reads the config (Django settings) on first
    # use; the growth is measured after this, in memory_child.
    setup()
    if sys.argv[1:2] == ["--memory-child"]:
        print(json.dumps(memory_child(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        print(run())
