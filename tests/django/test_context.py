import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

import tenantry
from tenantry import InvalidTenantId, TenantInfo
from tenantry.context import (
    get_current_tenant,
    reset_current_tenant,
    set_current_tenant,
    tenant_context,
)


def test_tenant_context_restores_previous_value_also_on_error():
    assert get_current_tenant() is None
    with tenant_context("a") as a:
        assert a == "a" and get_current_tenant() == "a"
        with pytest.raises(RuntimeError):
            with tenant_context(TenantInfo("b")):
                assert get_current_tenant() == "b"
                raise RuntimeError
        assert get_current_tenant() == "a"
    assert get_current_tenant() is None


def test_set_and_reset_by_token():
    token = set_current_tenant(7)
    assert get_current_tenant() == "7"
    reset_current_tenant(token)
    assert get_current_tenant() is None


def test_ids_are_validated():
    with pytest.raises(InvalidTenantId):
        set_current_tenant("a:b")
    with pytest.raises(InvalidTenantId):
        with tenant_context("x y"):
            pass
    assert get_current_tenant() is None


def test_public_names():
    assert tenantry.get_current_tenant is get_current_tenant
    assert tenantry.tenant_context is tenant_context


def test_djust_sees_the_same_variable():
    from djust.tenants.middleware import get_current_tenant as djust_get
    from djust.tenants.middleware import tenant_context as djust_context

    with tenant_context("acme"):
        assert djust_get() == "acme"
    with djust_context(TenantInfo("globex")):
        assert get_current_tenant() == "globex"


def test_threads_do_not_share_the_tenant():
    seen = {}
    barrier = threading.Barrier(8)

    def work(i):
        with tenant_context(f"t{i}"):
            barrier.wait()
            seen[i] = get_current_tenant().id

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {i: f"t{i}" for i in range(8)}


def test_asyncio_tasks_and_sync_to_async_keep_their_tenant():
    async def task(i):
        with tenant_context(f"t{i}"):
            await asyncio.sleep(0.001 * (i % 3))
            inner = await sync_to_async(lambda: get_current_tenant().id)()
            await asyncio.sleep(0)
            return get_current_tenant().id, inner

    async def main():
        return await asyncio.gather(*(task(i) for i in range(50)))

    results = asyncio.run(main())
    assert results == [(f"t{i}", f"t{i}") for i in range(50)]
