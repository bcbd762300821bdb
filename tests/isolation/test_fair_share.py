"""Fair share of the memory state store (docs/state.md, fair share): one tenant
can never fill the store other tenants need.

``STATE_TENANT_MAX_BYTES`` bounds one tenant's keys. A tenant over it evicts
its own least recently used saved views (djust's ``view-state`` space), never
its own application state, and an explicit write that does not fit raises
``QuotaExceeded``. A tenant within its effective share that finds the store
full takes room from the tenants furthest over theirs: their views, then
their application state. A store that cannot take a write answers 503 on a
page (sync and async stacks) and an error frame on a live view, never 500.

Driven through the real parts: tenantry's state API, and djust's own
LiveView consumer behind the project's ASGI router (channels'
``WebsocketCommunicator``, anonymous tabs and tabs with a database session).
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured

from tenantry import (
    BackendError,
    QuotaExceeded,
    TenantStateMemoryBackend,
    conf,
    get_tenant_state_backend,
    tenant_context,
)
from tenantry.djust_state import TenantDjustStateBackend
from tenantry.state import get_state_router

VIEW = "tests.app.views.SavedStateView"
STORE = 64 * 1024  # the smallest store the config accepts
SHARE = 8 * 1024  # an eighth of it: the default ratio
DEFAULT_STORE = 512 * 1024 * 1024


@pytest.fixture(autouse=True)
def small_store(settings):
    """A 64 KiB store with 8 KiB shares, emptied before and after; the
    default bounds are put back for the tests that follow."""
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "STATE_MEMORY_MAX_BYTES": STORE,
        "STATE_TENANT_MAX_BYTES": SHARE,
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    TenantStateMemoryBackend.clear_all()
    get_tenant_state_backend("acme")  # applies the bounds
    assert TenantStateMemoryBackend.store_stats()["tenant_max_bytes"] == SHARE
    yield
    TenantStateMemoryBackend.clear_all()
    TenantStateMemoryBackend.set_memory_limit(DEFAULT_STORE)


def fill_with_data(tenant: str, chunk: int = 1000) -> int:
    """Writes application state for ``tenant`` until the store refuses;
    returns how many keys went in."""
    backend = get_tenant_state_backend(tenant)
    for i in range(10_000):
        try:
            backend.set(f"fill{i}", b"x" * chunk)
        except QuotaExceeded:
            return i
    raise AssertionError("the store never refused a write")


def fill_to_the_brim(tenant: str) -> None:
    """Application state for ``tenant`` until not even a small key fits."""
    backend = get_tenant_state_backend(tenant)
    chunk, i = 1000, 0
    while chunk:
        try:
            backend.set(f"brim{i}", b"x" * chunk)
            i += 1
        except QuotaExceeded:
            chunk //= 2


# --- the state API ------------------------------------------------------------


def test_an_explicit_write_past_the_share_raises_quota_exceeded():
    acme, globex = get_tenant_state_backend("acme"), get_tenant_state_backend("globex")
    stored = fill_with_data("acme")
    assert 5 <= stored <= SHARE // 1000
    with pytest.raises(QuotaExceeded, match="STATE_TENANT_MAX_BYTES") as info:
        acme.set("one-more", b"x" * 1000)
    assert '"acme"' in str(info.value)
    assert isinstance(info.value, BackendError)  # code catching BackendError still does
    with pytest.raises(QuotaExceeded):
        acme.incr("n" * 1000)
    # Nothing of acme's went to make room (application state is not a cache).
    assert all(acme.get(f"fill{i}") == b"x" * 1000 for i in range(stored))
    assert acme.used_bytes <= SHARE
    # Other tenants have their whole share.
    assert fill_with_data("globex") == stored
    assert globex.used_bytes <= SHARE
    # Making room works: delete, then write.
    acme.delete("fill0")
    acme.set("one-more", b"x" * 1000)
    stats = TenantStateMemoryBackend.store_stats()
    assert stats["bytes"] == acme.used_bytes + globex.used_bytes <= STORE


def test_application_state_evicts_the_tenants_own_saved_views_first():
    router = get_state_router()
    for i in range(20):
        for tenant in ("acme", "globex"):
            with tenant_context(tenant):
                router.set(f"tenant:{tenant}:S{i:02}_liveview_/x/", b"v" * 200)
    acme = get_tenant_state_backend("acme")
    acme.set("report", b"r" * 4000)
    with tenant_context("acme"):
        assert router.count() < 20
    with tenant_context("globex"):
        assert router.count() == 20
    assert acme.get("report") == b"r" * 4000


def test_the_share_comes_from_the_config(settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "STATE_TENANT_MAX_BYTES": 16 * 1024}
    assert conf.current().state_tenant_max_bytes == 16 * 1024
    get_tenant_state_backend("acme")
    assert TenantStateMemoryBackend.store_stats()["tenant_max_bytes"] == 16 * 1024
    # Unset: an eighth of the store.
    settings.DJUST_CONFIG = {
        k: v for k, v in settings.DJUST_CONFIG.items() if k != "STATE_TENANT_MAX_BYTES"
    }
    get_tenant_state_backend("acme")
    assert TenantStateMemoryBackend.store_stats()["tenant_max_bytes"] == STORE // 8
    # The djust adapter's router applies it too.
    TenantStateMemoryBackend.set_memory_limit(DEFAULT_STORE)
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "STATE_TENANT_MAX_BYTES": 32 * 1024}
    assert get_state_router().backend == "tenant_memory"
    assert TenantStateMemoryBackend.store_stats()["tenant_max_bytes"] == 32 * 1024


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (100, "4096"),
        ("8KB", "integer"),
        (True, "integer"),
        (STORE * 2, "must not exceed STATE_MEMORY_MAX_BYTES"),
    ],
)
def test_a_bad_share_is_refused_naming_the_key(settings, value, needle):
    from tenantry import checks as tenantry_checks

    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "STATE_TENANT_MAX_BYTES": value}
    with pytest.raises(ImproperlyConfigured, match="STATE_TENANT_MAX_BYTES") as info:
        conf.current()
    assert needle in str(info.value)
    errors = tenantry_checks.check_config()
    assert errors and errors[0].id == tenantry_checks.check_id("STATE_TENANT_MAX_BYTES")


# --- djust over WebSocket -------------------------------------------------------


class Tab:
    """One browser tab on djust's consumer, behind the project's ASGI router;
    anonymous unless it carries a database session's cookie."""

    def __init__(self, host: str, session_key: str | None = None) -> None:
        from tests.app.asgi import application

        headers = [(b"host", host.encode()), (b"origin", f"http://{host}".encode())]
        if session_key:
            headers.append((b"cookie", f"sessionid={session_key}".encode()))
        self.socket = WebsocketCommunicator(application, "/ws/live/", headers=headers)

    async def mount(self, url: str = "/saved/") -> dict:
        # Timeouts bound a hang on a loaded machine; nothing asserts a time.
        connected, _ = await self.socket.connect(timeout=20)
        assert connected
        await self.socket.receive_json_from(timeout=20)  # the connect frame
        await self.socket.send_json_to({"type": "mount", "view": VIEW, "url": url})
        try:
            for _ in range(10):
                frame = await self.socket.receive_json_from(timeout=20)
                if frame.get("type") in ("mount", "error", "navigate"):
                    return frame
            raise AssertionError("no mount or error frame")
        finally:
            await self.socket.disconnect(timeout=20)


async def mount(host: str, session_key: str | None = None) -> dict:
    return await Tab(host, session_key).mount()


def new_session_key() -> str:
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session.create()
    return session.session_key


@pytest.fixture
def restores(monkeypatch):
    """``(tenant, hit)`` of every saved view djust asked the adapter for."""
    seen: list[tuple[str, bool]] = []
    real_get = TenantDjustStateBackend.get

    def get(self, key):
        result = real_get(self, key)
        seen.append((key.split(":")[1], result is not None))
        return result

    monkeypatch.setattr(TenantDjustStateBackend, "get", get)
    return seen


def saved_views(tenant: str) -> int:
    with tenant_context(tenant):
        return get_state_router().count()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_flood_of_live_mounts_on_one_tenant_leaves_the_others_alone(restores):
    others = ("globex", "initech")
    sessions = {t: await sync_to_async(new_session_key)() for t in others}
    for tenant in others:
        frame = await mount(f"{tenant}.example.com", sessions[tenant])
        assert frame["type"] == "mount" and f"saved state of {tenant}" in frame["html"]

    # 400 anonymous tabs on acme, 10 at a time: ~80 KB of saved views
    # against a 64 KiB store. Every one mounts; acme stays within its share.
    for _ in range(40):
        frames = await asyncio.gather(*(mount("acme.example.com") for _tab in range(10)))
        assert [f["type"] for f in frames] == ["mount"] * 10, frames
        assert TenantStateMemoryBackend("acme").used_bytes <= SHARE
    assert await sync_to_async(saved_views)("acme") < 400
    stats = TenantStateMemoryBackend.store_stats()
    assert stats["bytes"] <= stats["max_bytes"] == STORE

    # The other tenants' views survived the flood: their tabs restore them,
    # and they still mount and save new ones.
    del restores[:]
    for tenant in others:
        frame = await mount(f"{tenant}.example.com", sessions[tenant])
        assert frame["type"] == "mount" and f"saved state of {tenant}" in frame["html"]
        fresh = await sync_to_async(new_session_key)()
        frame = await mount(f"{tenant}.example.com", fresh)
        assert frame["type"] == "mount", frame
        assert await sync_to_async(saved_views)(tenant) == 2
    assert restores == [("globex", True), ("globex", False), ("initech", True), ("initech", False)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_live_view_whose_state_cannot_be_saved_gets_an_error_frame(settings):
    # acme's share is all application state (never evicted): no room for a view.
    await sync_to_async(fill_to_the_brim)("acme")
    frame = await mount("acme.example.com")
    assert frame["type"] == "error", frame
    assert await sync_to_async(saved_views)("acme") == 0
    # globex is not affected.
    frame = await mount("globex.example.com")
    assert frame["type"] == "mount" and "saved state of globex" in frame["html"]

    # The whole store full of one tenant's application state (the share
    # turned off): a tenant within its effective share (half the store, with
    # two tenants) still mounts; the hog gives up its oldest keys.
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "STATE_TENANT_MAX_BYTES": STORE}
    await sync_to_async(TenantStateMemoryBackend.clear_all)()
    await sync_to_async(get_tenant_state_backend)("hog")
    await sync_to_async(fill_to_the_brim)("hog")
    frame = await mount("initech.example.com")
    assert frame["type"] == "mount" and "saved state of initech" in frame["html"], frame
    hog = get_tenant_state_backend("hog")
    assert await sync_to_async(hog.get)("brim0") is None
    assert await sync_to_async(hog.exists)("brim1")


# --- pages: 503, never 500 ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_page_whose_state_cannot_be_saved_answers_503(client, settings):
    fill_to_the_brim("acme")
    response = client.get("/saved/", HTTP_HOST="acme.example.com")
    assert response.status_code == 503
    assert response["Retry-After"] and b"full" in response.content
    response = client.get("/saved/", HTTP_HOST="globex.example.com")
    assert response.status_code == 200 and b"saved state of globex" in response.content

    # The whole store full of one tenant (the share turned off): a tenant
    # within its effective share still saves; the hog gives up its oldest.
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "STATE_TENANT_MAX_BYTES": STORE}
    TenantStateMemoryBackend.clear_all()
    get_tenant_state_backend("hog")
    fill_to_the_brim("hog")
    assert client.get("/saved/", HTTP_HOST="initech.example.com").status_code == 200
    assert get_tenant_state_backend("hog").get("brim0") is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_page_whose_state_cannot_be_saved_answers_503_async(async_client, settings):
    # The async test client always sends Host: testserver; name the tenant
    # in a header instead.
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RESOLVER": "header"}
    await sync_to_async(fill_to_the_brim)("acme")
    response = await async_client.get("/saved/", headers={"x-tenant-id": "acme"})
    assert response.status_code == 503 and b"full" in response.content
    response = await async_client.get("/saved/", headers={"x-tenant-id": "globex"})
    assert response.status_code == 200 and b"saved state of globex" in response.content


# --- nine tenants within their shares fill the store ---------------------------------


def fill_with_views(tenant: str, count: int) -> None:
    """``count`` saved views of ~1 KB for ``tenant``, as djust saves them."""
    router = get_state_router()
    with tenant_context(tenant, must_exist=False):
        for i in range(count):
            router.set(f"tenant:{tenant}:S{i:03}_liveview_/saved/", b"v" * 1000)


def nine_fill_the_store() -> list[str]:
    """Nine tenants save views, each within its share, until the store has
    no room for even a small one."""
    nine = [f"busy{i}" for i in range(9)]
    for tenant in nine:
        fill_with_views(tenant, 6)
    router = get_state_router()
    for i in range(1000):
        stats = TenantStateMemoryBackend.store_stats()
        if stats["bytes"] + 100 > stats["max_bytes"]:
            break
        tenant = nine[i % 9]
        with tenant_context(tenant, must_exist=False):
            router.set(f"tenant:{tenant}:T{i:03}_liveview_/saved/", b"v" * 40)
    assert all(TenantStateMemoryBackend(t).used_bytes <= SHARE for t in nine)
    return nine


@pytest.mark.django_db(transaction=True)
def test_nine_tenants_within_their_shares_never_refuse_a_quiet_tenants_first_page(client):
    """Nine tenants, each within STATE_TENANT_MAX_BYTES (an eighth), fill the
    store between them; a quiet tenant's first page still saves its view: it
    is within its effective share (the store over the tenants holding keys),
    so the tenant furthest over its own gives up its least recently used
    views (docs/state.md#fair-share-one-tenant-cannot-fill-the-store). Under
    the rule before, the page answered 503."""
    nine = nine_fill_the_store()
    before = {t: saved_views(t) for t in nine}

    response = client.get("/saved/", HTTP_HOST="quiet.example.com")
    assert response.status_code == 200, response.status_code
    assert "saved state of quiet" in response.content.decode()
    assert saved_views("quiet") == 1
    stats = TenantStateMemoryBackend.store_stats()
    assert stats["bytes"] <= stats["max_bytes"] and stats["tenants"] == 10
    # The views that went were the heaviest tenants', never the quiet one's.
    after = {t: saved_views(t) for t in nine}
    assert sum(after.values()) < sum(before.values())


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_nine_tenants_within_their_shares_never_refuse_a_quiet_tenants_first_mount():
    await sync_to_async(nine_fill_the_store)()
    session = await sync_to_async(new_session_key)()
    frame = await mount("quiet.example.com", session)
    assert frame["type"] == "mount" and "saved state of quiet" in frame["html"], frame
    assert await sync_to_async(saved_views)("quiet") == 1
    # And it is restored on the next mount: it was saved, not dropped.
    frame = await mount("quiet.example.com", session)
    assert frame["type"] == "mount"
    assert TenantStateMemoryBackend.store_stats()["bytes"] <= STORE


# --- ...whatever the others hold: application state too ---------------------------


def nine_fill_with_application_state(how: str = "set") -> list[str]:
    """Nine tenants write application state (no saved view to evict), each
    within ``STATE_TENANT_MAX_BYTES``, until the store refuses them; ``how``
    is the write: ``set`` (JSON), ``bytes``, ``ttl`` (an hour) or ``incr``."""
    nine = [f"evil{i}" for i in range(9)]
    for tenant in nine:
        backend = get_tenant_state_backend(tenant)
        for n in range(10_000):
            try:
                if how == "incr":
                    backend.incr(f"counter:{n:04}:" + "c" * 180)
                elif how == "bytes":
                    backend.set(f"draft:{n}", b"x" * 200)
                elif how == "ttl":
                    backend.set(f"draft:{n}", "x" * 200, ttl=3600)
                else:
                    backend.set(f"draft:{n}", "x" * 200)
            except QuotaExceeded:
                assert n > 0
                break
    stats = TenantStateMemoryBackend.store_stats()
    assert stats["bytes"] + 600 > stats["max_bytes"], stats
    assert all(TenantStateMemoryBackend(t).used_bytes <= SHARE for t in nine)
    return nine


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["set", "bytes", "ttl", "incr"])
def test_nine_tenants_full_of_application_state_never_refuse_a_quiet_tenant(client, how):
    """The red team's attack: nine tenants fill the store with application
    state, explicit writes that were never evictable; the quiet tenant's
    first page answered 503 and its own ``set`` raised ``QuotaExceeded``.
    Now the tenants furthest over their effective share give up their
    oldest application state (docs/state.md#fair-share-one-tenant-cannot-fill-the-store)."""
    get_tenant_state_backend("modest").set("kept", "m" * 1000)  # within every share
    nine = nine_fill_with_application_state(how)
    assert TenantStateMemoryBackend("globex").used_bytes == 0

    response = client.get("/saved/", HTTP_HOST="globex.example.com")
    assert response.status_code == 200, response.status_code
    assert "saved state of globex" in response.content.decode()
    globex = get_tenant_state_backend("globex")
    globex.set("settings", "y" * 500)
    assert globex.incr("logins") == 1
    globex.set("token", b"t" * 300, ttl=60)
    assert globex.get("settings") == "y" * 500
    stats = TenantStateMemoryBackend.store_stats()
    assert stats["bytes"] <= stats["max_bytes"] and stats["tenants"] == 11
    # Up to its effective share, it is never refused.
    share = stats["effective_share"]
    i = 0
    while TenantStateMemoryBackend("globex").used_bytes + 600 <= share:
        globex.set(f"more{i}", b"z" * 500)
        i += 1
    # A tenant within its share lost nothing; the nine were over theirs.
    assert get_tenant_state_backend("modest").get("kept") == "m" * 1000
    assert any(TenantStateMemoryBackend(t).used_bytes < SHARE - 600 for t in nine)
    assert all(
        TenantStateMemoryBackend(t).used_bytes + 300 > share for t in nine
    ), "a tenant was taken below its effective share"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_nine_tenants_full_of_application_state_never_refuse_a_quiet_tenants_mount():
    await sync_to_async(nine_fill_with_application_state)()
    session = await sync_to_async(new_session_key)()
    frame = await mount("globex.example.com", session)
    assert frame["type"] == "mount" and "saved state of globex" in frame["html"], frame
    assert await sync_to_async(saved_views)("globex") == 1
    frame = await mount("globex.example.com", session)
    assert frame["type"] == "mount"


@pytest.mark.django_db(transaction=True)
def test_a_quiet_tenant_takes_views_over_the_share_before_anyones_application_state(client):
    """Four tenants hold saved views and five application state, all over
    the effective share of the quiet tenants that come: views go first; the
    application state only once no tenant over its share holds a view."""
    views_holders = [f"views{i}" for i in range(4)]
    data_holders = [f"data{i}" for i in range(5)]
    for tenant in views_holders:
        fill_with_views(tenant, 7)
    for tenant in data_holders:
        backend = get_tenant_state_backend(tenant)
        for i in range(7):
            backend.set(f"d{i}", b"d" * 1000)
    before = {t: TenantStateMemoryBackend(t).used_bytes for t in data_holders}
    assert client.get("/saved/", HTTP_HOST="quiet.example.com").status_code == 200
    assert {t: TenantStateMemoryBackend(t).used_bytes for t in data_holders} == before
    assert sum(saved_views(t) for t in views_holders) < 28
    # Many quiet tenants later, the views holders are within their shares
    # and the data holders give up their oldest keys.
    backend = None
    for q in range(12):
        backend = get_tenant_state_backend(f"quiet{q}")
        backend.set("first", b"q" * 2500)
    assert any(
        get_tenant_state_backend(t).get("d0") is None for t in data_holders
    ), "no application state went"
    assert all(get_tenant_state_backend(t).get("d6") == b"d" * 1000 for t in data_holders)
