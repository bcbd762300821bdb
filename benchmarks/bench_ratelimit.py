"""Rate limits: tenantry against django-ratelimit 4.1, in the same run.

* One check in memory: ``tenantry.ratelimit.check()`` (memory store) against
  ``django_ratelimit.core.is_ratelimited(..., increment=True)`` on Django's
  local-memory cache, both counting per client address.
* One check on Redis: tenantry's one ``EVALSHA`` against
  ``redis-benchmark -c 1`` (``SET``) and against django-ratelimit on
  Django's ``RedisCache`` (``SET NX`` + ``INCR``), with the round trips each
  makes per check (Redis' own ``INFO commandstats``).
* Over-admission: 16 threads, then 2 processes, hammer one key whose limit
  is ``LIMIT`` per hour; admitted − limit is what each let through too many.

The Redis parts start their own redis-server on a free loopback port.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from benchmarks.timing import fmt_ns, ns_per_op

LIMIT = 500
THREADS = 16
PER_THREAD = 100
PROCESSES = 2
PER_PROCESS = 800
ROUNDS = 5
HIGH = "1000000/s"  # never refuses during the timing runs
ROOT = Path(__file__).resolve().parent.parent


class Request:
    """What both libraries read for an ``ip`` key."""

    method = "GET"

    def __init__(self, ip: str = "10.1.2.3") -> None:
        self.META = {"REMOTE_ADDR": ip}
        self.tenant = None


def configure(backend: str, redis_url: str | None, prefix: str) -> None:
    """DJUST_CONFIG and CACHES for this backend (tenantry reloads on change)."""
    from django.conf import settings

    from tenantry import conf

    config = dict(settings.DJUST_CONFIG)
    config["TENANT_RATE_LIMITS"] = {"bench": {"rate": HIGH, "key": "tenant+ip"}}
    config["TENANT_KEY_PREFIX"] = prefix
    if backend == "redis":
        config["RATE_LIMIT_BACKEND"] = "tenant_redis"
        config["RATE_LIMIT_REDIS_URL"] = redis_url
        cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    else:
        config.pop("RATE_LIMIT_BACKEND", None)
        cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": prefix}
    settings.DJUST_CONFIG = config
    conf.reload()
    # django-ratelimit reads caches[RATELIMIT_USE_CACHE]; every thread makes
    # its connection from the handler's settings (LocMemCache instances of one
    # LOCATION share one store).
    from django.core.cache import caches

    settings.RATELIMIT_USE_CACHE = "ratelimit"
    caches.__dict__["settings"] = {**caches.settings, "ratelimit": cache}
    try:
        del caches["ratelimit"]
    except AttributeError:
        pass


def checkers(rate: str, group: str):
    from django_ratelimit.core import is_ratelimited

    from tenantry import tenant_context
    from tenantry.ratelimit import get_rate_limiter

    request = Request()
    limiter = get_rate_limiter()
    bound = tenant_context("acme", must_exist=False)

    def ours() -> bool:
        return limiter.check("bench", None, 1, request).allowed

    def theirs() -> bool:
        return not is_ratelimited(
            request, group=group, key="ip", rate=rate, increment=True
        )

    return bound, ours, theirs


def tenant_checkers(group: str):
    """One count for the whole tenant: tenantry's default key against
    django-ratelimit with a constant key (no address parsing)."""
    from django_ratelimit.core import is_ratelimited

    from tenantry.ratelimit import get_rate_limiter

    request = Request()
    limiter = get_rate_limiter()

    def ours() -> bool:
        return limiter.check("bench", "tenant", 1, request).allowed

    def theirs() -> bool:
        return not is_ratelimited(
            request, group=group, key=lambda _group, _request: "acme", rate=HIGH, increment=True
        )

    return ours, theirs


def timing_rows(backend: str, redis_url: str | None = None, server=None) -> dict[str, float]:
    """Best ns per check of each case; with ``server``, ``redis-benchmark -c
    1`` SET runs in the same alternation (loopback latency swings)."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    configure(backend, redis_url, prefix)
    bound, ours, theirs = checkers(HIGH, prefix)
    ours_t, theirs_t = tenant_checkers(prefix + "-t")
    number = 20_000 if backend == "memory" else 2_000
    best: dict[str, float] = {}
    cases = (
        ("tenantry", ours),
        ("django-ratelimit", theirs),
        ("tenantry, tenant", ours_t),
        ("django-ratelimit, tenant", theirs_t),
    )
    with bound:
        for _ in range(ROUNDS):
            for name, fn in cases:
                ns = ns_per_op(fn, number=number, repeat=2)
                best[name] = min(best.get(name, ns), ns)
            if server is not None:
                from benchmarks.bench_state import redis_benchmark_ns

                ns = redis_benchmark_ns(server, "set", 10_000)
                best["redis-benchmark"] = min(best.get("redis-benchmark", ns), ns)
    return best


PAIRED_ROUNDS = 21


#: The least a GCRA in one round trip asks of Redis: its clock, the stored
#: TAT, the new TAT with its expiry (no arithmetic, a constant reply).
FLOOR_SCRIPT = (
    "local t = redis.call('TIME') local s = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], '1700000000000000', 'PX', 1000) return 0"
)


def paired_redis_ratios(server, redis_url: str) -> tuple[list[float], list[float]]:
    """Per round, over ``redis-benchmark -c 1`` SET timed just before:
    tenantry's Redis check, and ``redis-benchmark`` itself running
    :data:`FLOOR_SCRIPT`. Paired per round because this shared machine's
    loopback round trip moves by a third between runs, and a ratio of two
    bests taken apart reads that swing as a change."""
    from benchmarks.bench_presence import redis_benchmark
    from benchmarks.bench_state import redis_benchmark_ns

    prefix = f"paired-{uuid.uuid4().hex[:6]}"
    configure("redis", redis_url, prefix)
    bound, ours, _theirs = checkers(HIGH, prefix)
    floor_sha = server.client.script_load(FLOOR_SCRIPT)
    ratios, floors = [], []
    with bound:
        for _ in range(PAIRED_ROUNDS):
            base = redis_benchmark_ns(server, "set", 4_000)
            ratios.append(ns_per_op(ours, number=1_000, repeat=1) / base)
            floor = redis_benchmark(server, ["EVALSHA", floor_sha, "1", "{floor}:k"], 4_000)
            floors.append(floor / base)
    return sorted(ratios), sorted(floors)


def flat_in_tenants() -> list[tuple[int, float]]:
    """ns per memory check, one key per tenant, cycling over N tenants."""
    from benchmarks.timing import ns_per_item
    from tenantry.ratelimit import TenantRateLimiter, get_rate_limiter

    prefix = f"flat-{uuid.uuid4().hex[:6]}"
    configure("memory", None, prefix)
    limiter = get_rate_limiter()
    out = []
    for n in (1, 1_000, 100_000):
        TenantRateLimiter.clear_all()
        tenants = [f"t{i}" for i in range(n)] * max(1, 20_000 // n)
        for t in tenants[:n]:
            limiter.check("bench", "tenant", 1, None, tenant=t)
        best = min(
            ns_per_item(lambda: None, lambda t: limiter.check("bench", "tenant", 1, None, tenant=t),
                        tenants, repeat=2)
            for _ in range(ROUNDS)
        )  # fmt: skip
        out.append((n, best))
    TenantRateLimiter.clear_all()
    return out


def commands_per_check(server, redis_url: str) -> dict[str, tuple[float, float, float]]:
    """(round trips, server commands, server µs) per check, from ``INFO
    commandstats``; a script's µs include the commands it calls."""
    prefix = f"rt-{uuid.uuid4().hex[:6]}"
    configure("redis", redis_url, prefix)
    bound, ours, theirs = checkers(HIGH, prefix)
    out = {}
    reps = 1_000

    def plain_set() -> None:
        server.client.set(f"{prefix}:set", b"x" * 16)

    with bound:
        for name, fn in (("tenantry", ours), ("django-ratelimit", theirs), ("SET", plain_set)):
            fn()  # load the script / open the connection
            server.client.config_resetstat()
            for _ in range(reps):
                fn()
            stats = {
                k.removeprefix("cmdstat_"): v
                for k, v in server.client.info("commandstats").items()
                if not k.startswith(("cmdstat_config", "cmdstat_info"))
            }
            commands = sum(v["calls"] for v in stats.values()) / reps
            scripts = [v for k, v in stats.items() if k in ("evalsha", "eval")]
            if scripts:
                trips = sum(v["calls"] for v in scripts) / reps
                usec = sum(v["usec"] for v in scripts) / reps
            else:  # no scripts, no pipelines: one command, one trip
                trips = commands
                usec = sum(v["usec"] for v in stats.values()) / reps
            out[name] = (trips, commands, usec)
    return out


# --- over-admission ---------------------------------------------------------------


def hammer_threads(backend: str, redis_url: str | None) -> dict[str, int]:
    rate = f"{LIMIT}/h"
    prefix = f"thr-{uuid.uuid4().hex[:6]}"
    configure(backend, redis_url, prefix)
    from django.conf import settings

    from tenantry import conf

    config = dict(settings.DJUST_CONFIG)
    config["TENANT_RATE_LIMITS"] = {"bench": {"rate": rate, "key": "tenant+ip"}}
    settings.DJUST_CONFIG = config
    conf.reload()
    _bound, ours, theirs = checkers(rate, prefix)
    from tenantry import tenant_context

    admitted = {}
    for name, fn in (("tenantry", ours), ("django-ratelimit", theirs)):
        counts = [0] * THREADS
        start = threading.Barrier(THREADS)

        def run(i: int, fn=fn, counts=counts, start=start) -> None:
            with tenant_context("acme", must_exist=False):
                start.wait()
                counts[i] = sum(fn() for _ in range(PER_THREAD))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        admitted[name] = sum(counts)
    return admitted


def child(backend: str, redis_url: str, prefix: str, which: str) -> None:
    """Runs in a child process: hammers one key, prints how many passed."""
    from benchmarks import setup

    setup()
    rate = f"{LIMIT}/h"
    configure(backend, redis_url or None, prefix)
    from django.conf import settings

    from tenantry import conf, tenant_context

    config = dict(settings.DJUST_CONFIG)
    config["TENANT_RATE_LIMITS"] = {"bench": {"rate": rate, "key": "tenant+ip"}}
    settings.DJUST_CONFIG = config
    conf.reload()
    _bound, ours, theirs = checkers(rate, prefix)
    fn = ours if which == "tenantry" else theirs
    sys.stdin.readline()  # start together
    with tenant_context("acme", must_exist=False):
        print(json.dumps(sum(fn() for _ in range(PER_PROCESS))))


def hammer_processes(backend: str, redis_url: str | None) -> dict[str, int]:
    admitted = {}
    prefix = f"proc-{uuid.uuid4().hex[:6]}"
    for which in ("tenantry", "django-ratelimit"):
        command = [
            sys.executable, "-m", "benchmarks.bench_ratelimit", "--child", backend,
            redis_url or "", prefix, which,
        ]  # fmt: skip
        procs = [
            subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
            )
            for _ in range(PROCESSES)
        ]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=300)[0] for p in procs]
        admitted[which] = sum(json.loads(o.strip().splitlines()[-1]) for o in outs)
    return admitted


def run() -> str:
    from benchmarks.bench_presence import RedisProcess

    memory = timing_rows("memory")
    flat = flat_in_tenants()
    server = RedisProcess()
    try:
        redis_times = timing_rows("redis", server.url, server)
        rb = redis_times["redis-benchmark"]
        paired, floors = paired_redis_ratios(server, server.url)
        trips = commands_per_check(server, server.url)
        over = {
            ("memory", "threads"): hammer_threads("memory", None),
            ("memory", "processes"): hammer_processes("memory", None),
            ("Redis", "threads"): hammer_threads("redis", server.url),
            ("Redis", "processes"): hammer_processes("redis", server.url),
        }
    finally:
        server.stop()

    speed = memory["django-ratelimit"] / memory["tenantry"]
    speed_t = memory["django-ratelimit, tenant"] / memory["tenantry, tenant"]
    redis_ratio = redis_times["tenantry"] / rb
    paired_median = statistics.median(paired)
    floor_median = statistics.median(floors)
    lines = [
        "## Rate limits",
        "",
        "tenantry against django-ratelimit 4.1 (`is_ratelimited(..., increment=True)`), "
        "both counting per client address (tenantry: `key=\"tenant+ip\"` under a bound "
        f"tenant), best of {ROUNDS} alternating rounds. Full numbers: a check that "
        "passes (the limit is never reached while timing).",
        "",
        "### One check",
        "",
        "| case | django-ratelimit | tenantry | ratio | goal |",
        "|---|---:|---:|---:|:---:|",
        f"| memory, per address (LocMemCache vs tenantry's memory store) "
        f"| {fmt_ns(memory['django-ratelimit'])} "
        f"| {fmt_ns(memory['tenantry'])} | {speed:,.1f}× faster | ≥ 5×: "
        f"{'yes' if speed >= 5 else 'NO'} |",
        f"| memory, one count per tenant (django-ratelimit: a constant key) "
        f"| {fmt_ns(memory['django-ratelimit, tenant'])} "
        f"| {fmt_ns(memory['tenantry, tenant'])} | {speed_t:,.1f}× faster | ≥ 5×: "
        f"{'yes' if speed_t >= 5 else 'NO'} |",
        f"| Redis (RedisCache vs one EVALSHA) | {fmt_ns(redis_times['django-ratelimit'])} "
        f"| {fmt_ns(redis_times['tenantry'])} "
        f"| {redis_times['django-ratelimit'] / redis_times['tenantry']:,.1f}× faster | — |",
        "",
        f"Redis against `redis-benchmark -c 1 -t set -d 16` on the same server: "
        f"{PAIRED_ROUNDS} rounds, each timing 4,000 `SET`s of `redis-benchmark` and "
        f"then 1,000 tenantry checks: median ratio **{paired_median:.2f}×** (rounds: "
        f"{paired[0]:.2f}–{paired[-1]:.2f}×; goal ≤ 1.5×: "
        f"{'yes' if paired_median <= 1.5 else 'NO'}). In the same rounds, "
        f"`redis-benchmark` itself running the least script a one-round-trip GCRA "
        f"needs (`TIME`, `GET`, `SET … PX`, constant reply): median "
        f"{floor_median:.2f}× (rounds: {floors[0]:.2f}–{floors[-1]:.2f}×). Best of "
        f"each, taken apart: {fmt_ns(rb)} per request and "
        f"{fmt_ns(redis_times['tenantry'])} per check = {redis_ratio:.2f}×.",
        "",
        "Memory check by number of tenants (one key each, cycled; tenantry's "
        "`check(..., tenant=id)`): "
        + ", ".join(f"{n:,} tenants {fmt_ns(ns)}" for n, ns in flat)
        + ".",
        "",
        "### Redis round trips and commands per check",
        "",
        "| | round trips | server commands | server time |",
        "|---|---:|---:|---:|",
    ]
    for name in ("django-ratelimit", "tenantry", "SET"):
        t, c, us = trips[name]
        label = "a bare `SET` (for scale)" if name == "SET" else name
        lines.append(f"| {label} | {t:.2f} | {c:.2f} | {us:.1f} µs |")
    lines += [
        "",
        f"### Over-admission: one key, limit {LIMIT} per hour",
        "",
        f"{THREADS} threads × {PER_THREAD} checks, or {PROCESSES} processes × "
        f"{PER_PROCESS} checks, started together on one key. Admitted − limit: 0 is "
        "exact. Memory stores are per process by design (both libraries): across "
        "processes, use Redis.",
        "",
        "| store | clients | django-ratelimit admitted | tenantry admitted | "
        "django-ratelimit over | tenantry over |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (store, clients), got in over.items():
        theirs, ours = got["django-ratelimit"], got["tenantry"]
        lines.append(
            f"| {store} | {clients} | {theirs} | {ours} | {theirs - LIMIT:+d} | {ours - LIMIT:+d} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:6])
    else:
        from benchmarks import setup

        setup()
        print(run())
