"""A bounded load generator for the running demo: many concurrent clients of
many tenants, interleaved over HTTP and WebSocket. Every response and every
WebSocket frame is checked to carry only its own tenant's data: each tenant's
items are named ``item-<tenant>-...``, so any other tenant's name in a payload
is a leak."""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import websockets

MARK = re.compile(r"item-(t\d{3})-")
TENANT_ID = re.compile(r'id=\\?"tenant-id\\?">(t\d{3})<')
TIMEOUT = 60
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
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode("utf-8", "replace")


async def receive_until(socket, *types: str, check=None) -> dict:
    """The next frame of one of ``types`` that answers this client. Every
    frame read on the way goes through ``check`` (leak detection), including
    those other sessions pushed (presence refreshes, ``"source": "broadcast"``),
    which are never taken as the answer."""
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
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
    async with websockets.connect(
        f"ws://{host}/ws/live/",
        host="127.0.0.1",
        port=port,
        origin=f"http://{host}",
        open_timeout=TIMEOUT,
        max_size=None,
    ) as socket:
        await receive_until(socket, "connect", check=check)
        await socket.send(
            json.dumps({"type": "mount", "view": "board.views.BoardView", "url": "/board/"})
        )
        yield socket, await receive_until(socket, "mount", "error", check=check)


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
class Attack:
    """What an attacker tenant tried during the load, and what it got."""

    cross_origin_refused: int = 0
    no_origin_refused: int = 0
    forbidden_events_refused: int = 0
    events_kept_home: int = 0
    flood_mounts: int = 0
    flood_refused: int = 0
    accepted: list[str] = field(default_factory=list)
    leaks: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "cross_origin_refused": self.cross_origin_refused,
            "no_origin_refused": self.no_origin_refused,
            "forbidden_events_refused": self.forbidden_events_refused,
            "events_kept_home": self.events_kept_home,
            "flood_mounts": self.flood_mounts,
            "flood_refused": self.flood_refused,
            "accepted": len(self.accepted),
            "leaks": len(self.leaks),
            "errors": len(self.errors),
        }


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


async def attacker(port: int, tenant: str, victims: list[str], flood: int) -> Attack:
    """Tenant ``tenant`` attacks while the others work: WebSocket handshakes to
    the victims' hosts from its own pages and with no Origin, events that try
    to name another tenant (``set_tenant`` is no handler; extra parameters
    that name a victim), and a flood of live mounts that fill the state store
    with its own saved views. Nothing may reach a victim, and the victims'
    own clients (checked by :func:`soak`) must never see an error."""
    seen = Attack()
    probe = Stats()
    own_origin = f"http://{tenant}.localhost:{port}"

    def check(text: str) -> None:
        probe.check(tenant, text, "frame to the attacker")

    for victim in victims:
        victim_host = f"{victim}.localhost:{port}"
        if await _handshake_refused(port, victim_host, own_origin):
            seen.cross_origin_refused += 1
        else:
            seen.accepted.append(f"cross-origin handshake to {victim}")
        if await _handshake_refused(port, victim_host, None):
            seen.no_origin_refused += 1
        else:
            seen.accepted.append(f"origin-less handshake to {victim}")

    async with live_view(port, tenant, check) as (socket, frame):
        if frame["type"] != "mount":
            seen.errors.append(f"attacker mount: {frame}")
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
    seen.leaks = probe.leaks
    return seen
