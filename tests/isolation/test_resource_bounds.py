"""Resource bounds: 100,000 distinct tenants through the in-memory presence
and state stores, the per-tenant backend caches and the registry cache stay
within the documented bounds, and 1 MiB headers, hosts and paths are refused
cleanly, in-process and by a real server."""

from __future__ import annotations

import resource
import socket
import time

import pytest
from django.core.exceptions import DisallowedHost

from tenantry import (
    TenantAwareMemoryBackend,
    TenantInfo,
    TenantStateMemoryBackend,
    conf,
    get_tenant_presence_backend,
    get_tenant_state_backend,
    resolve_tenant,
)
from tests.demo_server import demo_server

MIB = 1024 * 1024


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def accept_everything(tenant_id):
    return TenantInfo(tenant_id, name=tenant_id.upper())


# The registry's lookups read the suspension table too (one query per refresh
# of this process's copy, never one per tenant: docs/operations.md#suspending-a-tenant).
@pytest.mark.django_db
def test_registry_cache_stays_bounded_over_100000_tenants(rf, settings):
    settings.DJUST_CONFIG = {
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_VALIDATOR": "tests.isolation.test_resource_bounds.accept_everything",
    }
    for i in range(100_000):
        assert resolve_tenant(rf.get("/", HTTP_HOST=f"t{i}.example.com")).name == f"T{i}"
    found, missing = conf.current().registry_cache_sizes
    assert found == 10_000 and missing == 0  # TENANT_CACHE_SIZE, the documented bound


def test_memory_presence_over_100000_tenants_leaves_nothing_behind():
    TenantAwareMemoryBackend.clear_all()
    # Long enough that no join expires while 100,000 are made on a busy machine.
    backends = [TenantAwareMemoryBackend(f"t{i}", timeout=10.0) for i in range(100_000)]
    for backend in backends:
        backend.join("room", "user", {"n": 1})
    assert TenantAwareMemoryBackend.store_stats() == (100_000, 100_000)
    for backend in backends[:50_000]:
        backend.leave("room", "user")
    assert TenantAwareMemoryBackend.store_stats() == (50_000, 50_000)
    time.sleep(10.2)  # the rest expire without anyone calling leave
    TenantAwareMemoryBackend.reclaim_expired()
    assert TenantAwareMemoryBackend.store_stats() == (0, 0)
    assert all(b.count("room") == 0 for b in backends[50_000:50_100])
    TenantAwareMemoryBackend.clear_all()


def test_memory_state_over_100000_tenants_stays_within_its_accounting():
    """Per key the store counts its record + 12 bytes, + 24 with a TTL
    (docs/state.md); deleted tenants and expired keys give it all back."""
    TenantStateMemoryBackend.clear_all()
    name, value = "session", b"0123456789abcdef"
    backends = [get_tenant_state_backend(f"t{i}") for i in range(100_000)]
    for backend in backends:
        # Long enough to outlast this loop on a loaded machine (100,000 sets
        # take 1.8-2.3 s here): the accounting below counts every key.
        backend.set(name, value, ttl=60.0)
    stats = TenantStateMemoryBackend.store_stats()
    record = 5 + 8 + len(name) + 1 + len(value)  # header, expiry, name, tag, value
    assert stats["keys"] == 100_000
    assert stats["bytes"] == 100_000 * (record + 12 + 24)
    for backend in backends[:50_000]:
        assert backend.delete_tenant() == 1
    assert TenantStateMemoryBackend.store_stats()["keys"] == 50_000
    assert all(b.get(name) is None for b in backends[:100])
    assert all(b.get(name) == value for b in backends[50_000:50_100])
    for backend in backends[50_000:]:
        backend.set(name, value, ttl=0.5)
    time.sleep(0.7)  # the rest expire without anyone deleting them
    TenantStateMemoryBackend.purge_expired()
    assert TenantStateMemoryBackend.store_stats()["keys"] == 0
    assert TenantStateMemoryBackend.store_stats()["bytes"] == 0
    TenantStateMemoryBackend.clear_all()


def test_per_tenant_backend_caches_are_bounded_over_100000_tenants():
    from tenantry import presence, state

    for i in range(100_000):
        get_tenant_state_backend(f"c{i}")
        get_tenant_presence_backend(f"c{i}")
    assert state._backend_for.cache_info().currsize == state.CACHE_SIZE
    assert presence._backend_for.cache_info().currsize == presence.CACHE_SIZE


def test_repeated_tenant_churn_does_not_grow_memory():
    TenantAwareMemoryBackend.clear_all()

    def churn(round_):
        for i in range(20_000):
            backend = TenantAwareMemoryBackend(f"r{round_}-{i}")
            backend.join("room", "u", {})
            backend.leave("room", "u")

    churn(0)
    baseline = rss_kib()
    for round_ in range(1, 6):
        churn(round_)
    assert TenantAwareMemoryBackend.store_stats() == (0, 0)
    # ru_maxrss is a high-water mark: 100,000 more tenants came and went
    # without raising it by more than a few MiB of allocator noise.
    assert rss_kib() - baseline < 16 * 1024


def test_one_mib_inputs_resolve_to_nothing(rf, settings):
    settings.ALLOWED_HOSTS = [".example.com"]
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": ["header", "path", "subdomain"],
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_PATH_EXCLUDE": [],
    }
    big = "a" * MIB
    request = rf.get("/" + big + "/x", HTTP_HOST=big + ".example.com", HTTP_X_TENANT_ID=big)
    assert resolve_tenant(request) is None
    with pytest.raises(DisallowedHost):
        resolve_tenant(rf.get("/", HTTP_HOST=big + ".evil.org"))


def raw_request(port: int, data: bytes) -> int:
    """The status the server answers; it may answer (and close) before it has
    read the whole request, so the reply is read even when sending fails."""
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while b"\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


@pytest.mark.soak
def test_real_server_refuses_one_mib_header_and_path(tmp_path):
    """daphne (Twisted) drops a request whose line exceeds 16 KiB without
    reading it further (the connection closes, status 0 here) and keeps
    serving; inputs just under that reach Django and resolve by the rules."""

    def request(path: bytes = b"/board/", host: bytes = b"", extra: bytes = b"") -> int:
        return raw_request(
            port,
            b"GET "
            + path
            + b" HTTP/1.1\r\nHost: "
            + host
            + b"\r\n"
            + extra
            + b"Connection: close\r\n\r\n",
        )

    with demo_server(tmp_path) as port:
        acme = f"acme.localhost:{port}".encode()
        huge = b"a" * MIB
        refused = [
            request(host=acme, extra=b"X-Tenant-ID: " + huge + b"\r\n"),
            request(path=b"/" + huge, host=acme),
            request(host=huge + b".localhost"),
        ]
        assert all(s == 0 or 400 <= s < 500 for s in refused), refused
        near = b"a" * 15_000
        assert request(host=acme, extra=b"X-Tenant-ID: " + near + b"\r\n") == 200
        assert request(path=b"/" + near, host=acme) == 404
        assert request(host=near + f".localhost:{port}".encode()) == 404  # no such tenant
        assert request(host=acme) == 200  # and the server is still serving
