"""Installing tenantry next to views that do not use it changes nothing
(docs/migrating-from-djust.md#installing-tenantry-next-to-plain-views):
djust's own shipped tests that once differed run with and without
``"tenantry"`` in ``INSTALLED_APPS`` through ``scripts/djust_suite.py``, and
the rules behind each fix are checked directly, with the isolation of
tenantry's tenants kept (docs/state.md#djusts-saved-view-state,
docs/presence.md#with-djust)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from djust._rust import RustLiveView
from djust.backends.memory import InMemoryPresenceBackend
from djust.backends.registry import get_presence_backend
from djust.runtime import ViewRuntime
from djust.state_backends import get_backend
from djust.state_backends.memory import InMemoryStateBackend
from djust.tenants.middleware import tenant_context as djust_tenant_context
from djust.tenants.resolvers import TenantInfo as DjustTenantInfo

from tenantry import InvalidKey, TenantMismatchError, tenant_context
from tenantry.presence import get_djust_presence_backend, get_presence_router
from tenantry.state import get_djust_state_backend, get_state_router

ROOT = Path(__file__).resolve().parents[2]
#: djust's shipped test files whose outcome tenantry once changed: a plain
#: view's presence heartbeat (djust's in-memory backend's ``_heartbeats``),
#: djust.tenants' saved state (its keys in djust's own ``InMemoryStateBackend``,
#: also on the HTTP path, where nothing is bound), a sticky child's state, and
#: the name of the coroutine djust spawns for ``start_async`` work.
FILES = (
    "test_realtime_v121_6.py",
    "test_tenant_session_state_backport.py",
    "test_tenant_state_keys_backport.py",
    "test_tenant_sticky_and_sse_backport.py",
    "test_transport_behavioral_parity.py",
)


@pytest.fixture(autouse=True)
def clean_djust_stores():
    state, presence = get_djust_state_backend(), get_djust_presence_backend()
    InMemoryStateBackend.delete_all(state)
    yield
    InMemoryStateBackend.delete_all(state)
    with presence._lock:
        presence._groups.clear()
        presence._heartbeats.clear()


def test_djusts_shipped_tests_have_the_same_outcome_with_tenantry():
    done = subprocess.run(
        [sys.executable, "scripts/djust_suite.py", "--files", *FILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "no test's outcome differs" in lines
    tallies = [line for line in lines if line.startswith(("without tenantry:", "with tenantry:"))]
    assert len(tallies) == 2
    # Both runs ran the same tests, and every one of them passed.
    totals = {line.split(":", 1)[1] for line in tallies}
    assert len(totals) == 1
    (total,) = totals
    count = int(total.split()[0])
    assert count >= 50 and f"{count} passed, 0 failure, 0 error" in total, total


# --- saved view state --------------------------------------------------------


def view(text: str = "x") -> RustLiveView:
    return RustLiveView(f'<div dj-root dj-id="0">{text}</div>', [])


def test_djusts_state_slot_is_djusts_own_in_memory_backend():
    adapter = get_backend()
    assert adapter is get_djust_state_backend()
    assert isinstance(adapter, InMemoryStateBackend)
    assert adapter.router is get_state_router()


def test_djust_tenants_views_keep_djusts_own_store():
    """A djust.tenants view binds djust's own TenantInfo (or, over HTTP,
    nothing): its keys stay in djust's store, as without tenantry, and never
    reach a tenantry tenant's space."""
    adapter = get_djust_state_backend()
    with djust_tenant_context(DjustTenantInfo("acme")):
        adapter.set("tenant:acme:S_liveview_/d/", view("djust's acme"))
        assert adapter.get("tenant:acme:S_liveview_/d/") is not None
    assert "tenant:acme:S_liveview_/d/" in adapter._cache  # djust's own dict
    adapter.set("tenant:globex:S_liveview_/d/", view("nothing bound"))
    assert "tenant:globex:S_liveview_/d/" in adapter._cache
    router = get_state_router()
    with tenant_context("acme"):
        assert router.get("tenant:acme:S_liveview_/d/") is None
        assert adapter.get("tenant:acme:S_liveview_/d/") is None  # tenantry's acme: its own space
    with tenant_context("globex"):
        assert adapter.get("tenant:globex:S_liveview_/d/") is None


def test_a_tenantry_tenants_saved_view_is_out_of_reach_of_every_other_caller():
    adapter = get_djust_state_backend()
    key = "tenant:acme:S_liveview_/t/"
    with tenant_context("acme"):
        adapter.set(key, view("acme's"))
        assert "acme's" in adapter.get(key)[0].render()
        assert get_state_router().get(key) is not None  # in acme's space
    assert key not in adapter._cache
    # Nothing bound, djust.tenants' acme bound, tenantry's globex bound: no
    # caller naming acme's key reads, overwrites or deletes it. With nothing
    # bound the key is kept in a space of its own: djust's store.
    assert adapter.get(key) is None
    adapter.set(key, view("forged"))
    assert key in adapter._cache
    assert adapter.delete(key) is True  # the forged entry in djust's store
    with djust_tenant_context(DjustTenantInfo("acme")):
        assert adapter.get(key) is None
    with tenant_context("globex"):
        for call in (
            lambda: adapter.get(key),
            lambda: adapter.set(key, view("forged")),
            lambda: adapter.delete(key),
        ):
            with pytest.raises(TenantMismatchError):
                call()
    with tenant_context("acme"):
        assert "acme's" in adapter.get(key)[0].render()
        assert adapter.delete_all() == 1
    InMemoryStateBackend.set(adapter, "S_liveview_/plain/", view())
    with tenant_context("globex"):
        assert adapter.delete_all() == 0  # a tenant clears its own views only
    assert adapter.get("S_liveview_/plain/") is not None


# --- presence ----------------------------------------------------------------


def test_djusts_presence_slot_is_djusts_own_in_memory_backend():
    backend = get_presence_backend()
    assert backend is get_djust_presence_backend()
    assert isinstance(backend, InMemoryPresenceBackend)
    assert backend.router is get_presence_router()
    assert backend.backend == "tenant_memory"  # the router's, through the adapter


def test_plain_presence_is_djusts_own_backend():
    backend = get_djust_presence_backend()
    backend.join("room:1", "u1", {"n": 1})
    assert ("room:1", "u1") in backend._heartbeats  # djust's own semantics
    assert [p["id"] for p in backend.list("room:1")] == ["u1"]
    assert get_presence_router().count("room:1") == 0  # not the router's
    with tenant_context("acme"):  # acme's room:1 is acme's own
        assert backend.count("room:1") == 0
        backend.join("room:1", "u2", {})
        assert [p["id"] for p in backend.list("room:1")] == ["u2"]
    assert [p["id"] for p in backend.list("room:1")] == ["u1"]
    with djust_tenant_context(DjustTenantInfo("acme")):  # djust.tenants: djust's store
        backend.join("tenant:acme:room:1", "u3", {})
        assert [p["id"] for p in backend.list("tenant:acme:room:1")] == ["u3"]
    assert ("tenant:acme:room:1", "u3") in backend._heartbeats
    with tenant_context("acme"):
        assert [p["id"] for p in backend.list("tenant:acme:room:1")] == ["u2"]
        backend.leave("room:1", "u2")


def test_a_tenant_key_named_with_no_tenant_bound_is_refused():
    backend = get_djust_presence_backend()
    for call in (
        lambda: backend.join("tenant:acme:room", "u", {}),
        lambda: backend.leave("tenant:acme:room", "u"),
        lambda: backend.list("tenant:acme:room"),
        lambda: backend.count("tenant:acme:room"),
        lambda: backend.heartbeat("tenant:acme:room", "u"),
        lambda: backend.cleanup_stale("tenant:acme:room"),
    ):
        with pytest.raises(InvalidKey, match="no tenant is bound"):
            call()
    with tenant_context("globex"), pytest.raises(TenantMismatchError):
        backend.list("tenant:acme:room")
    assert not backend._groups


# --- djust's coroutines keep their names ---------------------------------------


def test_gated_runtime_coroutines_keep_djusts_names():
    """tenantry's gate around ``ViewRuntime._execute_async_task`` is in place,
    and the coroutine it makes is still named as djust's (code that tells
    djust's tasks apart by ``cr_code.co_name`` sees no difference)."""
    for name in ("_execute_async_task", "_render_async_result"):
        method = getattr(ViewRuntime, name)
        assert getattr(method, "__wrapped__", None) is not None, name  # the gate
        assert method.__code__.co_name == name
        assert method.__code__ is not method.__wrapped__.__code__


def test_a_djust_tenants_views_presence_stays_djusts_after_djust_unbinds():
    """djust binds a djust.tenants view's own ``TenantInfo`` around mount and
    events, and untracks on disconnect after it unbound it: the view's tenant
    is bound again as djust's, so the user leaves djust's own store (where it
    joined), not tenantry's router."""
    from types import SimpleNamespace

    from djust.presence import PresenceMixin
    from djust.tenants.mixin import TenantMixin as DjustTenantMixin

    class Board(DjustTenantMixin, PresenceMixin):
        presence_key = "board"

    board = Board()
    board._tenant = DjustTenantInfo("acme")
    board._tenant_resolved = True
    board.request = SimpleNamespace(
        user=SimpleNamespace(is_authenticated=True, id=3, username="ann"),
        session=SimpleNamespace(session_key="s3"),
    )
    board._websocket_session_id = "ws-3"
    backend = get_djust_presence_backend()
    key = board.get_presence_key()
    assert key.startswith("tenant:acme:")
    with djust_tenant_context(board._tenant):  # djust's mount
        board.track_presence(meta={})
        assert [p["id"] for p in board.list_presences()] == ["3"]
    assert list(backend._groups[key]) == ["3"]  # djust's own dict
    with tenant_context("acme"):
        assert get_presence_router().count(key) == 0  # tenantry's acme: not there
    board.untrack_presence()  # djust's disconnect: nothing bound
    assert key not in backend._groups
