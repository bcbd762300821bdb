"""Crossings between Python and the Rust core per request
(docs/performance-design.md#crossings-per-request): a request crosses from Python
into the core at most twice on tenancy's own path (resolution, rate limits,
usage), and the core goes back into Python at most once there (reading
``request.META``), with every per-request feature on. A real djust LiveView
over HTTP (Django's test client, the whole middleware stack) and over
WebSocket (channels' communicator against djust's consumer).

Calls into the core are seen by a profile hook (every call of a
``tenantry._core`` function or method; attribute reads of its objects, such
as ``TenantInfo.id``, are field reads and not counted). The core's own
callbacks are counted by the core (``_core._count_crossings``, a test-only
switch: off, each site costs one relaxed atomic load) and attributed to the
call they happened in. Calls a view makes to a store (djust saving its state
through tenantry's state router, presence) are the view's own work, listed
apart: each finds the bound tenant (one ``ContextVar`` read).

A later per-request feature (metrics, suspension, flags, audit) goes into
:data:`FEATURES`; the budgets below keep it honest.
"""

from __future__ import annotations

import collections
import sys
import threading

import pytest

from tenantry import _core
from tenantry.ratelimit import TenantRateLimiter
from tenantry.usage import get_usage
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "acme.example.com"
#: Every per-request feature, on: resolution (subdomain), rate limits on
#: every gated scope (generous: nothing is refused), quotas (usage counted
#: against them). Add new per-request features here.
FEATURES = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_RATE_LIMITS": {
        "http": "100000/s",
        "events": "100000/s",
        "mounts": "100000/s",
    },
    "TENANT_QUOTAS": {"requests_per_day": 10**9, "events_per_day": 10**9},
}
#: Calls a view makes to a store: the view's own work, not tenancy's path.
STORE_CALLS = ("TenantStateRouter.", "TenantPresenceRouter.")
#: The budgets (SPEC: at most two calls in, at most one callback out).
MAX_CALLS = 2
MAX_CALLBACKS = 1


def _is_core(fn) -> bool:
    if getattr(fn, "__module__", None) == "tenantry._core":
        return True
    owner = getattr(fn, "__self__", None)
    if owner is None:
        return False
    cls = owner if isinstance(owner, type) else type(owner)
    return cls.__module__ == "tenantry" and cls.__name__ in dir(_core)


class Crossings:
    """Calls into the core, and the core's callbacks into Python within
    each, while the block runs (this thread, and threads it starts)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.callbacks: collections.Counter[str] = collections.Counter()
        #: Python functions the core ran (user code called from Rust).
        self.python_from_core: collections.Counter[str] = collections.Counter()
        self._stacks = threading.local()

    def _hook(self, frame, event, arg):
        stack = self._stacks.__dict__.setdefault("stack", [])
        if event == "c_call":
            name = getattr(arg, "__qualname__", repr(arg)) if _is_core(arg) else None
            if name is not None:
                self._flush(None)
                self.calls[name] += 1
            stack.append(name)
        elif event in ("c_return", "c_exception"):
            name = stack.pop() if stack else None
            if name is not None:
                self._flush(name)
        elif event == "call":
            if stack and stack[-1] is not None:
                self.python_from_core[f"{stack[-1]} -> {frame.f_code.co_name}"] += 1
            stack.append(None)
        elif event == "return" and stack:
            stack.pop()

    def _flush(self, into: str | None) -> None:
        counted = _core._count_crossings(True)
        for kind, n in counted.items():
            if n:
                self.callbacks[f"{into}: {kind}"] += n

    def __enter__(self) -> Crossings:
        _core._count_crossings(True)
        threading.setprofile(self._hook)
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(None)
        threading.setprofile(None)
        for kind, n in _core._count_crossings(False).items():
            if n:
                self.callbacks[f"None: {kind}"] += n

    def tenancy_calls(self) -> dict[str, int]:
        return {k: n for k, n in self.calls.items() if not k.startswith(STORE_CALLS)}

    def tenancy_callbacks(self) -> dict[str, int]:
        return {k: n for k, n in self.callbacks.items() if not k.startswith(STORE_CALLS)}


@pytest.fixture(autouse=True)
def features(settings):
    settings.DJUST_CONFIG = dict(FEATURES)
    TenantRateLimiter.clear_all()
    yield
    TenantRateLimiter.clear_all()
    _core._count_crossings(False)


def _budget(seen: Crossings) -> None:
    calls, callbacks = seen.tenancy_calls(), seen.tenancy_callbacks()
    assert sum(calls.values()) <= MAX_CALLS, calls
    assert sum(callbacks.values()) <= MAX_CALLBACKS, callbacks
    assert not seen.python_from_core, seen.python_from_core
    # A store call finds the bound tenant: one ContextVar read, nothing else.
    for name, n in seen.callbacks.items():
        if name.startswith(STORE_CALLS):
            assert name.endswith(": context_var"), name
            assert n <= seen.calls[name.split(":")[0]], (name, n)


def test_a_liveview_get_crosses_once_into_the_core_and_reads_meta_once(client):
    for _ in range(2):  # compiled config, warm caches
        assert client.get("/items/", HTTP_HOST=HOST).status_code == 200
    with Crossings() as seen:
        response = client.get("/items/", HTTP_HOST=HOST)
    assert response.status_code == 200
    assert response["RateLimit-Limit"] == "100000"  # the limits were checked
    _budget(seen)
    # Resolution, the http limits and the usage count are one call; the
    # response's RateLimit-* headers the second.
    assert seen.tenancy_calls() == {
        "TenantRateLimiter._resolve_and_check_http": 1,
        "Decision.headers": 1,
    }
    assert seen.tenancy_callbacks() == {"TenantRateLimiter._resolve_and_check_http: request": 1}
    assert get_usage("acme")["total"]["http_requests"] == 3  # usage was counted


def test_a_get_without_limits_is_one_call(client, settings):
    unlimited = ("TENANT_RATE_LIMITS", "TENANT_QUOTAS")
    settings.DJUST_CONFIG = {k: v for k, v in FEATURES.items() if k not in unlimited}
    client.get("/items/", HTTP_HOST=HOST)
    with Crossings() as seen:
        response = client.get("/items/", HTTP_HOST=HOST)
    assert response.status_code == 200 and "RateLimit-Limit" not in response
    _budget(seen)
    # Resolution alone; the request is counted in Python's held counts.
    assert seen.tenancy_calls() == {"resolve_tenant_sourced": 1}
    assert seen.tenancy_callbacks() == {"resolve_tenant_sourced: request": 1}
    assert get_usage("acme")["total"]["http_requests"] == 2  # usage still counted


def test_the_counter_costs_nothing_when_off_and_counts_when_on(client):
    client.get("/items/", HTTP_HOST=HOST)
    _core._count_crossings(False)
    client.get("/items/", HTTP_HOST=HOST)
    assert not any(_core._count_crossings(True).values())  # off: nothing counted
    client.get("/items/", HTTP_HOST=HOST)
    counted = _core._count_crossings(False)
    assert counted["request"] == 1, counted  # on: the META read of that request


@pytest.mark.asyncio
async def test_a_liveview_event_crosses_at_most_twice():
    tab = LiveClient(HOST)
    frame = await tab.mount()
    assert frame["type"] == "mount", frame
    for _ in range(2):
        await tab.event("peek")
    with Crossings() as seen:
        frame = await tab.event("peek")
    assert frame.get("type") != "error", frame
    _budget(seen)
    # The check, which counts the usage too (whether it must load the user
    # in a thread first is the config's answer, read in Python).
    assert seen.tenancy_calls() == {"TenantRateLimiter.check": 1}
    await tab.socket.disconnect()


def member(user, tenant) -> bool:
    """``TENANT_MEMBERSHIP_CHECK`` of the test below: only alice belongs."""
    return user.username == "alice"


def test_one_call_still_admits_before_it_counts(settings, django_user_model):
    """With a membership check the tenant is admitted (in Python) before its
    limits are checked and its usage counted, as with two calls: a refused
    request spends nothing of the tenant's allowance
    (docs/performance-design.md#crossings-per-request)."""
    from django.test import Client

    settings.DJUST_CONFIG = {
        **FEATURES,
        "TENANT_RATE_LIMITS": {"http": "2/m"},
        "TENANT_QUOTAS": {},
        "TENANT_MEMBERSHIP_CHECK": f"{__name__}.member",
    }
    alice, bob = Client(), Client()
    alice.force_login(django_user_model.objects.create_user("alice", password="pw"))
    bob.force_login(django_user_model.objects.create_user("bob", password="pw"))
    for _ in range(3):
        assert bob.get("/items/", HTTP_HOST=HOST).status_code == 404
    ok = alice.get("/items/", HTTP_HOST=HOST)
    assert ok.status_code == 200 and ok["RateLimit-Remaining"] == "1"
    assert get_usage("acme")["total"]["http_requests"] == 1
