"""Fixtures of the fleet data-plane suites: a pgbouncer in front of the
session's PostgreSQL (tests/pgbouncer_server.py), and extra ``DATABASES``
aliases added for one test."""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from tests.pgbouncer_server import PgBouncer

#: Django's own ``ensure_connection``, as pytest-django saved it before
#: blocking: a Django test case refuses to open connections of aliases it was
#: not told about when it started, and the aliases of :func:`database_alias`
#: are added during the test.
_ENSURE_CONNECTION: list[Any] = []


@pytest.fixture(scope="session", autouse=True)
def _real_ensure_connection(django_db_blocker) -> None:
    _ENSURE_CONNECTION[:] = [django_db_blocker._real_ensure_connection]


#: pgbouncer's database names, each mapped to the suite's test database:
#: ``pooled`` transaction pooling over at most 2 server sessions, ``single``
#: over one, ``by_session`` session pooling.
BOUNCER_DATABASES = {
    "pooled": "pool_size=2 max_db_connections=2",
    "single": "pool_size=1 max_db_connections=1",
    "by_session": "pool_size=12 max_db_connections=12 pool_mode=session",
}

TENANTS = ["t0", "t1", "t2", "t3"]
NOTES_PER_TENANT = 3


@pytest.fixture(scope="session")
def bouncer(request: pytest.FixtureRequest, postgres_server) -> Iterator[PgBouncer]:
    """pgbouncer on a free loopback port, in front of the test database."""
    request.getfixturevalue("django_db_setup")
    from django.db import connection

    test_database = connection.settings_dict["NAME"]
    databases = {
        name: f"dbname={test_database} {options}" for name, options in BOUNCER_DATABASES.items()
    }
    with PgBouncer(postgres_server, databases) as running:
        yield running


@contextmanager
def database_alias(alias: str, entry: dict[str, Any]) -> Iterator[Any]:
    """``DATABASES[alias] = entry`` for the block: the connection of every
    thread that used it is closed by that thread; this one's at the end."""
    from django.conf import settings
    from django.db import connections

    configured = connections.configure_settings(
        {"default": settings.DATABASES["default"], alias: dict(entry)}
    )[alias]
    connections.settings[alias] = configured
    create_connection = connections.create_connection

    def create_allowed_connection(name: str) -> Any:
        made = create_connection(name)
        if name == alias:
            made.ensure_connection = types.MethodType(_ENSURE_CONNECTION[0], made)
        return made

    connections.create_connection = create_allowed_connection
    try:
        yield connections[alias]
    finally:
        try:
            connections[alias].close()
            del connections[alias]
        finally:
            connections.settings.pop(alias, None)
            del connections.create_connection


def make_notes() -> SimpleNamespace:
    """``NOTES_PER_TENANT`` committed notes of each of ``TENANTS``."""
    from tenantry.db import rls_bypass
    from tests.app.models import RlsNote

    with rls_bypass("test set-up: notes of every tenant"):
        RlsNote.all_tenants.bulk_create(
            RlsNote(tenant_id=tenant, title=f"{tenant}-note-{n}")
            for tenant in TENANTS
            for n in range(NOTES_PER_TENANT)
        )
    return SimpleNamespace(tenants=TENANTS, per_tenant=NOTES_PER_TENANT)


@pytest.fixture
def notes(transactional_db) -> SimpleNamespace:
    return make_notes()


@pytest.fixture(scope="session")
def replica(request: pytest.FixtureRequest, postgres_server):
    """A streaming read replica of the session's PostgreSQL (tests/postgres_replica.py),
    made after the test database, which it carries."""
    from tests.postgres_replica import StreamingReplica

    request.getfixturevalue("django_db_setup")
    with StreamingReplica(postgres_server) as running:
        yield running
