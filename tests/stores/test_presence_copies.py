"""No caller's object ever aliases stored presence state
(docs/presence.md#metas-are-copies): the memory store keeps its own copy of
every meta (dicts and lists rebuilt, immutable leaves) and every read —
``list``, the records of ``join``/``leave``, the diffs of
``track``/``untrack`` — hands out fresh dicts and lists. One module-level
meta used by two tenants' views, a listed record decorated by a view, or the
caller's dict changed after a track: none reaches the store or the other
tenant. Memory and Redis alike (Redis stores JSON, so it always did)."""

from __future__ import annotations

import uuid

import pytest

from tenantry import TenantAwareMemoryBackend, TenantAwareRedisBackend


@pytest.fixture(params=["memory", "redis"])
def make(request):
    if request.param == "memory":
        TenantAwareMemoryBackend.clear_all()
        yield lambda tenant: TenantAwareMemoryBackend(tenant)
        TenantAwareMemoryBackend.clear_all()
        return
    server = request.getfixturevalue("redis_server")
    prefix = f"copies-{uuid.uuid4().hex[:10]}"
    yield lambda tenant: TenantAwareRedisBackend(tenant, redis_url=server.url, key_prefix=prefix)


def shared_meta():
    return {"name": "x", "prefs": {"theme": "light", "tags": ["a", {"deep": 1}]}, "t": (1, 2)}


def test_a_listed_record_changed_by_one_tenant_never_reaches_another(make):
    """The red team's observation: one module-level meta tracked in two
    tenants' rooms, and acme's view decorating its listed record, changed
    globex's room."""
    shared = shared_meta()
    acme, globex = make("acme"), make("globex")
    globex.track("board", "gina", "t1", shared)
    acme.track("board", "alice", "t1", shared)
    rec = acme.list("board")[0]
    rec["meta"]["prefs"]["theme"] = "set-by-acme"
    rec["meta"]["prefs"]["tags"][1]["deep"] = 2
    rec["metas"][0]["prefs"]["tags"].append("more")
    rec["meta"]["new"] = True
    seen = globex.list("board")[0]
    assert seen["meta"]["prefs"] == {"theme": "light", "tags": ["a", {"deep": 1}]}
    assert seen["metas"][0]["prefs"]["tags"] == ["a", {"deep": 1}]
    # ...nor acme's own stored state.
    again = acme.list("board")[0]
    prefs = {"theme": "light", "tags": ["a", {"deep": 1}]}
    assert again["meta"] == {"name": "x", "prefs": prefs, "t": [1, 2]}
    assert "new" not in again["meta"]


def test_changing_what_was_tracked_afterwards_changes_nothing_stored(make):
    meta = shared_meta()
    backend = make("acme")
    diff = backend.track("board", "alice", "t1", meta)
    joined = backend.join("board", "bob", meta)
    meta["prefs"]["theme"] = "changed"
    meta["prefs"]["tags"].clear()
    meta["name"] = "changed"
    # The records handed back by the calls are fresh too.
    diff["joins"]["alice"]["meta"]["prefs"]["theme"] = "from-diff"
    diff["joins"]["alice"]["metas"][0]["prefs"]["theme"] = "from-diff"
    joined["meta"]["prefs"]["theme"] = "from-join"
    for rec in backend.list("board"):
        assert rec["meta"]["name"] == "x"
        assert rec["meta"]["prefs"] == {"theme": "light", "tags": ["a", {"deep": 1}]}
        assert all(m["prefs"]["theme"] == "light" for m in rec["metas"])
    assert meta["prefs"]["tags"] == []  # the caller's own dict is still its own


def test_every_read_hands_out_new_dicts_and_lists(make):
    backend = make("acme")
    backend.track("board", "alice", "t1", shared_meta())
    backend.track("board", "alice", "t2", shared_meta())
    first, second = backend.list("board")[0], backend.list("board")[0]
    assert first == second
    assert first is not second
    assert first["meta"] is not second["meta"]
    assert first["meta"]["prefs"] is not second["meta"]["prefs"]
    assert first["meta"]["prefs"]["tags"] is not second["meta"]["prefs"]["tags"]
    assert first["metas"][0] is not second["metas"][0]
    assert first["metas"][0]["prefs"] is not first["meta"]["prefs"]
    # untrack / leave records are fresh as well.
    left = backend.untrack("board", "alice", "t1")["leaves"]["alice"]
    left["meta"]["prefs"]["theme"] = "gone"
    assert backend.list("board")[0]["meta"]["prefs"]["theme"] == "light"
    gone = backend.leave("board", "alice")
    gone["metas"][0]["prefs"]["theme"] = "gone"
    assert backend.list("board") == []


def test_a_retracked_connection_keeps_its_first_time_in_its_stored_entry(make):
    backend = make("acme")
    backend.track("board", "alice", "t1", {"v": 1})
    first = backend.list("board")[0]["metas"][0]["online_at"]
    diff = backend.track("board", "alice", "t1", {"v": 2})
    assert diff["joins"]["alice"]["metas"][0]["online_at"] == first
    assert diff["leaves"]["alice"]["metas"][0]["v"] == 1
    listed = backend.list("board")[0]["metas"][0]
    assert listed["online_at"] == first and listed["v"] == 2


def test_metas_are_kept_as_json_would_keep_them(make):
    backend = make("acme")
    backend.join("board", "alice", {2: "two", None: "none", False: "no", "t": (1, (2, 3))})
    meta = backend.list("board")[0]["meta"]
    assert meta == {"2": "two", "null": "none", "false": "no", "t": [1, [2, 3]]}
    backend.join("board", "bob", ["not", "a", "dict"])
    bob = next(r for r in backend.list("board") if r["id"] == "bob")
    assert bob["meta"] == ["not", "a", "dict"] and bob["metas"][0]["value"] == ["not", "a", "dict"]


@pytest.mark.parametrize("bad", [{"when": object()}, {"s": {1, 2}}, {(1, 2): "tuple key"}])
def test_a_meta_that_is_not_json_able_is_a_type_error_on_both_stores(make, bad):
    backend = make("acme")
    with pytest.raises(TypeError):
        backend.join("board", "alice", bad)
    assert backend.list("board") == []


def test_subclasses_of_str_and_dict_are_stored_as_plain_values():
    class Tagged(str):
        pass

    class Meta(dict):
        pass

    TenantAwareMemoryBackend.clear_all()
    backend = TenantAwareMemoryBackend("acme")
    tagged = Tagged("alice")
    tagged.mutable = []
    backend.join("board", "alice", Meta(name=tagged))
    meta = backend.list("board")[0]["meta"]
    assert type(meta) is dict and type(meta["name"]) is str and meta["name"] == "alice"
    TenantAwareMemoryBackend.clear_all()


def test_a_flat_meta_and_its_connections_entry_are_two_dicts(make):
    """A join's connection carries the user's own (flat) meta: the entry is
    a copy of the meta's dict, never the same object."""
    backend = make("acme")
    backend.join("board", "alice", {"name": "Alice", "n": 1})
    record = backend.list("board")[0]
    entry = record["metas"][0]
    assert entry is not record["meta"]
    entry["name"] = "changed"
    record["meta"]["n"] = 2
    assert record["meta"]["name"] == "Alice" and entry["n"] == 1
    assert backend.list("board")[0]["meta"] == {"name": "Alice", "n": 1}


TRICKY_METAS = [
    {"name": 'Zoë 🎉 \u2028 "q" \\ /', "ctl": "\x00\x1f\t\n", "e": ""},
    {"big": 2**70, "neg": -(2**63), "f": 0.1, "exp": 1e300, "tiny": 5e-324, "z": -0.0},
    {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
    {"nested": [[[]], {}, [{"k": [1, "2", None, True, False]}]], "ключ": "значение"},
    ["a list", 1, {"x": None}],
    "a string",
]


@pytest.mark.parametrize("meta", TRICKY_METAS)
def test_metas_read_back_as_json_would_decode_them(make, meta):
    """Redis metas are decoded by tenantry's own decoder (src/json.rs): what
    comes back is what ``json.loads`` makes of what was stored."""
    import json
    import math

    backend = make("acme")
    backend.track("board", "alice", "t1", meta)
    expected = json.loads(json.dumps(meta, ensure_ascii=False))
    record = backend.list("board")[0]

    def same(a, b):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
        return type(a) is type(b) and a == b

    assert same(expected, record["meta"]), record["meta"]
    entry = {k: v for k, v in record["metas"][0].items() if k not in ("ref", "online_at")}
    wrapped = expected if isinstance(expected, dict) else {"value": expected}
    assert same(wrapped, entry), entry


def test_records_of_one_listing_are_separate_dicts(make):
    """Every record of a listing is its own dict with its own ``metas`` list
    (the Redis listing copies one template per user, docs/presence.md#metas-are-copies):
    changing one record reaches neither its neighbours nor a later listing."""
    import json

    backend = make("acme")
    for user in ("alice", "bob", "carol"):
        backend.join("board", user, {"name": user})
    records = backend.list("board")
    assert [list(r) for r in records] == [["id", "tenant_id", "joined_at", "meta", "metas"]] * 3
    assert sorted(r["id"] for r in records) == ["alice", "bob", "carol"]
    assert {r["tenant_id"] for r in records} == {"acme"}
    assert all(r["meta"] == {"name": r["id"]} for r in records)
    assert all(len(r["metas"]) == 1 and r["metas"][0]["name"] == r["id"] for r in records)
    assert json.loads(json.dumps(records)) == records
    first, second = records[0], records[1]
    first["tenant_id"] = "other"
    first["id"] = "mallory"
    first["metas"].append({"ref": "forged"})
    assert second["tenant_id"] == "acme" and len(second["metas"]) == 1
    again = backend.list("board")
    assert {r["tenant_id"] for r in again} == {"acme"}
    assert sorted(r["id"] for r in again) == ["alice", "bob", "carol"]
    assert all(len(r["metas"]) == 1 for r in again)


def test_a_flat_meta_is_the_stores_own_copy_too(make):
    """The usual meta, a flat dict of strs, ints, floats, bools and None, is
    copied once as it is read (the memory store's fast path): the caller's
    dict, the record ``join`` returns and a listed record are three dicts,
    and a change to any of them reaches neither the store nor the other
    tenant tracking the same dict."""
    import json

    flat = {"name": "Alice", "n": 7, "big": 2**70, "f": 0.5, "on": True, "none": None}
    acme, globex = make("acme"), make("globex")
    joined = acme.join("board", "alice", flat)
    globex.join("board", "gina", flat)
    assert joined["meta"] == flat and joined["meta"] is not flat
    flat["name"] = "changed by the caller"
    joined["meta"]["n"] = 8
    joined["metas"][0]["on"] = False
    listed = acme.list("board")[0]
    expected = {"name": "Alice", "n": 7, "big": 2**70, "f": 0.5, "on": True, "none": None}
    assert listed["meta"] == expected
    entry = listed["metas"][0]
    assert {k: v for k, v in entry.items() if k not in ("ref", "online_at")} == expected
    listed["meta"]["name"] = "changed by a view"
    assert acme.list("board")[0]["meta"] == expected
    assert globex.list("board")[0]["meta"] == expected
    assert json.loads(json.dumps(acme.list("board"))) == acme.list("board")


class _Str(str):
    pass


class _Dict(dict):
    pass


@pytest.mark.parametrize(
    "meta",
    [
        _Dict(name="Alice"),  # a dict subclass
        {"name": _Str("Alice")},  # a str subclass as a value
        {_Str("name"): "Alice"},  # ... as a key
        {1: "Alice"},  # a key JSON turns into a string
    ],
)
def test_a_meta_that_is_almost_flat_is_stored_as_json_would_keep_it(make, meta):
    """Only exact types take the flat path; the rest are converted as JSON
    would keep them (plain dicts, plain strs, string keys)."""
    backend = make("acme")
    backend.join("board", "alice", meta)
    stored = backend.list("board")[0]["meta"]
    key = "1" if 1 in meta else "name"
    assert stored == {key: "Alice"}
    assert type(stored) is dict
    assert all(type(k) is str and type(v) is str for k, v in stored.items())
