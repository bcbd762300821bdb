"""Concurrency soak: the demo under daphne (a real ASGI server; sync code on
asgiref's thread pool), hit by hundreds of concurrent clients of 40 tenants
over HTTP and WebSocket. Every response and event must carry only its own
tenant's data, and every write must land in its own tenant. The figures go to
test-output/soak.json."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3

import pytest

from tests.demo_server import ROOT, demo_database, demo_server, dump_stacks
from tests.soak import (
    MARK,
    STALL_HOOKS,
    Crowding,
    attacker,
    rate_limit_shard_mates,
    soak,
)

TENANTS = [f"t{n:03d}" for n in range(40)]
CLIENTS = 200


#: The attacker tenant (seeded like the others, never one of TENANTS' clients).
ATTACKER = "t040"
#: The tenants the attacker goes after (the clients of the load's first ten).
VICTIMS = TENANTS[:10]
#: Live mounts the attacker opens at once to fill the state store.
FLOOD = 150
#: The demo's API allows this many requests per client address an hour.
API_ALLOWANCE = 3
#: Keys of each of the 64 shards of the memory rate-limit store.
SHARD_KEYS = 8


async def _load_with_attacker(port: int, rounds: int, crowding: Crowding):
    return await asyncio.gather(
        soak(port, TENANTS, CLIENTS, rounds=rounds, events=3),
        attacker(port, ATTACKER, VICTIMS, FLOOD, crowding),
    )


def stall_report(log) -> str:
    """What the server's log says around a stall: each stack dump (from
    SIGUSR1) and the last lines before it."""
    lines = log.read_text(errors="replace").splitlines()
    dumps = [i for i, line in enumerate(lines) if line.startswith("Current thread") or
             line.startswith("Thread 0x")]  # fmt: skip
    if not dumps:
        return "daphne.log (no stack dump), last lines:\n" + "\n".join(lines[-40:])
    start = max(0, dumps[0] - 40)
    return "daphne.log around the stall:\n" + "\n".join(lines[start : dumps[-1] + 400])


@pytest.mark.soak
@pytest.mark.parametrize(
    ("database", "validator"),
    [("sqlite", "tenantry"), pytest.param("postgres", "channels", marks=pytest.mark.postgres)],
)
def test_no_leak_under_concurrency(tmp_path, request, database, validator):
    """200 clients of 40 tenants, while a 41st tenant attacks: WebSockets to
    the victims' hosts from its own pages, the main domain's and with no
    Origin; events naming a victim; lobbies naming a victim's presence room
    from the main domain and its own host; import jobs sent with a victim's
    tenant header; memory rate limits crowded by its own and fresh small
    tenants' keys to reset a victim's limited client
    (docs/security.md#the-live-plane-caller-named-keys-and-shared-capacity);
    and a flood of live mounts filling the state store with its own saved
    views.

    On SQLite with tenantry's origin validator in asgi.py, and on PostgreSQL
    with row-level security on (the second wall under daphne's thread pool
    and djust's WebSocket events; one round there, to keep the suite short)
    with channels' ``AllowedHostsOriginValidator`` instead, as djust's docs
    show it: there the cross-origin handshakes pass and every mount must be
    refused (docs/security.md#the-live-plane-sockets-events-and-jobs)."""
    postgres = request.getfixturevalue("postgres_server") if database == "postgres" else None
    rounds = 2 if postgres is None else 1
    # Tenants whose rate-limit counts share the attacker's shard: the victim
    # of the crowding (a dedicated client of a tenant of its own, so the
    # load's clients never meet its limit) and fresh small neighbours.
    later = [f"t{n:03d}" for n in range(len(TENANTS) + 1, 1000)]
    mates = rate_limit_shard_mates(ATTACKER, later, 5)
    assert len(mates) == 5, f"too few tenants share {ATTACKER}'s rate-limit shard: {mates}"
    crowd_victim, *neighbours = mates
    crowding = Crowding(crowd_victim, neighbours, API_ALLOWANCE, SHARD_KEYS)
    env = {
        "ASGI_THREADS": "8",
        "DEMO_WS_PER_IP": "1000",
        # Small enough that the attacker's flood passes its own share.
        "DEMO_STATE_TENANT_MAX_BYTES": str(256 * 1024),
        "DEMO_API_RATE": f"{API_ALLOWANCE}/h",
        "DEMO_RATE_LIMIT_MAX_KEYS": str(64 * SHARD_KEYS),
        "DEMO_ORIGIN_VALIDATOR": validator,
    }
    started = []
    with demo_server(
        tmp_path,
        extra_tenants=len(TENANTS) + 1,
        tenants=[crowd_victim, *neighbours],
        env=env,
        postgres=postgres,
        started=started,
    ) as port:
        # A client that waits too long has the server write its threads'
        # stacks to daphne.log, printed below when the test fails.
        STALL_HOOKS[:] = [lambda: dump_stacks(started[0])]
        try:
            stats, attack = asyncio.run(_load_with_attacker(port, rounds, crowding))
        finally:
            STALL_HOOKS.clear()
    if attack.errors or stats.errors:
        print(stall_report(tmp_path / "daphne.log"))
    summary = {**stats.summary(), "origin_validator": validator, "attacker": attack.summary()}
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    name = "soak.json" if postgres is None else "soak-postgres.json"
    (out / name).write_text(json.dumps(summary, indent=2))
    print("soak:", summary)

    assert stats.leaks == [], stats.leaks[:10]
    assert stats.errors == [], stats.errors[:10]
    assert attack.accepted == [] and attack.leaks == [] and attack.errors == [], attack
    victims = len(VICTIMS)
    # Class 8, origin at mount: two origins per victim, refused at the
    # handshake by tenantry's validator; past channels' own, at the mount.
    refused_at = (attack.origin_handshakes_refused, attack.origin_mounts_refused)
    assert refused_at == ((2 * victims, 0) if validator == "tenantry" else (0, 2 * victims))
    assert attack.no_origin_refused == victims
    assert attack.forbidden_events_refused == victims and attack.events_kept_home == victims
    # Class 1, caller-named presence keys: the victim's room named from the
    # main domain's lobbies (a tenant view and a view without tenancy) and
    # from a view without tenancy on the attacker's host is refused; the
    # attacker's own tenant view keeps it in its own space, alone; the
    # victims' boards never list it (the leak checks above).
    assert attack.presence_mounts_refused == 3 * victims
    assert attack.presence_kept_home == attack.presence_pages_refused == victims
    assert attack.presence_witnesses == 2 * victims
    # Class 3, eager jobs: every header naming a victim is refused; options
    # that are no header run the job at home.
    assert attack.jobs_refused == 4 * victims and attack.jobs_kept_home == 2 * victims
    # Class 4, memory rate limits: the crowding (the attacker makes room from
    # its own keys; fresh neighbours under their fair part of the shard take
    # it from the tenant furthest over its own, from keys below half their
    # limit only: docs/ratelimits.md#memory) never resets the victim's limited
    # client, and the victim's other clients are served.
    assert attack.limited_client_allowed == API_ALLOWANCE
    assert attack.limited_client_refused == 2, attack.limited_retry_after
    assert attack.crowd_served == crowding.flood and attack.crowd_unavailable == 0
    assert attack.neighbours_served == len(neighbours) * crowding.per_neighbour
    assert attack.neighbours_unavailable == 0
    assert attack.victim_clients_served == 2 * crowding.victim_clients
    assert attack.flood_mounts + attack.flood_refused == FLOOD
    assert summary["requests"] == CLIENTS * rounds
    assert summary["websocket_mounts"] == CLIENTS * rounds
    assert summary["events"] == CLIENTS * rounds * 3
    assert summary["tenants"] == len(TENANTS)

    # Every stored row belongs to the tenant its name says (read as the
    # superuser on PostgreSQL: all tenants' rows).
    if postgres is None:
        rows = (
            sqlite3.connect(tmp_path / "db.sqlite3")
            .execute("SELECT tenant_id, name FROM board_item")
            .fetchall()
        )
    else:
        with postgres.superuser(demo_database(tmp_path)) as admin:
            rows = admin.execute("SELECT tenant_id, name FROM board_item").fetchall()
        # The wall was up: the demo's role sees no row without a tenant.
        with postgres.connect(dbname=demo_database(tmp_path)) as app:
            assert app.execute("SELECT count(*) FROM board_item").fetchone() == (0,)
    misplaced = [(t, n) for t, n in rows if (m := MARK.match(n)) and m.group(1) != t]
    assert misplaced == []
    assert sum(1 for t, n in rows if n.startswith(f"item-{ATTACKER}-x") and t == ATTACKER) == 10
    # The import jobs that ran, ran at home; the refused ones wrote nothing.
    jobs = [t for t, n in rows if n.startswith(f"item-{ATTACKER}-j")]
    assert jobs == [ATTACKER] * attack.jobs_kept_home
    written = [n for _, n in rows if re.match(r"item-t\d{3}-c", n)]
    assert len(written) == CLIENTS * rounds * 3


def test_the_leak_detector_sees_a_leak():
    from tests.soak import Stats

    stats = Stats()
    stats.check("t001", '<li>item-t001-0</li><code id="tenant-id">t001</code>', "ok")
    assert stats.leaks == []
    stats.check("t001", "<li>item-t002-c3-1</li>", "items")
    stats.check("t001", '<code id=\\"tenant-id\\">t002</code>', "frame")
    stats.check("t001", '<span class=\\"name\\">presence-t002-t001</span>', "presence")
    stats.check("t001", "presence-t001-lobby", "own presence")
    assert [leak[1] for leak in stats.leaks] == ["t002", "t002", "t002"]


@pytest.mark.soak
def test_redis_outage_during_soak(tmp_path):
    """Redis (behind presence and view state) is killed and restarted while
    clients keep coming: pages answer 503 and live mounts an error frame,
    promptly, nothing leaks, and after the restart the presence and state
    written are correct, with no restart of the app."""
    from tenantry import TenantAwareRedisBackend
    from tests.redis_servers import RedisServer
    from tests.soak import during_outage, hold_live

    tenants = TENANTS[:20]
    redis = RedisServer(tmp_path / "redis").start()
    try:
        env = {"ASGI_THREADS": "8", "DEMO_WS_PER_IP": "1000", "DEMO_REDIS_URL": redis.url}
        with demo_server(tmp_path, extra_tenants=len(tenants), env=env) as port:
            before = asyncio.run(soak(port, tenants, 60, rounds=1, events=2))
            redis.stop()
            outage = asyncio.run(during_outage(port, tenants, 40))
            state_refused = state_calls_fail_fast(redis.url, tenants)
            redis.start()
            after = asyncio.run(soak(port, tenants, 60, rounds=1, events=2))
            saved_views = saved_views_by_tenant(redis, tenants)
            state_written = write_state_concurrently(redis.url, tenants)

            def presence_is_right():
                for tenant in tenants[:3]:
                    backend = TenantAwareRedisBackend(tenant, redis_url=redis.url)
                    records = backend.list("board")
                    assert len(records) == 3, (tenant, records)
                    assert {r["tenant_id"] for r in records} == {tenant}

            asyncio.run(hold_live(port, tenants[:3], 3, presence_is_right))
        log = (tmp_path / "daphne.log").read_text(errors="replace")
    finally:
        redis.stop()

    summary = {
        "before": before.summary(),
        "outage": {
            "pages_503": outage.pages_unavailable,
            "pages_served": outage.http_ok,
            "live_mounts_refused": outage.mounts_refused,
            "live_mounts_served": outage.mounted,
            "state_calls_refused": state_refused,
            "leaks": len(outage.leaks),
            "client_errors": len(outage.errors),
        },
        "after": {
            **after.summary(),
            "saved_views": sum(saved_views.values()),
            "state_keys_written": state_written,
        },
    }
    (ROOT / "test-output").mkdir(exist_ok=True)
    (ROOT / "test-output" / "soak-outage.json").write_text(json.dumps(summary, indent=2))
    print("outage soak:", summary)

    for phase in (before, after):
        assert phase.leaks == [] and phase.errors == [], (phase.leaks[:5], phase.errors[:5])
    assert outage.leaks == [] and outage.errors == []
    assert outage.pages_unavailable == 40 and outage.http_ok == 0
    assert outage.mounts_refused == 40 and outage.mounted == 0
    assert "BackendUnavailable" in log and f"127.0.0.1:{redis.port}" in log
    # Every tenant's pages saved their views again after the restart.
    assert set(saved_views) == set(tenants), saved_views
    assert state_refused == len(tenants)
    assert state_written == len(tenants) * STATE_KEYS


def state_calls_fail_fast(url: str, tenants: list[str]) -> int:
    """With Redis down, every state call fails with BackendUnavailable naming
    the server, within the timeouts."""
    import time

    from tenantry import BackendUnavailable, TenantStateRedisBackend

    refused = 0
    for tenant in tenants:
        start = time.monotonic()
        try:
            TenantStateRedisBackend(tenant, redis_url=url).set("after", 1)
        except BackendUnavailable as error:
            assert url.split("@")[-1].split("/")[0] in str(error)
            refused += 1
        assert time.monotonic() - start < 10, "a hang, not a fast failure"
    return refused


def saved_views_by_tenant(redis, tenants: list[str]) -> dict[str, int]:
    """djust's saved views in Redis, per tenant (each under its own tenant's
    hash tag, only tenants of this run)."""
    found: dict[str, int] = {}
    for key in redis.keys("djust:{tenant:*}:view-state:*"):
        tenant = re.match(r"djust:\{tenant:([^}]+)\}:", key).group(1)
        assert tenant in tenants, key
        found[tenant] = found.get(tenant, 0) + 1
    return found


STATE_KEYS = 25


def write_state_concurrently(url: str, tenants: list[str]) -> int:
    """After the restart: threads write the same key names for every tenant
    at once; each tenant reads back exactly its own values."""
    from concurrent.futures import ThreadPoolExecutor

    from tenantry import TenantStateRedisBackend

    def write(tenant: str) -> int:
        state = TenantStateRedisBackend(tenant, redis_url=url)
        for n in range(STATE_KEYS):
            state.set(f"k{n}", {"tenant": tenant, "n": n})
        state.incr("writes", STATE_KEYS)
        return sum(state.get(f"k{n}") == {"tenant": tenant, "n": n} for n in range(STATE_KEYS))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, tenants))
    for tenant in tenants:
        assert TenantStateRedisBackend(tenant, redis_url=url).get("writes") == STATE_KEYS
    return sum(results)
