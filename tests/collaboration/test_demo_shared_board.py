"""The demo's shared board (examples/demo, docs/collaboration.md#live-rooms):
acme's "Launch plan", granted to globex by the seed with a write grant,
under daphne on SQLite and in-memory backends, over real WebSockets: both
tenants' visitors in one live room, each shown with their tenant, notes
either side adds reaching the other, and a third tenant kept out."""

from __future__ import annotations

import asyncio
import json
import re

from tests.demo_server import demo_server
from tests.soak import TIMEOUT, http_get, live_mount

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
