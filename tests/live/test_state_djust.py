"""tenantry as djust's state backend (where djust saves and restores LiveView
state), driven by djust itself: a real ``TenantMixin`` LiveView mounted over
djust's WebSocket consumer (channels' ``WebsocketCommunicator``, the tenant
taken from the Host header), with ONE session id under two tenants, on the
memory backend, on Redis and on a Redis Cluster.
"""

from __future__ import annotations

import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from djust._rust import RustLiveView
from djust.state_backends import get_backend
from djust.state_backends.base import StateBackend
from djust.state_backends.memory import InMemoryStateBackend

from tenantry import (
    InvalidKey,
    InvalidTenantId,
    TenantMismatchError,
    TenantStateMemoryBackend,
    get_tenant_state_backend,
    tenant_context,
)
from tenantry.djust import install_djust_state_backend
from tenantry.djust_state import TenantDjustStateBackend
from tenantry.state import get_djust_state_backend, get_state_router

VIEW = "tests.app.views.SavedStateView"
TEMPLATE_MARK = "TAMPERED"


@pytest.fixture(autouse=True)
def clean_memory():
    TenantStateMemoryBackend.clear_all()
    yield
    TenantStateMemoryBackend.clear_all()


@pytest.fixture(params=["memory", "redis", "cluster"])
def state_config(request, settings):
    """DJUST_CONFIG with STATE_BACKEND on each backend (djust keeps the one
    adapter installed at startup; the adapter follows the config)."""
    config = {**settings.DJUST_CONFIG}
    target = None
    if request.param != "memory":
        fixture = "redis_server" if request.param == "redis" else "redis_cluster"
        target = request.getfixturevalue(fixture)
        config.update(
            STATE_BACKEND="tenant_redis",
            STATE_REDIS_URL=target.url,
            TENANT_KEY_PREFIX=f"djs-{uuid.uuid4().hex[:8]}",
        )
    settings.DJUST_CONFIG = config
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    return request.param, target, config


class _ScopeSession:
    def __init__(self, key: str) -> None:
        self.session_key = key


def _new_session_key() -> str:
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session.create()
    return session.session_key


async def mount(host: str, session_key: str, view: str = VIEW, url: str = "/saved/") -> dict:
    """One WebSocket mount of ``view`` on ``host`` with ``session_key``."""
    from djust.websocket import LiveViewConsumer

    socket = WebsocketCommunicator(
        LiveViewConsumer.as_asgi(), "/ws/", headers=[(b"host", host.encode())]
    )
    socket.scope["session"] = _ScopeSession(session_key)
    connected, _ = await socket.connect()
    assert connected
    await socket.receive_json_from(timeout=5)  # the connect frame
    await socket.send_json_to({"type": "mount", "view": view, "url": url})
    frame: dict = {}
    for _ in range(10):
        frame = await socket.receive_json_from(timeout=5)
        if frame.get("type") in ("mount", "error", "navigate"):
            break
    await socket.disconnect()
    return frame


@pytest.fixture
def spy(monkeypatch):
    """Every key djust asks the adapter for, and whether it was a hit."""
    seen: list[tuple[str, bool]] = []
    real_get = TenantDjustStateBackend.get

    def get(self, key):
        result = real_get(self, key)
        seen.append((key, result is not None))
        return result

    monkeypatch.setattr(TenantDjustStateBackend, "get", get)
    return seen


def test_tenantry_is_djusts_state_backend():
    backend = get_backend()
    assert backend is get_djust_state_backend()
    assert isinstance(backend, StateBackend)
    assert backend.router is get_state_router()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_one_session_key_two_tenants_two_saved_views(state_config, spy):
    kind, target, config = state_config
    session = await sync_to_async(_new_session_key)()

    first = await mount("acme.example.com", session)
    assert first["type"] == "mount" and "saved state of acme" in first["html"]
    second = await mount("globex.example.com", session)
    assert "saved state of globex" in second["html"]
    # Same session, same URL: globex missed instead of loading acme's view.
    (acme_key, acme_hit), (globex_key, globex_hit) = spy
    assert not acme_hit and not globex_hit
    assert acme_key.startswith(f"tenant:acme:{session}_")
    assert globex_key == acme_key.replace("tenant:acme:", "tenant:globex:", 1)

    # Each tenant's entry is stored in that tenant's space.
    name = acme_key.removeprefix("tenant:acme:")
    if target is not None:
        prefix = config["TENANT_KEY_PREFIX"]
        stored = sorted(k for k in target.keys(f"{prefix}:*") if ":view-state:" in k)
        assert stored == [
            f"{prefix}:{{tenant:acme}}:view-state:{name}",
            f"{prefix}:{{tenant:globex}}:view-state:{name}",
        ]
    router = get_state_router()
    for tenant in ("acme", "globex"):
        with tenant_context(tenant):
            assert router.get(f"tenant:{tenant}:{name}") is not None
            if kind == "memory":
                assert router.count() == 1

    # Make globex's saved view recognisable: what djust restores for a tenant
    # is exactly what was saved under that tenant.
    marked = RustLiveView(f'<div dj-root dj-id="0">{TEMPLATE_MARK} {{{{ owner }}}}</div>', [])
    with tenant_context("globex"):
        router.set(globex_key, marked.serialize_msgpack())

    again = await mount("globex.example.com", session)
    assert f"{TEMPLATE_MARK} globex" in again["html"]
    acme_again = await mount("acme.example.com", session)
    assert "saved state of acme" in acme_again["html"]
    assert TEMPLATE_MARK not in acme_again["html"]
    assert spy[2:] == [(globex_key, True), (acme_key, True)]

    # Deleting one tenant's state takes its saved views with it, only its own.
    assert await sync_to_async(get_tenant_state_backend("acme").delete_tenant)() >= 1
    with tenant_context("acme"):
        assert router.get(acme_key) is None
    with tenant_context("globex"):
        assert router.get(globex_key) is not None


@pytest.mark.django_db(transaction=True)
def test_http_render_saves_under_the_request_tenant(client, settings, monkeypatch):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    saved: list[str] = []
    real_set = TenantDjustStateBackend.set

    def spy_set(self, key, view, ttl=None):
        saved.append(key)
        return real_set(self, key, view, ttl)

    monkeypatch.setattr(TenantDjustStateBackend, "set", spy_set)
    response = client.get("/saved/", HTTP_HOST="acme.example.com")
    assert response.status_code == 200 and "saved state of acme" in response.content.decode()
    assert saved and all(key.startswith("tenant:acme:") for key in saved)
    with tenant_context("acme"):
        assert get_state_router().count() == 1
    with tenant_context("globex"):
        assert get_state_router().count() == 0


# --- the adapter and the router, directly -----------------------------------


def view_bytes(text: str = "x") -> bytes:
    return RustLiveView(f'<div dj-root dj-id="0">{text}</div>', []).serialize_msgpack()


def test_unprefixed_keys_are_the_shared_space_of_plain_views(state_config):
    """A view without TenantMixin hands djust's key over unprefixed: it goes to
    a space no tenant's space can read or be read from, whatever is bound."""
    _kind, target, config = state_config
    router = get_state_router()
    adapter = get_djust_state_backend()
    router.set("S_liveview_/x/", b"plain view")
    adapter.set("S_liveview_/y/", RustLiveView('<div dj-root dj-id="0">y</div>', []))
    assert router.get("S_liveview_/x/") == b"plain view"
    assert router.resolve("S_liveview_/x/") == ("-shared", "S_liveview_/x/")
    with tenant_context("acme"):
        router.set("tenant:acme:S_liveview_/x/", b"acme's view")
    for bound in ("acme", "globex"):
        with tenant_context(bound):
            # The shared entry, not the bound tenant's, and never mixed up.
            assert router.get("S_liveview_/x/") == b"plain view"
            assert adapter.get("S_liveview_/y/") is not None
    with tenant_context("globex"):
        assert router.get("tenant:globex:S_liveview_/x/") is None
        assert router.get("tenant:globex:S_liveview_/y/") is None
    with tenant_context("acme"):
        assert router.get("tenant:acme:S_liveview_/x/") == b"acme's view"
    # No tenant bound: a tenant's scope is refused, not served.
    with pytest.raises(InvalidKey, match="no tenant is bound"):
        router.get("tenant:acme:S_liveview_/x/")
    # Removing a tenant's data never touches the shared space, nor the reverse.
    get_tenant_state_backend("acme").delete_tenant()
    assert router.get("S_liveview_/x/") == b"plain view"
    assert router.delete("S_liveview_/x/") is True
    assert router.get("S_liveview_/x/") is None
    if target is not None:
        prefix = config["TENANT_KEY_PREFIX"]
        assert target.client().exists(f"{prefix}:{{tenant:-shared}}:view-state:S_liveview_/y/")
    # No tenant id can name the shared space.
    with pytest.raises(InvalidKey):
        router.get("tenant:-shared:S_liveview_/y/")
    with tenant_context("acme"), pytest.raises(InvalidTenantId):
        router.get("tenant:-shared:S_liveview_/y/")
    assert adapter.delete_all() >= 1  # no tenant bound: every space, the shared one too
    assert adapter.get("S_liveview_/y/") is None


def test_a_key_of_one_tenant_never_loads_anothers():
    router = get_state_router()
    with tenant_context("acme"):
        router.set("tenant:acme:S_liveview_/x/", b"acme's view")
        assert router.get("tenant:acme:S_liveview_/x/") == b"acme's view"
    with tenant_context("globex"):
        # The same session key string, as globex: nothing there.
        assert router.get("tenant:globex:S_liveview_/x/") is None
        assert router.get("S_liveview_/x/") is None  # the shared space: empty
        # acme's scope while globex is bound: refused, not served.
        with pytest.raises(TenantMismatchError):
            router.get("tenant:acme:S_liveview_/x/")
        with pytest.raises(TenantMismatchError):
            router.set("tenant:acme:S_liveview_/x/", b"overwrite")
        with pytest.raises(TenantMismatchError):
            router.delete("tenant:acme:S_liveview_/x/")
    with tenant_context("acme"):
        # An unscoped key is the shared space's, never the bound tenant's.
        assert router.get("S_liveview_/x/") is None
        assert router.resolve("tenant:acme:S") == ("acme", "S")
    # With no tenant bound no scope is served, whichever the call.
    for call in (
        lambda: router.get("tenant:acme:S_liveview_/x/"),
        lambda: router.set("tenant:acme:S_liveview_/x/", b"overwrite"),
        lambda: router.delete("tenant:acme:S_liveview_/x/"),
        lambda: router.resolve("tenant:acme:S"),
    ):
        with pytest.raises(InvalidKey):
            call()


def test_bad_keys_are_refused():
    router = get_state_router()
    with tenant_context("acme"):
        with pytest.raises(InvalidTenantId):
            router.get("tenant:a b:S")
        with pytest.raises(InvalidTenantId):
            router.set("tenant:{x}:S", b"d")
        with pytest.raises(InvalidKey):
            router.get("tenant:acme:")
        with pytest.raises(InvalidKey):
            router.get("tenant:acme:" + "p" * 1025)
    with pytest.raises(InvalidKey):
        router.get("tenant:a b:S")


def test_adapter_round_trip_and_ttl(state_config):
    with tenant_context("acme"):
        _adapter_round_trip()


def _adapter_round_trip():
    adapter = get_djust_state_backend()
    view = RustLiveView('<div dj-root dj-id="0">hello {{ who }}</div>', [])
    view.update_state({"who": "acme"})
    adapter.set("tenant:acme:S1_liveview_/a/", view)
    restored, timestamp = adapter.get("tenant:acme:S1_liveview_/a/")
    assert isinstance(restored, RustLiveView) and restored is not view
    assert restored.get_state() == {"who": "acme"}
    assert restored.template_hash() == view.template_hash()
    assert "hello acme" in restored.render()
    assert timestamp == restored.get_timestamp() > 0
    assert adapter.delete("tenant:acme:S1_liveview_/a/") is True
    assert adapter.get("tenant:acme:S1_liveview_/a/") is None
    assert adapter.delete("tenant:acme:S1_liveview_/a/") is False


def test_session_ttl_applies(state_config, settings):
    _kind, target, config = state_config
    settings.DJUST_CONFIG = {**config, "SESSION_TTL": 1}
    adapter = get_djust_state_backend()
    with tenant_context("acme"):
        adapter.set("tenant:acme:S_ttl", RustLiveView("<div></div>", []))
        adapter.set("tenant:acme:S_forever", RustLiveView("<div></div>", []), ttl=0)
        if target is not None:
            prefix = config["TENANT_KEY_PREFIX"]
            client = target.client()
            assert 0 < client.pttl(f"{prefix}:{{tenant:acme}}:view-state:S_ttl") <= 1000
            assert client.pttl(f"{prefix}:{{tenant:acme}}:view-state:S_forever") == -1
        deadline = time.monotonic() + 10
        while adapter.get("tenant:acme:S_ttl") is not None:
            assert time.monotonic() < deadline, "never expired"
            time.sleep(0.05)
        assert adapter.get("tenant:acme:S_forever") is not None


def test_unreadable_saved_state_is_a_miss_and_goes(state_config):
    router = get_state_router()
    with tenant_context("acme"):
        router.set("tenant:acme:S_bad", b"\xc1 not msgpack")
        assert get_djust_state_backend().get("tenant:acme:S_bad") is None
        assert router.get("tenant:acme:S_bad") is None


def test_delete_all_stats_and_health(state_config):
    kind, _target, _config = state_config
    router = get_state_router()
    adapter = get_djust_state_backend()
    for tenant in ("acme", "globex"):
        with tenant_context(tenant):
            router.set(f"tenant:{tenant}:S_liveview_/a/", view_bytes())
            router.set(f"tenant:{tenant}:S_liveview_/b/", view_bytes())
        get_tenant_state_backend(tenant).set("app-data", 1)
    with tenant_context("acme"):
        assert adapter.delete_all() == 2
        assert router.get("tenant:acme:S_liveview_/a/") is None
    with tenant_context("globex"):
        assert router.get("tenant:globex:S_liveview_/a/") is not None
    stats = adapter.get_stats()
    assert stats["backend"] == ("tenant_memory" if kind == "memory" else "tenant_redis")
    if kind == "memory":
        assert stats["total_sessions"] == 2
    assert adapter.delete_all() == 2  # no tenant bound: every tenant's views
    with tenant_context("globex"):
        assert router.get("tenant:globex:S_liveview_/b/") is None
    # Application state is not djust's to clear.
    assert get_tenant_state_backend("acme").get("app-data") == 1
    assert get_tenant_state_backend("globex").get("app-data") == 1
    assert adapter.cleanup_expired() == 0
    health = adapter.health_check()
    assert health["status"] == "healthy" and health["routing"] == "per-tenant"
    get_tenant_state_backend("acme").delete_tenant()
    get_tenant_state_backend("globex").delete_tenant()


def test_install_follows_state_backend(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "STATE_BACKEND": "memory"}
    try:
        assert install_djust_state_backend() is False
        assert type(get_backend()) is InMemoryStateBackend  # djust's own
        assert install_djust_state_backend(force=True) is True
        assert get_backend() is get_djust_state_backend()
    finally:
        settings.DJUST_CONFIG = {
            k: v for k, v in settings.DJUST_CONFIG.items() if k != "STATE_BACKEND"
        }
        assert install_djust_state_backend() is True
    assert get_backend() is get_djust_state_backend()
