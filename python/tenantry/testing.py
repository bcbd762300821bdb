"""Testing helpers: a pytest plugin (registered by the ``pytest11`` entry point
``tenantry.testing``) and :class:`TenantTestCase` for ``unittest``.

Fixtures (pytest-django provides the database and ``client``):

``tenant``
    A tenant bound for the test (``get_current_tenant()`` is it, scoped
    managers see its rows). With ``TENANT_MODEL`` set its registry row is
    created first. Default id ``"acme"``; choose others with
    ``@pytest.mark.parametrize("tenant", ["acme", "globex"], indirect=True)``
    (a param may also be a dict: ``{"id": "acme", "name": "Acme", "settings": {...}}``).
``tenant_factory``
    ``make(id, *, name=None, settings=None, **fields) -> TenantInfo``: creates
    more tenants (registry rows) without binding them.
``tenant_client``
    A Django test client aimed at ``tenant`` through the configured resolver:
    a subdomain resolver gets ``HTTP_HOST``, a path resolver a path prefix, a
    header resolver the header, a session resolver the session key.
``live_view``
    ``await live_view(view_path, url="/")`` → a connected djust LiveView over
    a real WebSocket (channels' ``WebsocketCommunicator`` on
    ``ASGI_APPLICATION``), aimed at ``tenant``: ``.html``, ``await
    .send_event(name, **params)``. Needs pytest-asyncio and a transactional
    database (``@pytest.mark.django_db(transaction=True)``).

Between tests (autouse) everything a tenant leaves is reset: the registry
cache (which would otherwise outlive a test's rollback), memory presence and
memory state, the tenant cache's generations and local-memory entries, rate
-limit counts and usage figures. Each test also gets its own key space for
counts and figures (:func:`new_key_space`): ``<TENANT_KEY_PREFIX>:<random>``,
in memory and on Redis, so nothing a test (or an earlier test run) counted
on a shared Redis is seen by the next.

Each test-client request resolves its own tenant: while a test runs, Django's
test clients (sync and async) and :class:`LiveView` run their requests with
no tenant bound, so the ``tenant`` fixture's binding never leaks into them.
See docs/testing.md.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, TestCase
from django.test.client import AsyncClientHandler, ClientHandler

from . import _core, audit, conf
from ._core import TenantInfo, TenantRateLimiter
from .addressing import ANY, probe
from .context import _current, tenant_context
from .storage import forget_storages

__all__ = [
    "LiveView",
    "TenantClient",
    "TenantTestCase",
    "create_tenant",
    "new_key_space",
    "reset_tenantry",
]

DEFAULT_TENANT = "acme"


def reset_tenantry() -> None:
    """Forget what tenantry keeps in this process: the registry cache, memory
    presence, memory state, memory rate-limit counts, usage figures (the
    memory store's, and the counts held or batched for Redis), the tenant
    cache (its generations, and the entries of local-memory caches keyed by
    ``tenantry.cache.make_key``), and the tenant storages a test built and
    dropped (``tenantry.storage``), and the audit events waiting for
    ``tenantry.audit.flush()``. What a test left on Redis is out of
    reach of the next one through :func:`new_key_space`."""
    _core.invalidate_tenant(None)
    _core.TenantAwareMemoryBackend.clear_all()
    _core.TenantStateMemoryBackend.clear_all()
    TenantRateLimiter.clear_all()
    _core.usage_clear()
    _reset_tenant_cache()
    forget_storages()
    audit.discard_waiting()


def new_key_space(namespace: str | None = None) -> str | None:
    """Keep rate-limit counts and usage figures (memory and Redis) under
    ``<TENANT_KEY_PREFIX>:<namespace>`` from now on (``conf.current().
    counts_key_prefix``): a fresh random namespace by default, none with
    ``""``. The plugin and :class:`TenantTestCase` give each test its own, so
    two identical tests (or two runs against the same Redis) never see each
    other's counts. Returns the namespace."""
    if namespace is None:
        namespace = f"t{uuid.uuid4().hex[:12]}"
    _core.set_counts_namespace(namespace or None)
    conf.reset()
    return namespace or None


def _without_tenant(call):
    """``call`` (a test client handler's ``__call__``) run with no tenant
    bound, as a server runs a request: the request resolves its own."""
    if getattr(call, "_tenantry_unbound", False):
        return call
    if inspect.iscoroutinefunction(call):

        @functools.wraps(call)
        async def unbound_async(*args: Any, **kwargs: Any) -> Any:
            token = _current.set(None)
            try:
                return await call(*args, **kwargs)
            finally:
                _current.reset(token)

        unbound_async._tenantry_unbound = True  # type: ignore[attr-defined]
        return unbound_async

    @functools.wraps(call)
    def unbound(*args: Any, **kwargs: Any) -> Any:
        token = _current.set(None)
        try:
            return call(*args, **kwargs)
        finally:
            _current.reset(token)

    unbound._tenantry_unbound = True  # type: ignore[attr-defined]
    return unbound


def requests_resolve_their_own_tenant() -> None:
    """Run every Django test-client request (``Client``, ``AsyncClient`` and
    their subclasses) with no tenant bound, so a test's binding (the
    ``tenant`` fixture, ``tenant_context``) never answers for a request: each
    request resolves its own tenant, as in production. Idempotent; the plugin
    and :class:`TenantTestCase` call it."""
    for handler in (ClientHandler, AsyncClientHandler):
        handler.__call__ = _without_tenant(handler.__call__)


@contextlib.contextmanager
def _unbound() -> Iterator[None]:
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def _reset_tenant_cache() -> None:
    """Local-memory caches keep their entries in a process-wide store that
    outlives a test (and its ``settings.CACHES``): drop the entries tenantry's
    key function wrote (they carry ``{tenant:<id>}``), and the generations.
    Shared servers (Redis, memcached) are never wiped."""
    from django.core.cache.backends import locmem

    from . import cache as tenant_cache

    tenant_cache.forget_generations()
    for name, store in getattr(locmem, "_caches", {}).items():
        lock = locmem._locks.get(name)
        if lock is None:
            continue
        with lock:
            for key in [k for k in store if tenant_cache.made_by_make_key(k)]:
                store.pop(key, None)
                locmem._expire_info.get(name, {}).pop(key, None)


def create_tenant(
    tenant_id: str, *, name: Any = None, settings: dict | None = None, **fields: Any
) -> TenantInfo:
    """The tenant ``tenant_id``: with ``TENANT_MODEL`` its row is created (or
    updated) with ``name``, ``settings`` and ``fields``, and the registry's
    ``TenantInfo`` (name, settings, row) is returned."""
    config = conf.current()
    if config.tenant_model is None:
        return TenantInfo(tenant_id, name=name, settings=settings)
    from django.apps import apps

    label, id_field = config.tenant_model
    values = dict(fields)
    name_field = config.tenant_name_field
    if name_field:
        values[name_field] = tenant_id if name is None else name
    settings_field = config.tenant_settings_field
    if settings_field and settings is not None:
        values[settings_field] = settings
    apps.get_model(label)._base_manager.update_or_create(**{id_field: tenant_id}, defaults=values)
    _core.invalidate_tenant(tenant_id)
    found = _core.lookup_tenant(tenant_id)
    if found is None:
        raise LookupError(
            f"created the row of tenant {tenant_id!r} in {label} but the registry does not "
            "find it (an inactive flag, or TENANT_VALIDATOR?)"
        )
    return found


def aim(tenant_id: str, path: str = "/") -> tuple[str, dict[str, str], str | None]:
    """``(path, META, session key)`` of a request that the configured resolver
    resolves to ``tenant_id``: the first step of the chain that does."""
    session = None
    for step in probe(tenant_id, path):
        if step.found == tenant_id:
            return step.path, step.meta, None
        if step.found is ANY and step.step == "SessionResolver" and session is None:
            session = conf.current().session_key
    if session is not None:
        return path, {}, session
    raise LookupError(
        f"no configured resolver step can be aimed at tenant {tenant_id!r} from a test "
        "request (a custom, JWT or user resolver, or an id the hosts cannot carry): "
        "set HTTP_HOST or the headers yourself"
    )


class TenantClient(Client):
    """A Django test client whose every request reaches ``tenant_id`` the way
    the configured resolver reads it."""

    def __init__(self, tenant_id: str | TenantInfo, **defaults: Any) -> None:
        super().__init__(**defaults)
        self.tenant_id = _core.validate_tenant_id(tenant_id)
        _path, _meta, key = aim(self.tenant_id)
        if key is not None:
            session = self.session
            session[key] = self.tenant_id
            session.save()
            from django.conf import settings

            self.cookies[settings.SESSION_COOKIE_NAME] = session.session_key

    def generic(self, method: str, path: str, *args: Any, **extra: Any) -> Any:
        aimed, meta, _key = aim(self.tenant_id, path.split("?", 1)[0])
        query = path.split("?", 1)[1] if "?" in path else None
        return super().generic(
            method, aimed + (f"?{query}" if query else ""), *args, **{**meta, **extra}
        )


class LiveView:
    """A djust LiveView mounted over a real WebSocket (channels'
    ``WebsocketCommunicator`` on ``ASGI_APPLICATION``)."""

    def __init__(self, tenant_id: str, view: str, url: str = "/") -> None:
        from channels.testing import WebsocketCommunicator
        from django.conf import settings
        from django.utils.module_loading import import_string

        self.tenant_id = tenant_id
        self.view = view
        self.url, meta, key = aim(tenant_id, url)
        if key is not None:
            raise LookupError("live_view cannot carry a session-resolved tenant yet")
        host = meta.pop("HTTP_HOST", "testserver")
        headers = [(b"host", host.encode()), (b"origin", f"http://{host}".encode())]
        headers += [
            (name[5:].lower().replace("_", "-").encode(), value.encode())
            for name, value in meta.items()
        ]
        self.html = ""
        self.frames: list[dict] = []
        self._ref = 0
        # The communicator's task copies the current context when it is
        # made: made unbound, the socket resolves its own tenant.
        with _unbound():
            self.socket = WebsocketCommunicator(
                import_string(settings.ASGI_APPLICATION), "/ws/live/", headers=headers
            )

    async def mount(self, **params: Any) -> LiveView:
        connected, _ = await self.socket.connect()
        if not connected:
            raise AssertionError(f"the WebSocket handshake for {self.tenant_id!r} was refused")
        await self.socket.receive_json_from(timeout=5)  # djust's connect frame
        await self.socket.send_json_to(
            {"type": "mount", "view": self.view, "url": self.url, "params": params}
        )
        frame = await self._until("mount", "error", "navigate")
        if frame["type"] != "mount":
            raise AssertionError(f"{self.view} did not mount for {self.tenant_id!r}: {frame}")
        self.html = str(frame.get("html", ""))
        return self

    async def send_event(self, event: str, /, **params: Any) -> dict:
        """Send a client event; returns djust's answer frame and refreshes
        :attr:`html` with the view as rendered after it."""
        self._ref += 1
        await self.socket.send_json_to(
            {"type": "event", "event": event, "params": params, "ref": self._ref}
        )
        frame = await self._until("patch", "html_update", "noop", "error", "response")
        if frame["type"] == "error":
            return frame
        await self.socket.send_json_to({"type": "request_html"})
        recovered = await self._until("html_recovery", "error")
        if recovered["type"] == "html_recovery":
            self.html = recovered["html"]
        return frame

    async def _until(self, *types: str) -> dict:
        for _ in range(50):
            frame = await self.socket.receive_json_from(timeout=5)
            self.frames.append(frame)
            if frame.get("type") in types:
                return frame
        raise AssertionError(f"no {types} frame from {self.view}")

    async def close(self) -> None:
        await self.socket.disconnect()


# -- pytest plugin ----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    requests_resolve_their_own_tenant()


@pytest.fixture(autouse=True)
def _tenantry_reset():
    reset_tenantry()
    new_key_space()
    yield
    reset_tenantry()


def _spec(param: Any) -> dict:
    if param is None:
        return {"tenant_id": DEFAULT_TENANT}
    if isinstance(param, dict):
        spec = dict(param)
        spec["tenant_id"] = spec.pop("id")
        return spec
    return {"tenant_id": str(param)}


def _with_database(request: pytest.FixtureRequest) -> None:
    if conf.current().tenant_model is not None and not any(
        name in request.fixturenames for name in ("db", "transactional_db")
    ):
        request.getfixturevalue("db")


@pytest.fixture
def tenant_factory(request):
    """``make(id, *, name=None, settings=None, **fields)`` → ``TenantInfo``."""

    def make(tenant_id: str, **kwargs: Any) -> TenantInfo:
        _with_database(request)
        return create_tenant(tenant_id, **kwargs)

    return make


@pytest.fixture
def tenant(request, tenant_factory):
    """A tenant (``"acme"`` unless parametrized) with its registry row, bound
    for the test."""
    spec = _spec(getattr(request, "param", None))
    info = tenant_factory(spec.pop("tenant_id"), **spec)
    with tenant_context(info, must_exist=False) as bound:
        yield bound


@pytest.fixture
def tenant_client(tenant):
    """A Django test client aimed at ``tenant`` through the configured resolver."""
    return TenantClient(tenant)


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - documented requirement

    @pytest.fixture
    def live_view():
        raise pytest.UsageError("the live_view fixture needs pytest-asyncio (pip install it)")

else:

    @pytest_asyncio.fixture
    async def live_view(tenant):
        """``await live_view(view, url="/", **mount_params)`` → a mounted :class:`LiveView`."""
        opened: list[LiveView] = []

        async def connect(view: str, url: str = "/", **params: Any) -> LiveView:
            live = LiveView(tenant.id, view, url)
            opened.append(live)
            return await live.mount(**params)

        yield connect
        for live in opened:
            await live.close()


# -- unittest ---------------------------------------------------------------------


class TenantTestCase(TestCase):
    """A ``django.test.TestCase`` with a tenant: ``tenant_id`` (class
    attribute, default ``"acme"``) is created in the registry when one is
    set, bound during each test (``self.tenant``), and ``self.client`` is a
    :class:`TenantClient` aimed at it. tenantry's in-process caches are reset
    around each test."""

    tenant_id = DEFAULT_TENANT
    tenant_name: Any = None
    tenant_settings: dict | None = None

    @classmethod
    def setUpClass(cls) -> None:
        requests_resolve_their_own_tenant()
        super().setUpClass()

    def setUp(self) -> None:
        super().setUp()
        reset_tenantry()
        new_key_space()
        self.addCleanup(reset_tenantry)
        self.tenant = create_tenant(
            self.tenant_id, name=self.tenant_name, settings=self.tenant_settings
        )
        bound = tenant_context(self.tenant, must_exist=False)
        bound.__enter__()
        self.addCleanup(bound.__exit__, None, None, None)
        self.client = TenantClient(self.tenant)
