"""Shared fixtures. Redis servers are started by ``redis_server`` fixtures
(see tests/redis_servers.py) on free loopback ports and stopped afterwards;
PostgreSQL by ``postgres_server`` (tests/postgres_fixtures.py)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

# tenantry.testing is also registered by the package's pytest11 entry point
# (same name, so this line is then a no-op): it resets the registry cache and
# the memory stores between tests.
pytest_plugins = ["tests.redis_servers", "tenantry.testing", "tests.postgres_fixtures"]


@pytest.fixture
def rf() -> RequestFactory:
    return RequestFactory()


@pytest.fixture
def tenant_config(settings):
    """Set DJUST_CONFIG for one test: ``tenant_config(TENANT_RESOLVER="path")``."""

    def apply(**config):
        settings.DJUST_CONFIG = config
        return config

    return apply


@pytest.fixture(autouse=True, scope="session")
def _sse_sessions_close_at_once():
    """djust keeps a closed SSE stream's session 5 s (so an event POST in
    flight still finds it), awaited when the test's event loop closes the
    stream: ~5 s of idle teardown per SSE test. The tests post before they
    close, so nothing lingers here."""
    from djust import sse

    linger, sse._SESSION_LINGER_S = sse._SESSION_LINGER_S, 0.0
    yield
    sse._SESSION_LINGER_S = linger
