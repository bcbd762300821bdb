"""The suite on PostgreSQL: ``TENANTRY_TEST_DB=postgres`` (scripts/test.sh's
second pytest run) points tests/settings.py at PostgreSQL; this plugin starts
a throwaway cluster for the session (tests/postgres_server.py), points the
``default`` database at it as the non-superuser application role, and
selects which tests run on which database:

- SQLite run (the default): everything but the ``postgres`` tests;
- PostgreSQL run: the tests that use Django's database (``django_db``) and
  the ``postgres`` tests (row-level security, the soak on PostgreSQL).

A missing PostgreSQL is an error, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer

ON_POSTGRES = os.environ.get("TENANTRY_TEST_DB", "sqlite") == "postgres"


def runs_on_postgres(item: pytest.Item) -> bool:
    return item.get_closest_marker("postgres") is not None or (
        item.get_closest_marker("django_db") is not None
        or bool({"db", "transactional_db"} & set(getattr(item, "fixturenames", ())))
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        keep = [item for item in items if runs_on_postgres(item)]
    else:
        keep = [item for item in items if item.get_closest_marker("postgres") is None]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    # Tests that stop the session's server run last: connections that worker
    # threads (channels, asgiref) hold die with it, and later tests would
    # meet them closed.
    items.sort(key=lambda item: item.get_closest_marker("stops_postgres") is not None)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL cluster (see tests/postgres_server.py)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    request: pytest.FixtureRequest, django_db_modify_db_settings_parallel_suffix: None
) -> None:
    """pytest-django's hook, run before it creates the test database."""
    if not ON_POSTGRES:
        return
    from django.conf import settings

    server = request.getfixturevalue("postgres_server")
    # In place: Django's connections hold this very dict.
    settings.DATABASES["default"].update(server.django_settings())


@pytest.fixture(scope="session", autouse=True)
def _end_stray_test_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Before pytest-django drops the test database: end the sessions that
    worker threads (channels, asgiref) left open on it, or DROP DATABASE
    refuses."""
    if not ON_POSTGRES:
        yield
        return
    request.getfixturevalue("django_db_setup")
    yield
    from django.db import connection

    server = request.getfixturevalue("postgres_server")
    connection.close()
    with server.superuser() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        )
