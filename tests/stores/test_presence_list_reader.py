"""Redis presence ``list`` as read by tenantry's own reader
(docs/performance-design.md#presence-list-one-reader-of-our-own): on a plain
single server the ``HGETALL`` reply is read on a connection of tenantry's own
by its own RESP2 reader; over TLS and on a cluster by the ``redis`` crate.
Every shape a meta can take reads back exactly on each, a huge room reads
whole and in order, users sharing one meta still get dicts of their own
(docs/presence.md#metas-are-copies), a tenant never sees another's users,
and the connections of its own authenticate, select the URL's database and
are replaced when the server drops them."""

from __future__ import annotations

import json
import uuid

import pytest

from tenantry import BackendError, BackendUnavailable, TenantAwareRedisBackend

ODD_METAS = {
    "empty": {},
    "unicode": {"name": "Zoë \u20ac \U0001f600", "rtl": "\u05e9\u05dc\u05d5\u05dd"},
    "protocol": {"a": "\r\n$3\r\n*1\r\n:1\r\n-ERR x\r\n+OK"},
    "control": {"nul": "\x00", "bell": "\x07", "escapes": '\\"/\b\f\n\r\t'},
    "numbers": {"i": -(2**62), "big": 2**70, "f": 1.5e-300, "t": True, "n": None},
    "nested": {"prefs": {"tags": ["a", {"deep": [1, 2, {"x": "é"}]}]}},
    "largest": {"blob": "x" * 8_000, "tail": "é"},  # near PRESENCE_MAX_META_BYTES
}


@pytest.fixture(params=["single", "tls", "cluster"])
def server(request):
    """The shared plain server (tenantry's reader), then TLS and a cluster
    (the crate's)."""
    return request.getfixturevalue(
        {"single": "redis_server", "tls": "redis_tls_server", "cluster": "redis_cluster"}[
            request.param
        ]
    )


def backend(server, tenant: str, prefix: str | None = None) -> TenantAwareRedisBackend:
    return TenantAwareRedisBackend(
        tenant, redis_url=server.url, key_prefix=prefix or f"reader-{uuid.uuid4().hex[:10]}"
    )


def test_every_meta_shape_reads_back_exactly(server):
    b = backend(server, "acme")
    for user, meta in ODD_METAS.items():
        b.join("room", user, meta)
    b.join("room", "tabs", {"first": "\u00e9"})
    b.track("room", "tabs", "tab \u00e9\r\n", {"other": "conn"})
    records = {r["id"]: r for r in b.list("room")}
    assert set(records) == {*ODD_METAS, "tabs"}
    for user, meta in ODD_METAS.items():
        assert records[user]["meta"] == meta, user
        assert records[user]["tenant_id"] == "acme"
    first, second = records["tabs"]["metas"]
    assert (first["first"], second["other"]) == ("\u00e9", "conn")
    assert second["ref"] == "tab \u00e9\r\n"


def test_a_huge_room_reads_whole_in_order(server):
    """20,000 users who joined in the same instant: ordered by id (bytes),
    ids sharing long prefixes and non-ASCII ones included."""
    b = backend(server, "acme")
    users_key, conns_key, refs_key, data_key = b.keys_for("big")
    client = server.node_client(users_key)
    now = float(client.time()[0])
    ids = [f"user-0000{i:05d}" for i in range(19_990)] + [
        "é", "\u20ac", "user-0000", "user-00001", "a", "x" * 40, "user", "Z", "\U0001f600",
    ]  # fmt: skip
    pipe = client.pipeline(transaction=False)
    for i, user in enumerate(ids):
        field = f"{len(user.encode())}:{user}"
        conn = f"{field}:tab"
        pipe.zadd(users_key, {field: now})
        pipe.zadd(conns_key, {conn: now})
        pipe.zadd(refs_key, {conn: 0})
        pipe.hset(data_key, field, f"{now:.6f} {json.dumps({'i': i})}")
        pipe.hset(data_key, conn, f"{now:.6f} {json.dumps({'i': i})}")
        if i % 2_000 == 0:
            pipe.execute()
    pipe.execute()
    records = b.list("big")
    assert [r["id"] for r in records] == sorted(ids, key=lambda u: u.encode())
    by_id = {r["id"]: r for r in records}
    for i, user in enumerate(ids):
        assert by_id[user]["meta"] == {"i": i}
        assert by_id[user]["metas"][0]["i"] == i


def test_users_sharing_a_meta_get_dicts_of_their_own(server):
    b = backend(server, "acme")
    flat = {"name": "Alice", "color": "#6c63ff"}
    nested = {"name": "Bob", "prefs": {"tags": ["a"]}}
    for i in range(20):
        b.join("room", f"flat{i}", flat)
        b.join("room", f"nested{i}", nested)
    records = b.list("room")
    metas = [r["meta"] for r in records] + [m for r in records for m in r["metas"]]
    assert len({id(m) for m in metas}) == len(metas) == 80
    records[0]["meta"]["name"] = "changed"
    nested_rec = next(r for r in records if r["id"].startswith("nested"))
    nested_rec["meta"]["prefs"]["tags"].append("changed")
    for r in records:
        if r is records[0] or r is nested_rec:
            continue
        want = flat if r["id"].startswith("flat") else nested
        assert r["meta"] == want, r["id"]
        for m in r["metas"]:
            assert {k: v for k, v in m.items() if k not in ("ref", "online_at")} == want
    # ...and nothing reached the store.
    assert all(r["meta"] in (flat, nested) for r in b.list("room"))


def test_one_tenant_never_lists_another(server):
    prefix = f"reader-{uuid.uuid4().hex[:10]}"
    acme, globex = backend(server, "acme", prefix), backend(server, "globex", prefix)
    for i in range(300):
        acme.join("room", f"a{i}", {"t": "acme"})
        globex.join("room", f"g{i}", {"t": "globex"})
    assert {r["id"][0] for r in acme.list("room")} == {"a"}
    assert {r["meta"]["t"] for r in globex.list("room")} == {"globex"}
    assert {r["tenant_id"] for r in globex.list("room")} == {"globex"}


def test_malformed_rows_are_an_error_naming_them(server):
    b = backend(server, "acme")
    b.join("room", "u1", {})
    *_, data = b.keys_for("room")
    client = server.node_client(data)
    client.hset(data, "2:u1", b"\xff\xfe binary")
    with pytest.raises(BackendError, match="not a tenantry presence record"):
        b.list("room")
    client.hset(data, "2:u1", '1700000000.5 {"a": [1,')
    with pytest.raises(BackendError, match="not JSON"):
        b.list("room")
    # The connection stays usable after the error.
    client.hset(data, "2:u1", "1700000000.5 {}")
    assert [r["id"] for r in b.list("room")] == ["u1"]


def test_a_key_of_another_type_is_an_error_and_the_next_list_works(redis_server):
    b = backend(redis_server, "acme")
    b.join("room", "u1", {"a": 1})
    *_, data = b.keys_for("room")
    client = redis_server.client()
    saved = client.hgetall(data)
    client.delete(data)
    client.set(data, "a string")
    with pytest.raises(BackendError, match="WRONGTYPE"):
        b.list("room")
    client.delete(data)
    client.hset(data, mapping=saved)
    assert b.list("room")[0]["meta"] == {"a": 1}


def test_dropped_connections_are_replaced(redis_server):
    b = backend(redis_server, "acme")
    b.join("room", "u1", {"a": 1})
    assert len(b.list("room")) == 1
    redis_server.client().client_kill_filter(_type="normal", skipme=True)
    assert len(b.list("room")) == 1
    # A flushed script cache: the script is sent whole, then by SHA again.
    redis_server.client().script_flush()
    assert len(b.list("room")) == 1
    assert len(b.list("room")) == 1


def test_a_password_and_a_database_are_used(redis_server_factory):
    server = redis_server_factory(password="s3cret-pw")
    url3 = server.url.rsplit("/", 1)[0] + "/3"
    acme3 = TenantAwareRedisBackend("acme", redis_url=url3)
    acme0 = TenantAwareRedisBackend("acme", redis_url=server.url)
    acme3.join("room", "u3", {"db": 3})
    assert [r["id"] for r in acme3.list("room")] == ["u3"]
    assert acme0.list("room") == []
    wrong = TenantAwareRedisBackend("acme", redis_url=url3.replace("s3cret-pw", "nope-pw"))
    with pytest.raises(BackendUnavailable, match="WRONGPASS") as caught:
        wrong.list("room")
    assert "nope-pw" not in str(caught.value)
