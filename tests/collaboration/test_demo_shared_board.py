"""The demo's shared board (examples/demo, docs/collaboration.md#live-rooms):
acme's "Launch plan", granted to globex by the seed with a write grant,
under daphne on SQLite and in-memory backends, over real WebSockets: both
tenants' visitors in one live room, each shown with their tenant, notes
either side adds reaching the other, and a third tenant kept out; then on
two processes sharing a Redis channel layer and Redis presence, where a
revoke made elsewhere takes globex's page out of the room."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

from tenantry import TenantAwareRedisBackend
from tenantry.presence import SharedRoomSpace
from tenantry.shared_rooms import member_record
from tests.demo_server import DEMO, demo_server
from tests.fleet_live.fleet import Fleet, visitor
from tests.fleet_live.fleet import Tab as FleetTab
from tests.redis_servers import RedisServer
from tests.soak import TIMEOUT, http_get, http_header_lines, live_mount

VIEW = "board.views.SharedBoardView"


async def until_text(socket, text: str) -> str:
    """The frames read until one holds ``text`` (bounded by the soak's TIMEOUT)."""
    seen = []
    while True:
        frame = await asyncio.wait_for(socket.recv(), TIMEOUT)
        seen.append(frame)
        if text in frame:
            return "".join(seen)


async def shared_board(port: int) -> None:
    acme_host, globex_host = f"acme.localhost:{port}", f"globex.localhost:{port}"
    status, page = await http_get(port, globex_host, "/board/")
    assert status == 200
    [board] = re.findall(
        r'href="/shared/\?board=(\d+)">Launch plan</a> <small>\(shared by acme', page
    )
    status, page = await http_get(port, acme_host, "/board/")
    assert f'href="/shared/?board={board}">Launch plan</a> <small>(yours)' in page
    # A tenant with no grant: no link, and no room.
    status, page = await http_get(port, f"t000.localhost:{port}", "/board/")
    assert status == 200 and "Launch plan" not in page
    url = f"/shared/?board={board}"

    async with (
        live_mount(port, acme_host, f"http://{acme_host}", VIEW, url) as (acme, acme_mount),
        live_mount(port, globex_host, f"http://{globex_host}", VIEW, url) as (globex, mounted),
    ):
        assert acme_mount["type"] == "mount", acme_mount
        assert mounted["type"] == "mount", mounted
        # globex's page lists acme's visitor with its tenant, and acme's
        # page gets globex's visitor (a presence diff) with its tenant.
        members = re.findall(r'class="tenant"[^>]*>([^<]+)<', mounted.get("html", ""))
        assert sorted(members) == ["acme", "globex"], mounted
        await until_text(acme, "globex")

        # A note from globex (a write through its write grant) reaches acme.
        await globex.send(
            json.dumps({"type": "event", "event": "add_note", "params": {"text": "Fuel ordered"}})
        )
        await until_text(globex, "Fuel ordered (globex)")
        await until_text(acme, "Fuel ordered (globex)")

        t000 = f"t000.localhost:{port}"
        async with live_mount(port, t000, f"http://{t000}", VIEW, url) as (_, refused):
            assert refused["type"] in ("error", "closed"), refused
            assert "Launch plan" not in json.dumps(refused)


def test_the_demo_shares_a_board_between_acme_and_globex(tmp_path):
    with demo_server(tmp_path, extra_tenants=1) as port:
        asyncio.run(shared_board(port))


def revoke_every_grant_of_acme(fleet: Fleet) -> None:
    """acme revokes, from a process of its own (``manage.py shell``): the
    servers learn it from the database only."""
    env = {**os.environ, "DEMO_DB": str(fleet.workdir / "db.sqlite3"), **fleet.env}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    code = (
        "from tenantry import sharing, tenant_context\n"
        "with tenant_context('acme'):\n"
        "    for g in sharing.grants_given(): sharing.revoke(g)\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=DEMO, env=env, check=True
    )


async def room_tenants(fleet: Fleet, board: str) -> list[str]:
    """The tenants of the members the shared room's store holds."""
    backend = TenantAwareRedisBackend(SharedRoomSpace("acme"), redis_url=fleet.data.url)
    records = await asyncio.to_thread(backend.list, f"board.sharedboard:{board}")
    return sorted(member_record(r, "acme")["tenant_id"] for r in records)


async def across_processes(fleet: Fleet) -> None:
    acme_port, globex_port = fleet.ports
    status, _headers, page = await http_header_lines(
        globex_port, f"globex.localhost:{globex_port}", "/board/"
    )
    assert status == 200
    [board] = re.findall(r'href="/shared/\?board=(\d+)">Launch plan', page)
    url = f"/shared/?board={board}"
    acme = FleetTab(acme_port, "acme", await visitor(acme_port, "acme"))
    globex = FleetTab(globex_port, "globex", await visitor(globex_port, "globex"))
    try:
        assert (await acme.open(VIEW, url))["type"] == "mount"
        assert (await globex.open(VIEW, url))["type"] == "mount"
        # The presence diff and the note cross processes (Redis channel layer).
        await acme.showing('"text": "globex"')
        assert await room_tenants(fleet, board) == ["acme", "globex"]
        mark = len(acme.frames)
        await globex.send_event("add_note", text="Countdown set")
        await globex.showing("Countdown set (globex)", timeout=20)
        await acme.showing("Countdown set (globex)", start=mark)

        # Revoked: globex's page, on the other process, leaves the room and
        # acme's sees it go; notes no longer reach globex.
        mark_globex = len(globex.frames)
        await asyncio.to_thread(revoke_every_grant_of_acme, fleet)
        await globex.showing("no longer shared", start=mark_globex)
        for _ in range(60):  # bounded: the room's store holds acme only
            if await room_tenants(fleet, board) == ["acme"]:
                break
            await asyncio.sleep(0.5)
        assert await room_tenants(fleet, board) == ["acme"]
        mark_globex = len(globex.frames)
        await acme.send_event("add_note", text="Liftoff")
        await acme.showing("Liftoff (acme)")
        await asyncio.sleep(1.5)
        await globex.ping()
        assert "Liftoff" not in globex.text(mark_globex)
    finally:
        await acme.close()
        await globex.close()


def test_the_shared_board_spans_processes_and_a_revoke_reaches_the_other(tmp_path):
    """Two demo processes on one Redis channel layer and Redis presence
    (docs/deployment.md): acme on one, globex on the other."""
    layer = RedisServer(tmp_path / "layer").start()
    data = RedisServer(tmp_path / "data").start()
    env = {
        "DEMO_CHANNEL_LAYER_URL": layer.url,
        "DEMO_REDIS_URL": data.url,
        "DEMO_WS_PER_IP": "1000",
    }
    try:
        with Fleet(tmp_path, env) as fleet:
            fleet.data = data
            asyncio.run(across_processes(fleet))
    finally:
        layer.stop()
        data.stop()
