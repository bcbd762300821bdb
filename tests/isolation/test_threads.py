"""Threads keep their tenant (docs/api.md): ``run_in_tenant`` and
``contextvars.copy_context()`` with a real thread pool, tenants interleaved,
every job reading the database through a scoped manager."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tenantry import (
    TenantNotFound,
    TenantNotSetError,
    get_current_tenant,
    run_in_tenant,
    tenant_context,
)
from tests.app.models import Item, Tenant

pytestmark = pytest.mark.django_db(transaction=True)

TENANTS = [f"t{i:02d}" for i in range(20)]


@pytest.fixture
def rows(settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
    }
    for i, tenant_id in enumerate(TENANTS):
        Tenant.objects.create(slug=tenant_id, name=tenant_id.upper())
        Item.all_tenants.bulk_create(
            Item(tenant_id=tenant_id, name=f"{tenant_id}-{n}") for n in range(i % 4 + 1)
        )
    return {tenant_id: i % 4 + 1 for i, tenant_id in enumerate(TENANTS)}


def seen(label: str) -> tuple:
    """In a pool thread: the bound tenant and the scoped rows' tenants."""
    try:
        bound = get_current_tenant()
        try:
            items = list(Item.objects.all())
        except TenantNotSetError:
            return (label, None if bound is None else bound.id, None, None, threading.get_ident())
        return (
            label,
            None if bound is None else bound.id,
            sorted({item.tenant_id for item in items}),
            len(items),
            threading.get_ident(),
        )
    finally:
        connection.close()  # each pool thread has its own connection


def test_run_in_tenant_keeps_interleaved_tenants_apart(rows):
    with ThreadPoolExecutor(8) as pool:
        futures = [
            (tenant_id, pool.submit(run_in_tenant, tenant_id, seen, f"{tenant_id}-{n}"))
            for n in range(10)
            for tenant_id in TENANTS
        ]
        # A job with no tenant on the same threads afterwards: nothing left bound.
        leftovers = [pool.submit(seen, f"plain-{n}") for n in range(16)]
        outcomes = [(tenant_id, future.result(timeout=60)) for tenant_id, future in futures]
        plain = [future.result(timeout=60) for future in leftovers]
    leaks = [
        (tenant_id, outcome)
        for tenant_id, outcome in outcomes
        if outcome[1:4] != (tenant_id, [tenant_id], rows[tenant_id])
    ]
    assert leaks == []
    assert len({outcome[4] for _, outcome in outcomes}) > 1  # really several threads
    # Nothing stays bound on the pool's threads: no tenant, and the scoped
    # manager refuses to read.
    assert [outcome[1:4] for outcome in plain] == [(None, None, None)] * 16


def test_copy_context_carries_the_callers_tenant(rows):
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for n in range(40):
            tenant_id = TENANTS[n % len(TENANTS)]
            with tenant_context(tenant_id):
                context = contextvars.copy_context()  # one copy per job
            futures.append((tenant_id, pool.submit(context.run, seen, str(n))))
        outcomes = [(tenant_id, future.result(timeout=60)) for tenant_id, future in futures]
    assert [outcome[1:3] for _, outcome in outcomes] == [
        (tenant_id, [tenant_id]) for tenant_id, _ in outcomes
    ]


def test_run_in_tenant_checks_the_registry_and_restores_on_errors(rows):
    with pytest.raises(TenantNotFound):
        run_in_tenant("nobody", seen, "x")

    def fail():
        raise ValueError(get_current_tenant().id)

    with tenant_context("t01"):
        with pytest.raises(ValueError, match="t02"):
            run_in_tenant("t02", fail)
        assert get_current_tenant() == "t01"
        assert run_in_tenant(None, lambda: get_current_tenant()) is None
        assert get_current_tenant() == "t01"
