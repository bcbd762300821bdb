"""Redis over TLS (``rediss://``, SPEC §14): presence and state against a real
``redis-server`` that only speaks TLS (tests/redis_servers.py), verified
against the suite's own CA (``ssl_ca_certs``), with verification turned off
(``ssl_cert_reqs=none``), and refused — fast, with the URL but not the
password — when the self-signed CA is not trusted."""

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
)


def prefix() -> str:
    return f"tls-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("mode", ["ca", "no-verify"])
def test_presence_and_state_over_tls_keep_tenants_apart(redis_tls_server, mode):
    url = redis_tls_server.url
    if mode == "no-verify":
        url = f"{redis_tls_server.bare_url}?ssl_cert_reqs=none"
    p = prefix()
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
