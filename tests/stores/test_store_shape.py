"""Presence and state share one binding shape
(docs/architecture.md#bindings-one-shape-for-per-tenant-stores): every
per-tenant backend, every router and every keyed call is built once in
``src/bindings/tenant_backend.rs``, and ``_core.pyi`` describes them with
shared private bases. These tests hold the stubs to the classes Python
really gets (every public method and its parameters, both ways), and the
shared surface to its contract on every class of both kinds."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import tenantry
from tenantry import (
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    TenantMismatchError,
    TenantNotSetError,
    TenantPresenceRouter,
    TenantStateMemoryBackend,
    TenantStateRedisBackend,
    TenantStateRouter,
    _core,
)
from tenantry.context import _current, tenant_context

STUB = Path(_core.__file__).with_name("_core.pyi")

STORE_CLASSES = [
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    TenantPresenceRouter,
    TenantStateMemoryBackend,
    TenantStateRedisBackend,
    TenantStateRouter,
]


def _stub_classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse(STUB.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _stub_members(name: str, classes: dict[str, ast.ClassDef]) -> dict[str, ast.FunctionDef]:
    """The methods and properties the stub gives class ``name``, its stub
    bases' included (the nearest definition wins, as in Python)."""
    members: dict[str, ast.FunctionDef] = {}
    node = classes[name]
    for base in reversed(node.bases):
        assert isinstance(base, ast.Name), f"{name}: base {ast.dump(base)} is not a stub class"
        members.update(_stub_members(base.id, classes))
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            members[item.name] = item
    return members


def _params(fn: ast.FunctionDef) -> list[str]:
    args = fn.args
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    return names[1:]  # self / cls


@pytest.mark.parametrize("cls", STORE_CLASSES, ids=lambda c: c.__name__)
def test_the_stub_names_every_public_method_of_the_class_and_no_other(cls):
    members = _stub_members(cls.__name__, _stub_classes())
    runtime = {n for n in dir(cls) if not n.startswith("_")}
    stubbed = {n for n in members if not n.startswith("_")}
    assert stubbed == runtime, (
        f"{cls.__name__}: missing from the stub {sorted(runtime - stubbed)}, "
        f"stubbed but absent {sorted(stubbed - runtime)}"
    )


@pytest.mark.parametrize("cls", STORE_CLASSES, ids=lambda c: c.__name__)
def test_the_stub_gives_each_method_the_parameters_python_sees(cls):
    members = _stub_members(cls.__name__, _stub_classes())
    checked = 0
    for name, fn in members.items():
        if name.startswith("_") and name != "__init__":
            continue
        attr = cls if name == "__init__" else getattr(cls, name)
        if isinstance(attr, property) or type(attr).__name__ == "getset_descriptor":
            continue
        try:
            sig = inspect.signature(attr)
        except (TypeError, ValueError):  # pragma: no cover - every binding has one
            pytest.fail(f"{cls.__name__}.{name} has no text signature")
        runtime = [
            ("*" + p.name) if p.kind is p.VAR_POSITIONAL else p.name
            for p in sig.parameters.values()
            if p.name not in ("self", "cls", "$self", "$cls")
        ]
        if name == "__init__" and runtime[:1] == ["$type"]:  # pragma: no cover
            runtime = runtime[1:]
        assert runtime == _params(fn), f"{cls.__name__}.{name}: {runtime} != stub {_params(fn)}"
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: TenantAwareMemoryBackend("acme"),
        lambda: TenantAwareRedisBackend("acme", redis_url="redis://127.0.0.1:1/0"),
        lambda: TenantStateMemoryBackend("acme"),
        lambda: TenantStateRedisBackend("acme", redis_url="redis://127.0.0.1:1/0"),
    ],
    ids=["presence-memory", "presence-redis", "state-memory", "state-redis"],
)
def test_every_per_tenant_backend_has_the_shared_surface(make):
    backend = make()
    redis = "Redis" in type(backend).__name__
    assert backend.tenant_id == "acme"
    assert backend.backend == ("tenant_redis" if redis else "tenant_memory")
    assert repr(backend).startswith(f'{type(backend).__name__}(tenant_id="acme"')
    health = backend.health_check()  # never raises, even for a Redis that is down
    assert health["backend"] == backend.backend
    assert health["tenant_id"] == "acme"
    if redis:
        assert health["status"] == "unhealthy"
        assert backend.redis_url == "redis://127.0.0.1:1/0"
        assert backend.key_prefix == "djust"
    else:
        assert health["status"] == "healthy"


@pytest.mark.parametrize(
    ("router_class", "name"),
    [(TenantPresenceRouter, "TenantPresenceRouter"), (TenantStateRouter, "TenantStateRouter")],
)
def test_every_router_has_the_shared_surface(router_class, name):
    router = router_class(_current)
    assert router.backend == "tenant_memory"  # the test settings' default
    assert repr(router) == f'{name}(backend="tenant_memory")'
    health = router.health_check()
    assert (health["routing"], health["status"]) == ("per-tenant", "healthy")
    assert "tenant_id" not in health
    with tenant_context("acme", must_exist=False):
        assert router.resolve("tenant:acme:room") == ("acme", "room")
        with pytest.raises(TenantMismatchError):
            router.resolve("tenant:globex:room")
    # A scoped key never addresses a tenant by itself.
    with pytest.raises(tenantry.InvalidKey):
        router.resolve("tenant:acme:room")


def test_the_two_routers_read_an_unscoped_key_by_their_own_rule():
    """Presence: an unscoped key is the bound tenant's; saved state: a key
    without the scope is a view that is not a tenant view (shared space)."""
    presence, state = TenantPresenceRouter(_current), TenantStateRouter(_current)
    with tenant_context("acme", must_exist=False):
        assert presence.resolve("lobby") == ("acme", "lobby")
        assert state.resolve("S_view") == ("-shared", "S_view")
    assert presence.resolve("lobby") == ("-shared", "lobby")
    assert state.resolve("S_view") == ("-shared", "S_view")


def test_a_presence_router_call_and_a_per_tenant_call_reach_the_same_room():
    """The keyed calls are written once over the router and the per-tenant
    backend: the router's call for acme's key lands where acme's backend
    looks, and nowhere else."""
    TenantAwareMemoryBackend.clear_all()
    router = TenantPresenceRouter(_current)
    acme, globex = TenantAwareMemoryBackend("acme"), TenantAwareMemoryBackend("globex")
    try:
        with tenant_context("acme", must_exist=False):
            router.join("tenant:acme:room", "u1", {"n": 1})
            router.track("tenant:acme:room", "u2", "tab-1")
            assert router.count("tenant:acme:room") == 2
        assert acme.count("room") == 2
        assert globex.count("room") == 0
        assert {r["id"] for r in acme.list("room")} == {"u1", "u2"}
        assert all(r["tenant_id"] == "acme" for r in acme.list("room"))
        globex.join("room", "u9")
        with tenant_context("acme", must_exist=False):
            assert [r["id"] for r in router.list("room")] != ["u9"]
            assert router.leave("tenant:acme:room", "u1")["tenant_id"] == "acme"
            assert router.untrack("tenant:acme:room", "u2", "tab-1")["leaves"]["u2"]["id"] == "u2"
        assert acme.count("room") == 0
        assert globex.count("room") == 1
    finally:
        TenantAwareMemoryBackend.clear_all()


def test_a_state_router_saves_views_apart_from_the_tenants_own_keys():
    """The router's calls go to the tenant's saved-view space; the per-tenant
    backend's to its data space: the same name is two entries."""
    TenantStateMemoryBackend.clear_all()
    router = TenantStateRouter(_current)
    acme = TenantStateMemoryBackend("acme")
    try:
        acme.set("S", {"mine": True})
        with tenant_context("acme", must_exist=False):
            router.set("tenant:acme:S", b"view")
            assert router.get("tenant:acme:S") == b"view"
            with pytest.raises(TenantMismatchError):
                router.get("tenant:globex:S")
        assert acme.get("S") == {"mine": True}
        assert TenantStateMemoryBackend("globex").get("S") is None
        with tenant_context("acme", must_exist=False):
            assert router.delete("tenant:acme:S") is True
        assert acme.get("S") == {"mine": True}
    finally:
        TenantStateMemoryBackend.clear_all()


def test_a_presence_router_with_no_tenant_bound_refuses_a_scoped_key():
    router = TenantPresenceRouter(_current)
    with pytest.raises((tenantry.InvalidKey, TenantNotSetError)):
        router.join("tenant:acme:room", "u1")
