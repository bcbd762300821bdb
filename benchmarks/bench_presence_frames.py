"""What one more viewer joining a room costs the viewers already there (SPEC
§16): tenantry's ``TenantPresenceMixin`` (one diff per view, applied to the
view's own copy of the room) against djust's ``PresenceMixin`` (a "presence
changed" push to every view of the class, each of which lists the whole
room again to show it), for rooms of n = 10, 100 and 500 live views.

Real djust live views over WebSocket (djust's consumer through channels'
``WebsocketCommunicator``), the in-memory channel layer and tenantry's
memory presence store for both, so only the delivery differs. Each view
shows who is online (one line per user). Counted while the (n+1)th view
mounts and until every view is quiet again: channel-layer messages (and
their size as JSON, what a Redis channel layer would carry), WebSocket
frames to the n views and their bytes, and presence records the views read
back from the store. Counts, not times: they are the same on every machine.
It takes minutes (about 1,200 live views mount, each rendering the room);
``BENCH_PRESENCE_SIZES=10,100`` runs fewer sizes.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from django.test import override_settings
from djust import LiveView
from djust.decorators import event_handler
from djust.presence import PresenceManager, PresenceMixin

import tenantry
from tenantry import TenantAwareMemoryBackend
from tenantry.live_presence import TenantPresenceMixin

HOST = "acme.example.com"
SIZES = tuple(int(n) for n in os.environ.get("BENCH_PRESENCE_SIZES", "10,100,500").split(","))
#: Who is online: the count and the first users (rendering all n in every
#: view would only make the run slower, the same for both).
TEMPLATE = (
    '<div dj-root dj-id="0"><p>{{ online_count }} online</p><ul>'
    '{% for p in presences|slice:":20" %}<li>{{ p.id }}</li>{% endfor %}</ul></div>'
)
LAYERS = {
    "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}
}


class DjustRoom(tenantry.TenantMixin, PresenceMixin, LiveView):
    """Who is online with djust's PresenceMixin: list on mount, list again
    on every "presence changed" push."""

    template = TEMPLATE
    presence_key = "room-djust"
    presence_unique_per_connection = True  # one user per view

    def mount(self, request, **kwargs):
        self.track_presence(meta={})
        self.presences = self.list_presences()

    @event_handler
    def _on_presence_change(self, **kwargs):
        # One list for both (djust's own handler lists only for the count).
        self.presences = self.list_presences()
        self.online_count = len(self.presences)


class TenantryRoom(tenantry.TenantMixin, TenantPresenceMixin, LiveView):
    """The same with tenantry's mixin: ``presences`` follows the diffs."""

    template = TEMPLATE
    presence_key = "room-tenantry"
    presence_unique_per_connection = True

    def mount(self, request, **kwargs):
        self.track_presence(meta={})


VARIANTS = {
    "djust PresenceMixin": f"{__name__}.DjustRoom",
    "tenantry TenantPresenceMixin": f"{__name__}.TenantryRoom",
}


class Counters:
    """Channel-layer messages and records read from the store."""

    def __init__(self) -> None:
        self.messages = 0
        self.message_bytes = 0
        self.records = 0
        self.on = False


COUNT = Counters()


def _install_counters(layer: Any) -> None:
    send = layer.send

    async def counted(channel: str, message: dict) -> None:
        if COUNT.on:
            COUNT.messages += 1
            COUNT.message_bytes += len(json.dumps(message, default=str))
        await send(channel, message)

    layer.send = counted

    djust_list = PresenceManager.list_presences.__func__
    listed = TenantPresenceMixin._presence_listed

    def djust_counted(cls, presence_key):
        records = djust_list(cls, presence_key)
        if COUNT.on:
            COUNT.records += len(records)
        return records

    def tenantry_counted(self, target):
        users = listed(self, target)
        if COUNT.on:
            COUNT.records += len(users)
        return users

    PresenceManager.list_presences = classmethod(djust_counted)
    TenantPresenceMixin._presence_listed = tenantry_counted


async def _open(view: str):
    from channels.auth import AuthMiddlewareStack
    from channels.testing import WebsocketCommunicator
    from djust.websocket import LiveViewConsumer

    socket = WebsocketCommunicator(
        AuthMiddlewareStack(LiveViewConsumer.as_asgi()),
        "/ws/",
        headers=[(b"host", HOST.encode())],
    )
    connected, _ = await socket.connect(timeout=120)  # a busy machine: see receive below
    assert connected
    await socket.receive_json_from(timeout=120)
    await socket.send_json_to({"type": "mount", "view": view, "url": "/room/"})
    for _ in range(20):
        frame = await socket.receive_json_from(timeout=120)
        if frame.get("type") in ("mount", "error"):
            assert frame["type"] == "mount", frame
            return socket
    raise AssertionError("no mount frame")


async def _settle(sockets: list, expect: int, quiet: float = 0.5) -> None:
    """Until at least ``expect`` sockets got a frame and then no frame
    arrived anywhere for ``quiet`` seconds."""
    last = -1
    while True:
        await asyncio.sleep(quiet)
        reached = sum(1 for s in sockets if not s.output_queue.empty())
        queued = sum(s.output_queue.qsize() for s in sockets)
        if reached >= expect and queued == last:
            return
        last = queued


def _drain(socket) -> list[str]:
    frames = []
    while not socket.output_queue.empty():
        message = socket.output_queue.get_nowait()
        if message.get("type") == "websocket.send":
            frames.append(message.get("text") or "")
    return frames


async def _measure(view: str, n: int) -> dict[str, int]:
    from channels.layers import get_channel_layer

    TenantAwareMemoryBackend.clear_all()
    # The room's n views, mounted without anyone telling anyone (the cost
    # measured is the next join's, not this setup's)...
    quiet = {
        DjustRoom: ("_broadcast_presence_change", lambda self: None),
        TenantryRoom: ("_send_presence_diff", lambda self, group, diff: None),
    }
    view_class = DjustRoom if view.endswith("DjustRoom") else TenantryRoom
    name, silent = quiet[view_class]
    original = getattr(view_class, name)
    setattr(view_class, name, silent)
    try:
        sockets = []
        for start in range(0, n, 25):  # 25 handshakes at a time
            batch = range(start, min(n, start + 25))
            sockets += await asyncio.gather(*(_open(view) for _ in batch))
    finally:
        setattr(view_class, name, original)
    # ... then each brought up to date once (a re-list), so every view
    # shows the whole room before the join.
    with tenantry.tenant_context("acme", must_exist=False):
        from djust.push import apush_to_view

        await apush_to_view(view, handler="_on_presence_change")
    await _settle(sockets, n)
    for socket in sockets:
        _drain(socket)

    COUNT.messages = COUNT.message_bytes = COUNT.records = 0
    COUNT.on = True
    joiner = await _open(view)
    await _settle([*sockets, joiner], n)
    COUNT.on = False
    frames = [_drain(socket) for socket in sockets]
    joiner_frames = _drain(joiner)
    result = {
        "messages": COUNT.messages,
        "message_bytes": COUNT.message_bytes,
        "frames": sum(len(f) for f in frames),
        "frame_bytes": sum(len(text.encode()) for f in frames for text in f),
        "joiner_frames": len(joiner_frames),
        "records": COUNT.records,
        "views_updated": sum(1 for f in frames if f),
    }
    # Closing is not measured; a view slow to finish is left to the flush.
    await asyncio.gather(
        *(socket.disconnect(timeout=30) for socket in [*sockets, joiner]), return_exceptions=True
    )
    await get_channel_layer().flush()
    TenantAwareMemoryBackend.clear_all()
    return result


#: Attempts per (n, variant): what is measured is counts, not times, so a
#: run that timed out on a machine too busy to answer (a WebSocket handshake
#: or a frame past its 120 s wait at load average 14 and more) is simply
#: made again from a fresh room.
ATTEMPTS = 3


def _measure_patiently(view: str, n: int) -> dict[str, int]:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return asyncio.run(_measure(view, n))
        except TimeoutError:
            if attempt == ATTEMPTS:
                raise
            from channels.layers import get_channel_layer

            # What the abandoned sockets left: the room and the layer's queues.
            asyncio.run(get_channel_layer().flush())
            TenantAwareMemoryBackend.clear_all()
    raise AssertionError("unreachable")


def run() -> str:
    from channels.layers import get_channel_layer

    lines = [
        "## Presence: what one join costs the room (frames and messages)",
        "",
        "n live views in one room (one user each), then one more joins. Real djust",
        "live views over WebSocket, in-memory channel layer, tenantry's memory store",
        "for both; counted until every view is quiet again. *records read* are the",
        "presence records the views listed from the store (djust's re-list; tenantry's",
        "joiner lists the room once).",
        "",
        "| n | variant | layer messages | message bytes | frames to the n views | frame bytes "
        "| records read |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    results: dict[tuple[int, str], dict[str, int]] = {}
    with override_settings(
        CHANNEL_LAYERS=LAYERS,
        DJUST_CONFIG={
            "TENANT_RESOLVER": "subdomain",
            "TENANT_MAIN_DOMAIN": "example.com",
            # Nobody heartbeats here: no view may expire while the room fills.
            "PRESENCE_TIMEOUT": 3600,
        },
        LIVEVIEW_CONFIG={"rate_limit": {"max_connections_per_ip": 10_000}},
    ):
        _install_counters(get_channel_layer())
        for n in SIZES:
            for label, view in VARIANTS.items():
                r = results[n, label] = _measure_patiently(view, n)
                assert r["views_updated"] == n, (n, label, r)
                lines.append(
                    f"| {n:,} | {label} | {r['messages']:,} | {r['message_bytes']:,} | "
                    f"{r['frames']:,} | {r['frame_bytes']:,} | {r['records']:,} |"
                )
    lines += [
        "",
        "| n | djust ÷ tenantry: message bytes | frame bytes | records read |",
        "|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        d, t = results[n, "djust PresenceMixin"], results[n, "tenantry TenantPresenceMixin"]
        lines.append(
            f"| {n:,} | {d['message_bytes'] / t['message_bytes']:.1f}× | "
            f"{d['frame_bytes'] / t['frame_bytes']:.1f}× | {d['records'] / t['records']:.0f}× |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    # Through its module name: djust finds the views by dotted path.
    from benchmarks import bench_presence_frames

    print(bench_presence_frames.run())
