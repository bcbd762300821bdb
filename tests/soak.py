"""A bounded load generator for the running demo: many concurrent clients of
many tenants, interleaved over HTTP and WebSocket. Every response and every
WebSocket frame is checked to carry only its own tenant's data: each tenant's
items are named ``item-<tenant>-...``, so any other tenant's name in a payload
is a leak. So is another tenant's presence: the attacker's lobby visitors are
named ``presence-<tenant>-...``, and a victim's frame naming one means the
attacker was listed in the victim's room."""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode

import websockets

MARK = re.compile(r"item-(t\d{3})-")
#: A presence (a lobby visitor's name) of the tenant it names.
PRESENCE_MARK = re.compile(r"presence-(t\d{3})-")
TENANT_ID = re.compile(r'id=\\?"tenant-id\\?">(t\d{3})<')
TIMEOUT = 60
#: Called when a client waited :data:`TIMEOUT` for a frame (the soak test
#: asks the server for its threads' stacks: tests.demo_server.dump_stacks).
STALL_HOOKS: list = []
#: Frames that answer an event.
ANSWERS = ("patch", "html_update", "noop", "error")


@dataclass
class Stats:
    requests: int = 0
    mounts: int = 0
    events: int = 0
    tenants: set[str] = field(default_factory=set)
    leaks: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, tenant: str, text: str, where: str) -> None:
        for other in MARK.findall(text):
            if other != tenant:
                self.leaks.append((tenant, other, where))
        for other in PRESENCE_MARK.findall(text):
            if other != tenant:
                self.leaks.append((tenant, other, where + " (presence)"))
        for shown in TENANT_ID.findall(text):
            if shown != tenant:
                self.leaks.append((tenant, shown, where + " (tenant-id)"))

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "websocket_mounts": self.mounts,
            "events": self.events,
            "tenants": len(self.tenants),
            "leaks": len(self.leaks),
            "errors": len(self.errors),
            "seconds": round(self.seconds, 1),
        }


async def http_get(port: int, host: str, path: str) -> tuple[int, str]:
    status, _, body = await http_request(port, host, path)
    return status, body


async def http_request(
    port: int, host: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """A GET: ``(status, headers (lowercase names), body)``."""
    status, lines, body = await http_header_lines(port, host, path, headers)
    return status, dict(lines), body


async def http_header_lines(
    port: int, host: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[str, str]], str]:
    """A GET: ``(status, header lines (lowercase names, repeats kept), body)``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1]) if lines[0].startswith("HTTP/") else 0
    fields = [line.split(": ", 1) for line in lines[1:] if ": " in line]
    return status, [(k.lower(), v) for k, v in fields], body.decode("utf-8", "replace")


async def receive_until(socket, *types: str, check=None) -> dict:
    """The next frame of one of ``types`` that answers this client. Every
    frame read on the way goes through ``check`` (leak detection), including
    those other sessions pushed (presence refreshes, ``"source": "broadcast"``),
    which are never taken as the answer."""
    skipped: list[str] = []
    while True:
        try:
            frame = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
        except TimeoutError:
            for hook in STALL_HOOKS:
                hook()
            raise TimeoutError(
                f"no {'/'.join(types)} frame within {TIMEOUT} s; skipped meanwhile: "
                f"{[s[:200] for s in skipped[-5:]]} (the server's stacks are in its log)"
            ) from None
        skipped.append(json.dumps(frame))
        if check is not None:
            check(json.dumps(frame))
        if frame.get("source") == "broadcast":
            continue
        if frame.get("type") in types:
            return frame


@asynccontextmanager
async def live_view(port: int, tenant: str, check=None):
    """A WebSocket to the demo on ``tenant``'s host with the board mounted:
    yields ``(socket, mount_or_error_frame)``."""
    host = f"{tenant}.localhost:{port}"
    async with live_mount(port, host, f"http://{host}", BOARD, "/board/", check) as mounted:
        yield mounted


#: The demo's views.
BOARD = "board.views.BoardView"
LOBBY = "board.views.LobbyView"
SITE_LOBBY = "board.views.SiteLobbyView"


@asynccontextmanager
async def live_mount(port: int, host: str, origin: str | None, view: str, url: str, check=None):
    """A WebSocket to ``host`` (opened from a page of ``origin``) mounting
    ``view`` at ``url``: yields ``(socket, frame)``, the mount or error frame,
    or ``{"type": "closed", "code": ...}`` when the server closed the socket
    instead. A refused handshake raises ``websockets.exceptions.InvalidStatus``."""
    async with websockets.connect(
        f"ws://{host}/ws/live/",
        host="127.0.0.1",
        port=port,
        origin=origin,
        open_timeout=TIMEOUT,
        max_size=None,
    ) as socket:
        try:
            await receive_until(socket, "connect", check=check)
            await socket.send(json.dumps({"type": "mount", "view": view, "url": url}))
            frame = await receive_until(socket, "mount", "error", check=check)
        except websockets.exceptions.ConnectionClosed as closed:
            frame = {"type": "closed", "code": closed.rcvd.code if closed.rcvd else None}
        yield socket, frame


async def live_session(stats: Stats, port: int, tenant: str, client: int, events: int) -> None:
    def check(text: str) -> None:
        stats.check(tenant, text, f"frame to client {client}")

    async with live_view(port, tenant, check) as (socket, frame):
        if frame["type"] != "mount":
            stats.errors.append(f"{tenant} mount: {frame}")
            return
        stats.mounts += 1
        for k in range(events):
            name = f"item-{tenant}-c{client}-{k}"
            await socket.send(
                json.dumps(
                    {"type": "event", "event": "add_item", "params": {"name": name}, "ref": k + 1}
                )
            )
            frame = await receive_until(
                socket, "patch", "html_update", "noop", "error", check=check
            )
            if frame["type"] == "error":
                stats.errors.append(f"{tenant} event: {frame}")
                continue
            stats.events += 1
            if name not in json.dumps(frame):
                stats.errors.append(f"{tenant}: the new item {name} is missing from the update")


async def client(
    stats: Stats, port: int, tenant: str, number: int, rounds: int, events: int
) -> None:
    stats.tenants.add(tenant)
    for round_ in range(rounds):
        try:
            status, body = await http_get(port, f"{tenant}.localhost:{port}", "/board/")
            stats.requests += 1
            if status != 200:
                stats.errors.append(f"{tenant} GET: HTTP {status}")
            stats.check(tenant, body, f"GET by client {number} round {round_}")
            await live_session(stats, port, tenant, number, events)
        except Exception as exc:  # counted, not raised: the run reports every failure
            stats.errors.append(f"{tenant} client {number}: {type(exc).__name__}: {exc}")


async def soak(
    port: int, tenants: list[str], clients: int, rounds: int = 2, events: int = 3
) -> Stats:
    stats = Stats()
    started = time.monotonic()
    await asyncio.gather(
        *(client(stats, port, tenants[i % len(tenants)], i, rounds, events) for i in range(clients))
    )
    stats.seconds = time.monotonic() - started
    return stats


@dataclass
class Outage:
    """What clients saw while Redis was down."""

    http_ok: int = 0
    pages_down: int = 0
    pages_unavailable: int = 0
    mounts_refused: int = 0
    mounted: int = 0
    leaks: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def during_outage(port: int, tenants: list[str], clients: int) -> Outage:
    """Pages either render without what Redis holds (``pages_down``: presence
    shown as unavailable) or answer 503 (``pages_unavailable``: view state
    lives in Redis); live mounts must be refused with an error frame. All
    promptly, never with another tenant's data."""
    seen = Outage()
    probe = Stats()

    async def one(i: int) -> None:
        tenant = tenants[i % len(tenants)]

        def check(text: str) -> None:
            probe.check(tenant, text, f"during outage, client {i}")

        try:
            status, body = await http_get(port, f"{tenant}.localhost:{port}", "/board/")
            if status == 200:
                seen.http_ok += 1
            elif status == 503 and "unreachable" in body:
                seen.pages_unavailable += 1
            if "online-down" in body:
                seen.pages_down += 1
            check(body)
            async with live_view(port, tenant, check) as (_, frame):
                if frame["type"] == "error":
                    seen.mounts_refused += 1
                else:
                    seen.mounted += 1
        except Exception as exc:
            seen.errors.append(f"{tenant}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(i) for i in range(clients)))
    seen.leaks = probe.leaks
    return seen


async def hold_live(port: int, tenants: list[str], per_tenant: int, inspect) -> None:
    """Keeps ``per_tenant`` live views open on each tenant while ``inspect()``
    runs (in a thread), then closes them."""
    async with AsyncExitStack() as stack:
        for tenant in tenants:
            for _ in range(per_tenant):
                _, frame = await stack.enter_async_context(live_view(port, tenant))
                assert frame["type"] == "mount", frame
        await asyncio.to_thread(inspect)


@dataclass
class Crowding:
    """The cast of the attack on memory rate limits: ``victim`` and
    ``neighbours`` are tenants whose counts share the attacker's shard of
    the store (see :func:`rate_limit_shard_mates`), on a demo whose ``api``
    scope allows ``allowance`` requests per client address and whose
    store keeps ``shard_keys`` keys per shard."""

    victim: str
    neighbours: list[str]
    allowance: int
    shard_keys: int
    #: Distinct addresses the attacker (then each neighbour) checks.
    flood: int = 100
    per_neighbour: int = 5

    @property
    def victim_clients(self) -> int:
        """The victim's ordinary clients: with its limited one, they fill
        the shard but for one key."""
        return self.shard_keys - 2


@dataclass
class Attack:
    """What an attacker tenant tried during the load, and what it got."""

    #: WebSockets to the victims' hosts from the attacker's own pages and
    #: from the main domain's: refused at the handshake (the origin
    #: validator), or, when asgi.py has channels' validator instead, at the
    #: mount (the handshake passed).
    origin_handshakes_refused: int = 0
    origin_mounts_refused: int = 0
    no_origin_refused: int = 0
    forbidden_events_refused: int = 0
    events_kept_home: int = 0
    #: Lobbies naming a victim's board room (``tenant:<victim>:board``):
    #: mounts refused (no tenant bound), mounts kept in the attacker's own
    #: space (its own host), pages refused (HTTP), and victims' board
    #: mounts that never listed the attacker meanwhile.
    presence_mounts_refused: int = 0
    presence_kept_home: int = 0
    presence_pages_refused: int = 0
    presence_witnesses: int = 0
    #: Jobs sent from the attacker's board with a victim's tenant header
    #: (refused), or other options naming the victim (run in the attacker).
    jobs_refused: int = 0
    jobs_kept_home: int = 0
    #: Memory rate limits: the victim's limited client (allowed, then
    #: refused before and after the crowding), the crowding (the attacker's
    #: distinct addresses, the neighbours'), the victim's other clients.
    limited_client_allowed: int = 0
    limited_client_refused: int = 0
    limited_retry_after: list[int] = field(default_factory=list)
    crowd_served: int = 0
    crowd_unavailable: int = 0
    neighbours_served: int = 0
    neighbours_unavailable: int = 0
    victim_clients_served: int = 0
    flood_mounts: int = 0
    flood_refused: int = 0
    accepted: list[str] = field(default_factory=list)
    leaks: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: When the attacks above the flood were over, and the flood, from the
    #: start (the load started with them).
    attacks_seconds: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "origin_handshakes_refused": self.origin_handshakes_refused,
            "origin_mounts_refused": self.origin_mounts_refused,
            "no_origin_refused": self.no_origin_refused,
            "forbidden_events_refused": self.forbidden_events_refused,
            "events_kept_home": self.events_kept_home,
            "presence_mounts_refused": self.presence_mounts_refused,
            "presence_kept_home": self.presence_kept_home,
            "presence_pages_refused": self.presence_pages_refused,
            "presence_witnesses": self.presence_witnesses,
            "jobs_refused": self.jobs_refused,
            "jobs_kept_home": self.jobs_kept_home,
            "limited_client_allowed": self.limited_client_allowed,
            "limited_client_refused": self.limited_client_refused,
            "limited_retry_after": self.limited_retry_after,
            "crowd_served": self.crowd_served,
            "crowd_unavailable": self.crowd_unavailable,
            "neighbours_served": self.neighbours_served,
            "neighbours_unavailable": self.neighbours_unavailable,
            "victim_clients_served": self.victim_clients_served,
            "flood_mounts": self.flood_mounts,
            "flood_refused": self.flood_refused,
            "accepted": len(self.accepted),
            "leaks": len(self.leaks),
            "errors": len(self.errors),
            "attacks_seconds": round(self.attacks_seconds, 1),
            "seconds": round(self.seconds, 1),
        }


def rate_limit_shard_mates(anchor: str, candidates: list[str], count: int) -> list[str]:
    """The first ``count`` of ``candidates`` whose memory rate-limit counts
    live in ``anchor``'s shard (tenantry keeps a tenant's keys in one of 64
    shards, by a fixed hash of its id; the demo under test runs the same
    build). Asked of the store itself, shrunk to one key per shard: after
    a count of the anchor and one of a candidate, the store holds two keys
    unless they met in one shard. The store is given back empty, at its
    default size."""
    from tenantry import BackendUnavailable
    from tenantry.ratelimit import TenantRateLimiter, get_rate_limiter

    limiter = get_rate_limiter()
    mates: list[str] = []
    TenantRateLimiter.set_memory_limit(64)
    try:
        for candidate in candidates:
            TenantRateLimiter.clear_all()
            for tenant in (anchor, candidate):
                try:
                    limiter.check("probe", "tenant", 1, None, rate="3/h", tenant=tenant)
                except BackendUnavailable:  # the shard is full (TENANT_RATE_LIMIT_FAILURE)
                    pass
            if TenantRateLimiter.store_size() == 1:
                mates.append(candidate)
                if len(mates) == count:
                    break
    finally:
        TenantRateLimiter.set_memory_limit(1 << 20)
        TenantRateLimiter.clear_all()
    return mates


async def _handshake_refused(port: int, host: str, origin: str | None) -> bool:
    """True when the server refuses the WebSocket handshake."""
    try:
        async with websockets.connect(
            f"ws://{host}/ws/live/",
            host="127.0.0.1",
            port=port,
            origin=origin,
            open_timeout=TIMEOUT,
        ) as socket:
            await socket.close()
            return False
    except websockets.exceptions.InvalidStatus:
        return True


async def _guarded(seen: Attack, what: str, attack) -> None:
    """Runs one part of the attack; a failure is counted, not raised."""
    try:
        await attack
    except Exception as exc:
        seen.errors.append(f"{what}: {type(exc).__name__}: {exc}")


async def _origins(seen: Attack, port: int, tenant: str, victims: list[str], check) -> None:
    """Class 8: WebSockets to each victim's host from the attacker's pages
    and the main domain's, then a mount of the victim's board; and one with
    no Origin."""
    origins = (f"http://{tenant}.localhost:{port}", f"http://localhost:{port}")
    for victim in victims:
        victim_host = f"{victim}.localhost:{port}"
        for origin in origins:
            try:
                async with live_mount(port, victim_host, origin, BOARD, "/board/", check) as (
                    _,
                    frame,
                ):
                    if frame["type"] in ("error", "closed"):
                        seen.origin_mounts_refused += 1
                    else:
                        seen.accepted.append(f"a mount of {victim}'s board from {origin}")
            except websockets.exceptions.InvalidStatus:
                seen.origin_handshakes_refused += 1
        if await _handshake_refused(port, victim_host, None):
            seen.no_origin_refused += 1
        else:
            seen.accepted.append(f"origin-less handshake to {victim}")


#: Visitor names of the board (``Visitor <4 hex>``): the lobbies the
#: attacker opens list only its own ``presence-<tenant>-...`` visitors.
BOARD_VISITOR = re.compile(r"Visitor [0-9a-f-]{4}")


async def _presence(
    seen: Attack, port: int, tenant: str, victim: str, check, witness: Stats
) -> None:
    """Class 1: the attacker names ``victim``'s board room in lobbies of the
    main domain (a tenant view with ``tenant_required = False`` and a view
    without tenancy) and of its own host, to join it, list it and be listed
    there, while visitors of the victim's board watch."""
    apex, own = f"localhost:{port}", f"{tenant}.localhost:{port}"
    name = f"presence-{tenant}-{victim}"
    query = "?" + urlencode({"room": f"tenant:{victim}:board", "name": name})

    def lobby_check(text: str) -> None:
        check(text)
        for shown in BOARD_VISITOR.findall(text):
            seen.leaks.append((tenant, victim, f"lobby listed {shown!r}"))

    def witness_check(text: str) -> None:
        witness.check(victim, text, f"{victim}'s board while {tenant} names its room")

    tries = [(apex, LOBBY, "/lobby/"), (apex, SITE_LOBBY, "/site-lobby/"),
             (own, SITE_LOBBY, "/site-lobby/"), (own, LOBBY, "/lobby/")]  # fmt: skip
    async with AsyncExitStack() as held:
        there, frame = await held.enter_async_context(live_view(port, victim, witness_check))
        if frame["type"] != "mount":
            seen.errors.append(f"{victim}'s witness mount: {frame}")
            return
        for host, view, path in tries:
            _, frame = await held.enter_async_context(
                live_mount(port, host, f"http://{host}", view, path + query, lobby_check)
            )
            if frame["type"] in ("error", "closed"):
                seen.presence_mounts_refused += 1
            elif (host, view) == (own, LOBBY) and "Here now (1): " in frame["html"]:
                seen.presence_kept_home += 1  # alone, in its own tenant's room
            else:
                seen.accepted.append(f"{view} on {host} in {victim}'s room: {frame}")
        status, body = await http_get(port, apex, "/lobby/" + query)
        lobby_check(body)
        if status == 404:
            seen.presence_pages_refused += 1
        else:
            seen.accepted.append(f"the main domain's lobby page in {victim}'s room: {status}")
        # The lobbies are still open: a visitor arriving on the victim's
        # board now lists its room, and the one already there renders what
        # it was pushed (then its own event); neither may show the attacker.
        _, frame = await held.enter_async_context(live_view(port, victim, witness_check))
        seen.presence_witnesses += frame["type"] == "mount"
        item = f"item-{victim}-w"
        await there.send(
            json.dumps({"type": "event", "event": "add_item", "params": {"name": item}})
        )
        frame = await receive_until(there, *ANSWERS, check=witness_check)
        seen.presence_witnesses += item in json.dumps(frame)


#: How the attacker's board events ask for an import job as a victim (the
#: demo forwards the other parameters to Celery as task options): with the
#: tenant header, run now (``apply``) or queued (``delay``, eager in the
#: demo), also trying to clear the conflict mark or pass as not eager...
REFUSED_JOBS = [
    lambda victim: {"now": True, "headers": {HEADER: victim}},
    lambda victim: {"headers": {HEADER: victim}},
    lambda victim: {"now": True, "headers": {HEADER: victim, "tenantry_conflict": None}},
    lambda victim: {"headers": {HEADER: victim, "is_eager": False}},
]
#: ...and options that are no header at all (Celery ignores them): the job
#: runs in the attacker's own tenant.
HOME_JOBS = [
    lambda victim: {"now": True, HEADER: victim, "stamped_headers": [HEADER]},
    lambda victim: {HEADER: victim},
]
HEADER = "tenantry_tenant"


async def _events(seen: Attack, port: int, tenant: str, victims: list[str], check) -> None:
    """Events that name a victim (``set_tenant`` is no handler; extra
    parameters of ``add_item``)."""
    async with live_view(port, tenant, check) as (socket, frame):
        if frame["type"] != "mount":
            seen.errors.append(f"attacker mount: {frame}")
            return
        for k, victim in enumerate(victims):
            await socket.send(
                json.dumps(
                    {"type": "event", "event": "set_tenant", "params": {"tenant_id": victim}}
                )
            )
            frame = await receive_until(socket, *ANSWERS, check=check)
            if frame["type"] == "error":
                seen.forbidden_events_refused += 1
            else:
                seen.accepted.append(f"set_tenant event to {victim}: {frame['type']}")
            name = f"item-{tenant}-x{k}"
            params = {"name": name, "tenant_id": victim, "tenant": victim, "org_id": victim}
            await socket.send(json.dumps({"type": "event", "event": "add_item", "params": params}))
            frame = await receive_until(socket, *ANSWERS, check=check)
            if name in json.dumps(frame):
                seen.events_kept_home += 1


async def _jobs(seen: Attack, port: int, tenant: str, victims: list[str], check) -> None:
    """Class 3: import jobs from the attacker's board, sent as each victim.
    A job run as a victim would return the victim's items to the
    attacker's board (a leak) and write the attacker's item into the
    victim's rows (a misplaced row)."""
    async with live_view(port, tenant, check) as (socket, frame):
        if frame["type"] != "mount":
            seen.errors.append(f"attacker's jobs mount: {frame}")
            return
        n = 0
        for victim in victims:
            for home, form in [(False, f) for f in REFUSED_JOBS] + [(True, f) for f in HOME_JOBS]:
                name = f"item-{tenant}-j{n}"
                n += 1
                params = {"names": name, **form(victim)}
                await socket.send(
                    json.dumps({"type": "event", "event": "import_items", "params": params})
                )
                try:
                    frame = await receive_until(socket, *ANSWERS, check=check)
                except TimeoutError as exc:
                    raise TimeoutError(f"import job {params}: {exc}") from None
                text = json.dumps(frame)
                if not home and frame["type"] == "error" and "TenantMismatchError" in text:
                    seen.jobs_refused += 1
                elif home and frame["type"] != "error" and name in text:
                    seen.jobs_kept_home += 1
                else:
                    seen.accepted.append(f"import job {params}: {text[:300]}")


async def _crowding(seen: Attack, port: int, tenant: str, cast: Crowding, check_page) -> None:
    """Class 4: the victim's limited client spends its allowance; the
    victim's other clients fill the shard; the attacker then checks many
    distinct addresses, and so do the fresh neighbours, to push the limited
    count out. The limited client must still be refused after it."""
    victim = cast.victim

    async def api(host_tenant: str, address: str) -> tuple[int, dict[str, str]]:
        status, headers, body = await http_request(
            port,
            f"{host_tenant}.localhost:{port}",
            "/api/items/",
            {"X-Forwarded-For": address},
        )
        check_page(host_tenant, body)
        return status, headers

    async def limited_client() -> None:
        status, headers = await api(victim, "10.4.0.1")
        if status == 429:
            seen.limited_client_refused += 1
            seen.limited_retry_after.append(int(headers["retry-after"]))
        else:
            seen.accepted.append(f"{victim}'s limited client got {status}")

    async def victim_clients() -> None:
        for n in range(cast.victim_clients):
            status, _ = await api(victim, f"10.4.1.{n}")
            if status == 200:
                seen.victim_clients_served += 1
            else:
                seen.errors.append(f"{victim}'s client 10.4.1.{n} got {status}")

    for _ in range(cast.allowance):
        status, _ = await api(victim, "10.4.0.1")
        if status == 200:
            seen.limited_client_allowed += 1
        else:
            seen.errors.append(f"{victim}'s limited client got {status} within its allowance")
    await limited_client()
    await victim_clients()
    for n in range(cast.flood):
        status, _ = await api(tenant, f"10.40.{n // 250}.{n % 250}")
        if status == 200:
            seen.crowd_served += 1
        elif status == 503:
            seen.crowd_unavailable += 1
        else:
            seen.errors.append(f"the attacker's address {n} got {status}")
    for k, neighbour in enumerate(cast.neighbours):
        for n in range(cast.per_neighbour):
            status, _ = await api(neighbour, f"10.41.{k}.{n}")
            if status == 503:
                seen.neighbours_unavailable += 1
            elif status == 200:
                seen.neighbours_served += 1
            else:
                seen.errors.append(f"neighbour {neighbour} got {status}")
    await limited_client()
    await victim_clients()
    status, body = await http_get(port, f"{victim}.localhost:{port}", "/board/")
    check_page(victim, body)
    if status != 200:
        seen.errors.append(f"{victim}'s board after the crowding: HTTP {status}")


async def attacker(
    port: int, tenant: str, victims: list[str], flood: int, crowding: Crowding | None
) -> Attack:
    """Tenant ``tenant`` attacks while the others work: WebSockets to the
    victims' hosts from its own pages, the main domain's and with no Origin;
    events that name a victim; lobbies naming a victim's presence room;
    import jobs sent as a victim; memory rate limits crowded to reset a
    victim's limited client; and a flood of live mounts that fill the state
    store with its own saved views. Nothing may reach a victim, and the
    victims' own clients (checked by :func:`soak`) must never see an
    error."""
    started = time.monotonic()
    seen = Attack()
    probe = Stats()  # frames and pages the attacker (or its neighbours) got
    witness = Stats()  # frames the victims got while the attacker was at work

    def check(text: str) -> None:
        probe.check(tenant, text, "frame to the attacker")

    def check_page(owner: str, text: str) -> None:
        victim = crowding.victim if crowding else None
        (witness if owner == victim else probe).check(owner, text, f"page of {owner}")

    await asyncio.gather(
        _guarded(seen, "origins", _origins(seen, port, tenant, victims, check)),
        _guarded(seen, "events", _events(seen, port, tenant, victims, check)),
        _guarded(seen, "jobs", _jobs(seen, port, tenant, victims, check)),
        *(
            [_guarded(seen, "rate limits", _crowding(seen, port, tenant, crowding, check_page))]
            if crowding is not None  # None: limits in Redis (the fleet), no shard to crowd
            else []
        ),
        *(
            _guarded(seen, f"presence {v}", _presence(seen, port, tenant, v, check, witness))
            for v in victims
        ),
    )
    seen.attacks_seconds = time.monotonic() - started

    async def mount_and_hold(i: int) -> None:
        try:
            async with live_view(port, tenant, check) as (_, frame):
                if frame["type"] == "mount":
                    seen.flood_mounts += 1
                else:
                    seen.flood_refused += 1
        except Exception as exc:
            seen.errors.append(f"flood {i}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(mount_and_hold(i) for i in range(flood)))
    seen.leaks += probe.leaks + witness.leaks
    seen.seconds = time.monotonic() - started
    return seen
