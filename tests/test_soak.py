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

from tests.demo_server import ROOT, demo_server
from tests.soak import MARK, soak

TENANTS = [f"t{n:03d}" for n in range(40)]
CLIENTS = 200


@pytest.mark.soak
def test_no_leak_under_concurrency(tmp_path):
    with demo_server(
        tmp_path, extra_tenants=len(TENANTS), env={"ASGI_THREADS": "8", "DEMO_WS_PER_IP": "1000"}
    ) as port:
        stats = asyncio.run(soak(port, TENANTS, CLIENTS, rounds=2, events=3))
    summary = stats.summary()
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(json.dumps(summary, indent=2))
    print("soak:", summary)

    assert stats.leaks == [], stats.leaks[:10]
    assert stats.errors == [], stats.errors[:10]
    assert summary["requests"] == CLIENTS * 2
    assert summary["websocket_mounts"] == CLIENTS * 2
    assert summary["events"] == CLIENTS * 2 * 3
    assert summary["tenants"] == len(TENANTS)

    # Every stored row belongs to the tenant its name says.
    rows = (
        sqlite3.connect(tmp_path / "db.sqlite3")
        .execute("SELECT tenant_id, name FROM board_item")
        .fetchall()
    )
    misplaced = [(t, n) for t, n in rows if (m := MARK.match(n)) and m.group(1) != t]
    assert misplaced == []
    written = [n for _, n in rows if re.match(r"item-t\d{3}-c", n)]
    assert len(written) == CLIENTS * 2 * 3


def test_the_leak_detector_sees_a_leak():
    from tests.soak import Stats

    stats = Stats()
    stats.check("t001", '<li>item-t001-0</li><code id="tenant-id">t001</code>', "ok")
    assert stats.leaks == []
    stats.check("t001", "<li>item-t002-c3-1</li>", "items")
    stats.check("t001", '<code id=\\"tenant-id\\">t002</code>', "frame")
    assert [leak[1] for leak in stats.leaks] == ["t002", "t002"]
