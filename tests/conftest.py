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
