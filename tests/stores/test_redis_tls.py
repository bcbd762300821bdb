"""Redis over TLS (``rediss://``, docs/configuration.md): presence and state against a real
``redis-server`` that only speaks TLS (tests/redis_servers.py), verified
against the suite's own CA (``ssl_ca_certs``), with verification turned off
(``ssl_cert_reqs=none``), and refused — fast, with the URL but not the
password — when the self-signed CA is not trusted. Presence, state and rate
limits also run on a Redis Cluster that speaks only TLS
(``rediss+cluster://``)."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from tenantry import (
    BackendError,
    BackendUnavailable,
    TenantAwareRedisBackend,
    TenantStateRedisBackend,
    conf,
    tenant_context,
)
from tenantry.ratelimit import TenantRateLimiter, check, get_rate_limiter


def prefix() -> str:
    return f"tls-{uuid.uuid4().hex[:8]}"


def presence_and_state_stay_apart(url: str, p: str) -> tuple:
    """Presence and state of acme and globex over ``url``: each sees only
    its own. Returns the two state backends for more checks."""
    acme = TenantAwareRedisBackend("acme", redis_url=url, key_prefix=p)
    globex = TenantAwareRedisBackend("globex", redis_url=url, key_prefix=p)
    acme.join("lobby", "u1", {"who": "acme"})
    globex.join("lobby", "u1", {"who": "globex"})
    assert [r["meta"]["who"] for r in acme.list("lobby")] == ["acme"]
    assert [r["meta"]["who"] for r in globex.list("lobby")] == ["globex"]

    s_acme = TenantStateRedisBackend("acme", redis_url=url, key_prefix=p)
    s_globex = TenantStateRedisBackend("globex", redis_url=url, key_prefix=p)
    s_acme.set("k", {"n": 1})
    assert s_acme.get("k") == {"n": 1}
    assert s_globex.get("k") is None
    return s_acme, s_globex


@pytest.mark.parametrize("mode", ["ca", "no-verify"])
def test_presence_and_state_over_tls_keep_tenants_apart(redis_tls_server, mode):
    url = redis_tls_server.url
    if mode == "no-verify":
        url = f"{redis_tls_server.bare_url}?ssl_cert_reqs=none"
    p = prefix()
    s_acme, s_globex = presence_and_state_stay_apart(url, p)
    assert s_acme.incr("hits") == 1 and s_globex.incr("hits") == 1
    # The data really went through the TLS server.
    assert redis_tls_server.keys(f"{p}:*")


def test_untrusted_server_certificate_fails_fast_naming_the_url(redis_tls_server):
    """Verification is on by default: the suite's self-signed CA is not in the
    system's trust store, so the handshake is refused (no hang, no data)."""
    url = redis_tls_server.bare_url.replace("rediss://", "rediss://:hunter2@")
    for backend in (
        TenantStateRedisBackend("acme", redis_url=url, connect_timeout=2),
        TenantAwareRedisBackend("acme", redis_url=url, connect_timeout=2),
    ):
        call = backend.get if isinstance(backend, TenantStateRedisBackend) else backend.list
        with pytest.raises((BackendUnavailable, BackendError)) as info:
            call("k")
        message = str(info.value)
        assert f"127.0.0.1:{redis_tls_server.port}" in message, message
        assert "certificate" in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("rediss://:hunter2@127.0.0.1:6380/0?ssl_cert_reqs=optional", "ssl_cert_reqs"),
        ("rediss://:hunter2@127.0.0.1:6380/0?ssl_certfile=/c.pem", "ssl_certfile"),
        ("redis://:hunter2@127.0.0.1:6380/0?ssl_cert_reqs=none", "rediss://"),
        ("rediss://:hunter2@127.0.0.1:6380/0?ssl_ca_certs=/no/such/ca.pem", "/no/such/ca.pem"),
    ],
)
def test_bad_tls_options_are_refused_naming_them(url, needle):
    with pytest.raises((ImproperlyConfigured, ValueError)) as info:
        TenantStateRedisBackend("acme", redis_url=url)
    assert needle in str(info.value) and "hunter2" not in str(info.value)


def test_bad_tls_option_in_settings_names_the_setting(settings):
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "STATE_REDIS_URL": "rediss+cluster://:hunter2@a:7000,b:7001?ssl_cert_reqs=sometimes",
    }
    with pytest.raises(ImproperlyConfigured, match="STATE_REDIS_URL") as info:
        conf.current()
    assert "ssl_cert_reqs" in str(info.value) and "hunter2" not in str(info.value)


def test_presence_state_and_limits_over_a_tls_cluster(redis_tls_cluster, settings):
    """``rediss+cluster://…?ssl_ca_certs=``: every node and every redirect
    over TLS, verified against the cluster's CA; tenants stay apart."""
    url = redis_tls_cluster.url
    p = prefix()
    presence_and_state_stay_apart(url, p)

    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "TENANT_RATE_LIMITS": {"api": ["2/m"]},
        "RATE_LIMIT_BACKEND": "tenant_redis",
        "RATE_LIMIT_REDIS_URL": url,
        "TENANT_KEY_PREFIX": p,
    }
    TenantRateLimiter.clear_all()
    get_rate_limiter().forget_plans()
    with tenant_context("acme", must_exist=False):
        assert [check("api").allowed for _ in range(3)] == [True, True, False]
    with tenant_context("globex", must_exist=False):
        assert check("api").allowed

    keys = redis_tls_cluster.keys(f"{p}:*")
    kinds = {k.split("}:")[1].split(":")[0].split("-")[0] for k in keys}
    assert {"presence", "state", "ratelimit"} <= kinds, keys
    # The two tenants' keys hash to their own slots, on whichever nodes own them.
    slots = {
        t: {redis_tls_cluster.keyslot(k) for k in keys if f"{{tenant:{t}}}" in k}
        for t in ("acme", "globex")
    }
    assert all(len(s) == 1 for s in slots.values()) and slots["acme"] != slots["globex"]
    assert {redis_tls_cluster.owner(k).port for k in keys} <= {
        n.port for n in redis_tls_cluster.nodes
    }


def test_tls_cluster_refuses_an_untrusted_certificate(redis_tls_cluster):
    bare = redis_tls_cluster.url.split("?")[0]
    backend = TenantStateRedisBackend("acme", redis_url=bare, connect_timeout=2)
    with pytest.raises((BackendUnavailable, BackendError)) as info:
        backend.get("k")
    assert "certificate" in str(info.value), str(info.value)
