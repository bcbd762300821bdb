"""PostgreSQL stopped mid-run with row-level security on (docs/postgresql.md): while
the server is down every request fails with Django's ``OperationalError``
naming the server, promptly and without serving anything; once it is back,
the same running app (its pooled connection dead) serves each tenant its own
rows again, and only its own, with no restart.

The server is the session's cluster (tests/postgres_server.py), stopped under
its clients and started again on the same data and port.
"""

from __future__ import annotations

import json
import sys
import threading

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception
from django.db import OperationalError, connection, connections
from django.http import JsonResponse
from django.test import RequestFactory
from django.urls import path

from tenantry import get_current_tenant, tenant_context
from tenantry.db import rls_bypass
from tests.app.models import RlsNote

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.stops_postgres,  # run last (tests/postgres_fixtures.py)
    pytest.mark.urls("tests.ops.test_postgres_outage"),
]

ACME = ["acme-1", "acme-2"]
GLOBEX = ["globex-secret-1"]
#: How long a request may take while the server is down before it counts as a hang.
HANG = 60.0


def raw_titles_view(request):
    """Raw SQL: only the second wall (the policies) scopes it."""
    tenant = get_current_tenant()
    with connection.cursor() as cursor:
        cursor.execute("SELECT title FROM app_rlsnote ORDER BY title")
        titles = [row[0] for row in cursor.fetchall()]
    return JsonResponse({"tenant": tenant and tenant.id, "titles": titles})


urlpatterns = [path("raw/", raw_titles_view), path("public/raw/", raw_titles_view)]


def wsgi_get(handler: WSGIHandler, host: str, url: str = "/raw/") -> tuple[str, bytes]:
    environ = RequestFactory().get(url, HTTP_HOST=host).environ
    status: list[str] = []
    body = b"".join(handler(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def titles_of(answer: tuple[str, bytes]) -> list[str]:
    status, body = answer
    assert status == "200 OK", (status, body[:500])
    return json.loads(body)["titles"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [True, "transaction"])
def test_requests_fail_clearly_while_down_and_recover_without_a_restart(
    settings, postgres_server, mode
):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RLS": mode}
    with rls_bypass("test set-up: rows of two tenants"):
        rows = [("acme", "acme-1"), ("acme", "acme-2"), ("globex", "globex-secret-1")]
        for tenant, title in rows:
            RlsNote.all_tenants.create(tenant_id=tenant, title=title)
    connection.close()
    old_age = connection.settings_dict["CONN_MAX_AGE"]
    # A pooled connection: the one that dies with the server is the one the
    # next request would reuse.
    connection.settings_dict["CONN_MAX_AGE"] = 600
    errors: list[BaseException] = []

    def record(sender, request=None, **kwargs):
        errors.append(sys.exc_info()[1])

    got_request_exception.connect(record)
    handler = WSGIHandler()
    try:
        before = [titles_of(wsgi_get(handler, "acme.example.com"))]

        postgres_server.halt()
        try:
            down: list[tuple[str, bytes]] = []
            worker = threading.Thread(
                target=lambda: down.extend(
                    wsgi_get(handler, host) for host in ("acme.example.com", "globex.example.com")
                )
            )
            worker.start()
            worker.join(HANG)
            assert not worker.is_alive(), "a request hung while PostgreSQL was down"
            # A tenant bound in this thread: the query fails, it does not run unscoped.
            with tenant_context("acme"), pytest.raises(OperationalError):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT title FROM app_rlsnote")
        finally:
            postgres_server.resume()

        after = [
            titles_of(wsgi_get(handler, "acme.example.com")),
            titles_of(wsgi_get(handler, "globex.example.com")),
            titles_of(wsgi_get(handler, "example.com", "/public/raw/")),
            titles_of(wsgi_get(handler, "acme.example.com")),
        ]
    finally:
        got_request_exception.disconnect(record)
        connection.settings_dict["CONN_MAX_AGE"] = old_age
        # This thread's connection died with the server: pytest-django's
        # teardown needs a fresh one.
        connections.close_all()

    assert before == [ACME]
    assert [status for status, _ in down] == ["500 Internal Server Error"] * 2
    assert all(b"acme-" not in body and b"globex-" not in body for _, body in down)
    assert len(errors) == 2
    for error in errors:
        assert isinstance(error, OperationalError), repr(error)
        assert str(postgres_server.port) in str(error), str(error)
    assert after == [ACME, GLOBEX, [], ACME]
