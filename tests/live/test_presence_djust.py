"""tenantry as djust's presence backend, and the per-tenant manager.

Exercised through djust's own machinery: ``djust.presence.PresenceMixin``
(``track_presence`` / ``list_presences`` / ``untrack_presence``) and
``PresenceManager``, which call whatever ``djust.backends.registry`` holds.
The view below builds its key the way ``TenantMixin.get_presence_key()``
does (``tenant:<id>:`` once, in front of djust's key) and holds its tenant
in ``_tenant`` as a tenant view does: tenantry runs djust's presence calls
with the view's tenant bound (docs/presence.md#with-djust), because the
router refuses a ``tenant:<id>:`` key with no tenant bound.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from types import SimpleNamespace

import pytest
from django.core.exceptions import ImproperlyConfigured
from djust.backends.base import PresenceBackend
from djust.backends.memory import InMemoryPresenceBackend
from djust.backends.registry import get_presence_backend
from djust.presence import PresenceManager, PresenceMixin

from tenantry import (
    InvalidKey,
    InvalidTenantId,
    TenantAwareMemoryBackend,
    TenantAwareRedisBackend,
    TenantInfo,
    TenantMismatchError,
    TenantPresenceManager,
    conf,
    get_tenant_presence_backend,
    tenant_context,
)
from tenantry import checks as tenantry_checks
from tenantry import presence as presence_module
from tenantry.djust import install_djust_presence_backend
from tenantry.presence import get_djust_presence_backend, get_presence_router


@pytest.fixture(autouse=True)
def clean_memory():
    TenantAwareMemoryBackend.clear_all()
    yield
    TenantAwareMemoryBackend.clear_all()


class DocView(PresenceMixin):
    """A LiveView's presence side, as djust drives it over WebSocket."""

    presence_key = "doc:{doc_id}"

    def __init__(self, tenant_id: str | None, doc_id: int, user_id: int = 7) -> None:
        super().__init__()
        self.view_tenant = tenant_id
        self._tenant = TenantInfo(tenant_id) if tenant_id else None
        self.doc_id = doc_id
        self.request = SimpleNamespace(
            user=SimpleNamespace(is_authenticated=True, id=user_id, username=f"user{user_id}"),
            session=SimpleNamespace(session_key=f"s{user_id}"),
        )
        self._websocket_session_id = f"ws-{user_id}"
        self.joined: list[dict] = []

    def get_presence_key(self) -> str:
        base = super().get_presence_key()
        return f"tenant:{self.view_tenant}:{base}" if self.view_tenant else base

    def handle_presence_join(self, presence: dict) -> None:
        self.joined.append(presence)


def test_tenantry_is_djusts_presence_backend_by_default():
    backend = get_presence_backend()
    assert backend is get_djust_presence_backend()
    assert backend.router is get_presence_router()
    assert isinstance(backend, PresenceBackend)
    assert backend.backend == "tenant_memory"
    assert isinstance(TenantAwareMemoryBackend("a"), PresenceBackend)
    assert isinstance(TenantAwareRedisBackend("a"), PresenceBackend)


def test_track_presence_lands_in_the_views_tenant():
    acme = DocView("acme", 1)
    acme.track_presence(meta={"color": "red"})
    [record] = acme.joined
    assert (record["id"], record["tenant_id"]) == ("7", "acme")
    assert record["meta"] == {"color": "red", "name": "user7", "user_id": "7"}
    assert acme.online_count == 1

    stored = TenantAwareMemoryBackend("acme").list("doc:1")
    assert [r["id"] for r in stored] == ["7"]
    assert TenantAwareMemoryBackend("globex").count("doc:1") == 0

    globex = DocView("globex", 1, user_id=8)
    globex.track_presence()
    assert globex.online_count == 1
    assert [p["id"] for p in globex.list_presences()] == ["8"]
    assert [p["id"] for p in acme.list_presences()] == ["7"]
    assert acme.presence_count() == 1

    acme.update_presence_heartbeat()
    acme.untrack_presence()
    assert acme.list_presences() == []
    assert globex.presence_count() == 1


def test_no_tenant_keeps_a_view_in_the_space_of_its_own():
    """A view without a tenant (djust's plain ``PresenceMixin``) works with
    tenantry installed, in the space of callers without a tenant: no tenant
    sees it, and it sees no tenant (docs/presence.md#keys-and-the-tenant)."""
    view = DocView(None, 1)
    view.track_presence(meta={"who": "anonymous"})
    assert [p["id"] for p in view.list_presences()] == ["7"]
    assert view.presence_count() == 1
    assert PresenceManager.presence_count("doc:1") == 1
    for tenant in ("acme", "globex"):
        assert TenantAwareMemoryBackend(tenant).count("doc:1") == 0
        with tenant_context(tenant):
            assert PresenceManager.presence_count("doc:1") == 0
    view.untrack_presence()
    assert view.list_presences() == []


def test_a_tenant_scoped_key_with_no_tenant_bound_is_refused():
    DocView("acme", 1).track_presence(meta={"secret": "acme-only"})
    for call in (
        lambda: PresenceManager.list_presences("tenant:acme:doc:1"),
        lambda: PresenceManager.presence_count("tenant:acme:doc:1"),
        lambda: PresenceManager.join_presence("tenant:acme:doc:1", "intruder", {}),
        lambda: PresenceManager.leave_presence("tenant:acme:doc:1", "7"),
        lambda: PresenceManager.update_heartbeat("tenant:acme:doc:1", "7"),
    ):
        with pytest.raises(InvalidKey, match="no tenant is bound"):
            call()
    assert [r["id"] for r in TenantAwareMemoryBackend("acme").list("doc:1")] == ["7"]


def test_the_bound_tenant_scopes_unprefixed_keys():
    with tenant_context("acme"):
        DocView(None, 1).track_presence()
        assert PresenceManager.presence_count("doc:1") == 1
    assert TenantAwareMemoryBackend("acme").count("doc:1") == 1
    with tenant_context(TenantInfo("globex")):
        assert PresenceManager.presence_count("doc:1") == 0
        # The prefix and the bound tenant agree: fine.
        assert PresenceManager.presence_count("tenant:globex:doc:1") == 0


def test_a_prefix_for_another_tenant_than_the_bound_one_is_refused():
    DocView("acme", 1).track_presence()
    with tenant_context("globex"):
        with pytest.raises(TenantMismatchError):
            PresenceManager.list_presences("tenant:acme:doc:1")
        with pytest.raises(TenantMismatchError):
            PresenceManager.join_presence("tenant:acme:doc:1", "intruder", {})
    assert [r["id"] for r in TenantAwareMemoryBackend("acme").list("doc:1")] == ["7"]


def test_bad_ids_in_the_prefix_are_refused():
    with pytest.raises(InvalidKey):  # no tenant bound: no scope is read at all
        PresenceManager.presence_count("tenant:a b:doc:1")
    with tenant_context("acme"), pytest.raises(InvalidTenantId):
        PresenceManager.presence_count("tenant:a b:doc:1")


def test_router_follows_the_config_to_redis(settings, redis_target):
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "PRESENCE_BACKEND": "tenant_redis",
        "PRESENCE_REDIS_URL": redis_target.url,
        "TENANT_KEY_PREFIX": prefix,
    }
    assert get_presence_backend().backend == "tenant_redis"
    view = DocView("acme", 5)
    view.track_presence(meta={"n": 1})
    assert view.online_count == 1
    assert sorted(redis_target.keys(f"{prefix}:*")) == [
        f"{prefix}:{{tenant:acme}}:presence-{kind}:doc:5"
        for kind in ("conns", "data", "refs", "users")
    ]
    assert DocView("globex", 5).list_presences() == []
    assert get_presence_backend().health_check()["status"] == "healthy"
    view.untrack_presence()
    assert redis_target.keys(f"{prefix}:*") == []


def test_install_follows_presence_backend(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "PRESENCE_BACKEND": "memory"}
    try:
        assert install_djust_presence_backend() is False
        assert type(get_presence_backend()) is InMemoryPresenceBackend  # djust's own
        assert install_djust_presence_backend(force=True) is True
        assert get_presence_backend() is get_djust_presence_backend()
    finally:
        settings.DJUST_CONFIG = {
            k: v for k, v in settings.DJUST_CONFIG.items() if k != "PRESENCE_BACKEND"
        }
        assert install_djust_presence_backend() is True
    assert get_presence_backend() is get_djust_presence_backend()


def test_asyncio_tasks_interleaving_tenants_see_only_their_own():
    router = get_presence_router()
    tenants = [f"t{i}" for i in range(10)]

    async def task(n: int) -> list[str]:
        problems = []
        tenant = tenants[n % len(tenants)]
        with tenant_context(tenant):
            for step in range(20):
                router.join("lobby", f"user{n}", {"tenant": tenant})
                await asyncio.sleep(0)
                for record in router.list("lobby"):
                    if record["tenant_id"] != tenant or record["meta"]["tenant"] != tenant:
                        problems.append(f"{tenant} saw {record}")
                if step % 3 == 0:
                    router.leave("lobby", f"user{n}")
                await asyncio.sleep(0)
        return problems

    async def main():
        return await asyncio.gather(*(task(n) for n in range(40)))

    assert [p for problems in asyncio.run(main()) for p in problems] == []


# --- TenantPresenceManager ------------------------------------------------


def test_one_backend_per_tenant():
    a = TenantPresenceManager.for_tenant("acme")
    assert a is get_tenant_presence_backend("acme")
    assert a is TenantPresenceManager.for_tenant(TenantInfo("acme"))
    assert a is not TenantPresenceManager.for_tenant("globex")
    assert TenantPresenceManager.for_tenant(42).tenant_id == "42"
    assert isinstance(a, TenantAwareMemoryBackend)
    assert a.timeout == 60
    for bad in ("a:b", "", None, "{x}"):
        with pytest.raises(InvalidTenantId):
            TenantPresenceManager.for_tenant(bad)


def test_backends_are_configured_from_djust_config(settings, redis_server):
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "PRESENCE_BACKEND": "tenant_redis",
        "PRESENCE_REDIS_URL": redis_server.url,
        "PRESENCE_TIMEOUT": 2.5,
        "TENANT_KEY_PREFIX": "myapp",
        "REDIS_SOCKET_TIMEOUT": 0.5,
    }
    backend = TenantPresenceManager.for_tenant("acme")
    assert isinstance(backend, TenantAwareRedisBackend)
    assert (backend.redis_url, backend.key_prefix, backend.timeout) == (
        redis_server.url,
        "myapp",
        2.5,
    )
    assert backend.keys_for("room")[0] == "myapp:{tenant:acme}:presence-users:room"
    assert backend.join("room", "u1", {})["tenant_id"] == "acme"
    assert backend.count("room") == 1
    backend.leave("room", "u1")


def test_the_cache_is_dropped_when_the_config_changes(settings):
    before = TenantPresenceManager.for_tenant("acme")
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "PRESENCE_TIMEOUT": 5}
    after = TenantPresenceManager.for_tenant("acme")
    assert after is not before
    assert after.timeout == 5


def test_the_cache_is_bounded():
    TenantPresenceManager.clear_cache()
    for i in range(presence_module.CACHE_SIZE + 50):
        TenantPresenceManager.for_tenant(f"tenant{i}")
    info = presence_module._backend_for.cache_info()
    assert info.currsize == presence_module.CACHE_SIZE


def test_the_cache_is_thread_safe():
    TenantPresenceManager.clear_cache()
    wrong: list[str] = []

    def worker(n: int) -> None:
        for i in range(300):
            tenant = f"t{(n + i) % 25}"
            if TenantPresenceManager.for_tenant(tenant).tenant_id != tenant:
                wrong.append(tenant)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert wrong == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REDIS_CONNECT_TIMEOUT", 0),
        ("REDIS_SOCKET_TIMEOUT", "fast"),
        ("REDIS_SOCKET_TIMEOUT", 1000),
    ],
)
def test_redis_timeouts_are_checked(settings, key, value):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, key: value}
    with pytest.raises(ImproperlyConfigured, match=key):
        conf.current()
    [error] = tenantry_checks.check_config()
    assert error.id == tenantry_checks.check_id(key)
    assert error.id in ("tenantry.E036", "tenantry.E037")


def test_tenantry_tenant_mixin_keys_presence_by_its_tenant():
    """tenantry's own TenantMixin in front of djust's PresenceMixin (the
    LiveView end to end is in the integration tests)."""
    from tenantry import TenantMixin

    class View(TenantMixin, PresenceMixin):
        presence_key = "doc:{doc_id}"

    views = []
    for tenant, user_id in (("acme", 1), ("globex", 2)):
        view = View()
        view.doc_id = 9
        view.set_tenant(tenant)
        view.request = SimpleNamespace(
            user=SimpleNamespace(is_authenticated=True, id=user_id, username=f"u{user_id}"),
            session=None,
        )
        view._websocket_session_id = f"ws{user_id}"
        assert view.get_presence_key() == f"tenant:{tenant}:doc:9"
        view.track_presence()
        views.append(view)
    assert [p["id"] for p in views[0].list_presences()] == ["1"]
    assert [p["id"] for p in views[1].list_presences()] == ["2"]
    assert TenantAwareMemoryBackend("acme").count("doc:9") == 1
