"""``tenant_context`` as a decorator and ``run_in_tenant`` bind the tenant
around the *body* of what they are given, whenever it runs
(docs/jobs.md#binding-helpers-and-bodies-that-run-later): a plain function,
every resumption of a generator and an async generator (with the consumer's
own tenant in between), a coroutine wherever it is awaited, and a coroutine
or generator a plain function returns. Real Django, scoped rows on the test
database."""

from __future__ import annotations

import asyncio
import functools
import threading

import pytest
from asgiref.sync import sync_to_async

from tenantry import (
    TenantNotFound,
    get_current_tenant,
    run_in_tenant,
    tenant_context,
)
from tests.app.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def rows(settings):
    settings.DJUST_CONFIG = {"TENANT_VALIDATOR": f"{__name__}.known"}
    Item.all_tenants.create(tenant_id="acme", name="acme-row")
    Item.all_tenants.create(tenant_id="globex", name="globex-secret")


def known(tenant_id) -> bool:
    return tenant_id in ("acme", "globex")


def bound() -> str | None:
    tenant = get_current_tenant()
    return None if tenant is None else tenant.id


def names() -> list[str]:
    return sorted(item.name for item in Item.objects.all())


async def anames() -> list[str]:
    return await sync_to_async(names)()


# --- the decorator ----------------------------------------------------------------


@tenant_context("acme")
def acme_export():
    """acme's export, streamed row by row (a generator function)."""
    for name in names():
        yield (bound(), name)


def test_a_decorated_generator_reads_its_own_tenant_where_it_is_consumed():
    with tenant_context("globex"):
        rows = list(acme_export())
        assert bound() == "globex"
    assert rows == [("acme", "acme-row")]


@tenant_context("acme")
def acme_steps():
    received = yield ("start", bound())
    try:
        yield ("sent", bound(), received, names())
        yield ("after", bound())
    except KeyError:
        yield ("thrown", bound())
    finally:
        CLOSED.append((bound(), names()))


CLOSED: list = []


def test_every_resumption_of_a_decorated_generator_is_bound():
    CLOSED.clear()
    with tenant_context("globex"):
        steps = acme_steps()
        assert next(steps) == ("start", "acme")
        assert bound() == "globex"  # the consumer's tenant between resumptions
        assert steps.send("value") == ("sent", "acme", "value", ["acme-row"])
        assert names() == ["globex-secret"]
        assert steps.throw(KeyError("k")) == ("thrown", "acme")
        steps.close()
        assert bound() == "globex"
    assert CLOSED == [("acme", ["acme-row"])]  # its finally ran as acme


@tenant_context("acme")
async def acme_summary():
    await asyncio.sleep(0)
    return bound(), await anames()


def test_a_decorated_coroutine_runs_as_its_tenant_wherever_it_is_awaited():
    async def globex_request():
        with tenant_context("globex"):
            summary = await acme_summary()
            return summary, bound()

    assert asyncio.run(globex_request()) == (("acme", ["acme-row"]), "globex")


@tenant_context("acme")
async def acme_stream():
    yield bound(), await anames()
    await asyncio.sleep(0)
    received = yield bound()
    yield received, bound()


def test_every_resumption_of_a_decorated_async_generator_is_bound():
    async def globex_consumer():
        seen = []
        with tenant_context("globex"):
            stream = acme_stream()
            seen.append(await stream.__anext__())
            seen.append(bound())
            seen.append(await stream.asend(None))
            seen.append(await stream.asend("value"))
            await stream.aclose()
            seen.append(bound())
        return seen

    assert asyncio.run(globex_consumer()) == [
        ("acme", ["acme-row"]),
        "globex",
        "acme",
        ("value", "acme"),
        "globex",
    ]


def test_an_async_for_over_a_decorated_async_generator():
    async def consume():
        with tenant_context("globex"):
            return [item async for item in acme_stream()], bound()

    assert asyncio.run(consume()) == ([("acme", ["acme-row"]), "acme", (None, "acme")], "globex")


@tenant_context("acme")
def acme_later():
    """A plain function that returns a body to run later."""
    return acme_body()


async def acme_body():
    return bound(), await anames()


def test_a_body_a_decorated_function_returns_keeps_its_tenant():
    async def globex_request():
        with tenant_context("globex"):
            return await acme_later()

    assert asyncio.run(globex_request()) == ("acme", ["acme-row"])


@tenant_context("acme")
def acme_download(request):
    """A view: its streamed body runs after it returned."""
    from django.http import StreamingHttpResponse

    return StreamingHttpResponse(f"{bound()}:{name};" for name in names())


def test_a_decorated_view_streams_its_body_as_its_tenant():
    with tenant_context("globex"):
        response = acme_download(None)
        body = b"".join(response.streaming_content)
        assert bound() == "globex"
    assert body == b"acme:acme-row;"


@tenant_context("acme")
def acme_count():
    return bound(), names()


def test_a_decorated_plain_function():
    with tenant_context("globex"):
        assert acme_count() == ("acme", ["acme-row"])
        assert bound() == "globex"


def test_a_decorated_body_checks_the_registry_when_it_starts():
    @tenant_context("initech")
    def stream():
        yield bound()

    @tenant_context("initech")
    async def job():
        return bound()

    rows = stream()  # made: nothing runs yet
    with pytest.raises(TenantNotFound):
        next(rows)
    with pytest.raises(TenantNotFound):
        asyncio.run(job())


def test_decorated_functions_keep_their_kind_and_name():
    import inspect

    assert inspect.isgeneratorfunction(acme_export)
    assert inspect.iscoroutinefunction(acme_summary)
    assert acme_summary.__name__ == "acme_summary"
    assert acme_export.__doc__.startswith("acme's export")


# --- run_in_tenant -----------------------------------------------------------------


async def current_rows():
    return bound(), await anames()


def current_row_lines():
    for name in names():
        yield bound(), name


async def current_row_stream():
    for name in await anames():
        yield bound(), name


def test_run_in_tenant_with_a_coroutine_function_runs_as_that_tenant():
    """The red team's F7: it returned a coroutine that ran as the caller."""

    async def globex_request():
        with tenant_context("globex"):
            return await run_in_tenant("acme", current_rows), bound()

    assert asyncio.run(globex_request()) == (("acme", ["acme-row"]), "globex")


@pytest.mark.parametrize(
    "fn",
    [current_row_lines, functools.partial(current_row_lines), lambda: current_row_lines()],
    ids=["generator function", "partial", "lambda returning a generator"],
)
def test_run_in_tenant_with_a_generator(fn):
    with tenant_context("globex"):
        assert list(run_in_tenant("acme", fn)) == [("acme", "acme-row")]


@pytest.mark.parametrize(
    "fn",
    [current_row_stream, lambda: current_row_stream()],
    ids=["async generator function", "lambda returning an async generator"],
)
def test_run_in_tenant_with_an_async_generator(fn):
    async def consume():
        with tenant_context("globex"):
            return [row async for row in run_in_tenant("acme", fn)]

    assert asyncio.run(consume()) == [("acme", "acme-row")]


def test_run_in_tenant_with_a_partial_of_a_coroutine_function():
    async def consume():
        with tenant_context("globex"):
            return await run_in_tenant("acme", functools.partial(current_rows))

    assert asyncio.run(consume()) == ("acme", ["acme-row"])


def test_run_in_tenant_in_a_thread_pool():
    from concurrent.futures import ThreadPoolExecutor

    with tenant_context("globex"), ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run_in_tenant, "acme", names) for _ in range(4)]
        assert [f.result() for f in futures] == [["acme-row"]] * 4


def test_run_in_tenant_checks_the_registry_at_the_call():
    async def job():
        return bound()

    with pytest.raises(TenantNotFound):
        run_in_tenant("initech", job)


def test_an_awaitable_that_cannot_be_bound_is_refused():
    class Deferred:
        def __await__(self):
            return iter(())

    with pytest.raises(TypeError, match="awaitable tenantry cannot keep a tenant bound"):
        run_in_tenant("acme", Deferred)


def test_a_task_made_inside_keeps_the_tenant_it_was_made_with():
    async def main():
        with tenant_context("globex"):
            task = run_in_tenant("acme", asyncio.ensure_future, current_rows())
            return await task

    assert asyncio.run(main()) == ("acme", ["acme-row"])


# --- the context manager -------------------------------------------------------------


def test_the_context_manager_binds_the_block_and_restores():
    with tenant_context("acme") as tenant:
        assert tenant.id == "acme" and names() == ["acme-row"]
        with tenant_context("globex"):
            assert names() == ["globex-secret"]
        assert bound() == "acme"
    assert bound() is None


def test_the_context_manager_in_a_coroutine_covers_its_awaits_and_tasks():
    async def main():
        with tenant_context("acme"):
            await asyncio.sleep(0)
            inside = bound(), await anames()
            child = await asyncio.create_task(current_rows())
        return inside, child, bound()

    assert asyncio.run(main()) == (("acme", ["acme-row"]), ("acme", ["acme-row"]), None)


def test_the_context_manager_is_per_thread():
    seen = {}

    def worker(tenant):
        with tenant_context(tenant):
            barrier.wait()
            seen[tenant] = names()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=worker, args=(t,)) for t in ("acme", "globex")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"acme": ["acme-row"], "globex": ["globex-secret"]}


def test_one_context_manager_object_cannot_be_entered_twice_at_once():
    acme = tenant_context("acme")
    with acme:
        with pytest.raises(RuntimeError, match="already entered"), acme:
            pass
        assert bound() == "acme"
    with acme:  # again, after it was left
        assert bound() == "acme"
    assert bound() is None


def test_a_generator_made_inside_the_block_runs_where_it_is_consumed():
    """The documented limit of the context manager (use the decorator or
    run_in_tenant for bodies that run later)."""
    with tenant_context("acme"):
        lines = current_row_lines()
    with tenant_context("globex"):
        assert list(lines) == [("globex", "globex-secret")]
