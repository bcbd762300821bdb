"""Suspending a tenant (docs/operations.md#suspending-a-tenant): every path
a suspended tenant's traffic takes is refused (a page: 503 saying so, sync
and async stacks, TenantMixin views; a live mount, the next event of an open
socket, a presence heartbeat: error frames; a job: refused), its data is
untouched, resume lifts it, deactivation stays a 404, and it works with a
``TENANT_MODEL`` and with a ``TENANT_VALIDATOR``. Real Django over HTTP,
real djust over WebSocket, the real management command, the real registry
cache; SQLite or PostgreSQL with RLS."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from celery import shared_task
from django.core.management import CommandError, call_command
from django.test import AsyncClient, Client

from tenantry import TenantSuspended, get_current_tenant, suspension, tenant_context, usage
from tenantry import signals as tenant_signals
from tenantry.access import refusal_counts
from tenantry.celery import HEADER, active_tenant_ids
from tenantry.models import TenantSuspension
from tests.app.models import Item, Tenant
from tests.lifecycle.models import Account
from tests.live_client import TrackedLiveClient as LiveClient
from tests.live_client import disconnect_opened

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_READMIT_INTERVAL": 0.2,
}
#: The frame a socket of a suspended tenant gets.
SUSPENDED = {"type": "error", "error": TenantSuspended.MESSAGE, "refused": "admission"}

#: The ids the TENANT_VALIDATOR of these tests knows.
VALIDATED = {"acme", "globex"}


def validator(tenant_id):
    return tenant_id in VALIDATED


@pytest.fixture(autouse=True)
def configured(settings):
    settings.DJUST_CONFIG = dict(BASE)
    settings.ROOT_URLCONF = "tests.app.urls"


@pytest.fixture
def tenants(db):
    Tenant.objects.create(slug="acme", name="Acme")
    Tenant.objects.create(slug="globex", name="Globex")
    with tenant_context("acme"):
        Item.objects.create(name="acme's row")
    with tenant_context("globex"):
        Item.objects.create(name="globex's row")


def use_validator(settings):
    settings.DJUST_CONFIG = {
        **{k: v for k, v in BASE.items() if k != "TENANT_MODEL"},
        "TENANT_VALIDATOR": f"{__name__}.validator",
    }


@pytest_asyncio.fixture(autouse=True)
async def disconnect_every_tab():
    yield
    await disconnect_opened()


async def closed_with(tab) -> int | None:
    for _ in range(10):
        message = await asyncio.wait_for(tab.socket.output_queue.get(), 5)
        if message["type"] == "websocket.close":
            return message.get("code")
    return None


# -- HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize("registry", ["model", "validator"])
def test_a_suspended_tenants_pages_answer_503_saying_so(settings, tenants, registry):
    if registry == "validator":
        use_validator(settings)
    client = Client()
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
    out = call_command("tenantry", "suspend", "acme", "--reason", "unpaid invoice")
    assert out is None
    for path in ("/public/", "/items/", "/report/", "/no-such-page/"):
        response = client.get(path, HTTP_HOST="acme.example.com")
        assert response.status_code == 503, path
        assert b"suspended" in response.content
        assert b"unpaid invoice" not in response.content  # the reason is the operator's
    # Other tenants are not affected.
    assert client.get("/public/", HTTP_HOST="globex.example.com").status_code == 200
    call_command("tenantry", "resume", "acme")
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200


@pytest.mark.parametrize("resolver", ["subdomain", "header"])
def test_a_suspended_tenants_refused_requests_spend_none_of_its_limits(settings, tenants, resolver):
    """The 503s of a suspended (or moving) tenant are not its traffic: they
    neither count as its ``http_requests`` usage nor spend its ``http``
    rate limit, so resuming it finds its allowance whole
    (docs/operations.md#suspending-a-tenant)."""
    limits = {"http": "2/h"}
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": resolver, "TENANT_RATE_LIMITS": limits}
    host = {"HTTP_HOST": "acme.example.com", "HTTP_X_TENANT_ID": "acme"}
    client = Client()
    suspension.suspend("acme", reason="audit")
    assert [client.get("/public/", **host).status_code for _ in range(4)] == [503] * 4
    assert usage.get_usage("acme")["total"].get("http_requests", 0) == 0
    suspension.resume("acme")
    assert [client.get("/public/", **host).status_code for _ in range(3)] == [200, 200, 429]
    assert usage.get_usage("acme")["total"]["http_requests"] == 3


@pytest.mark.asyncio
async def test_async_stack_answers_503(settings, tenants):
    # Django's AsyncClient always sends Host: testserver; the header names the tenant.
    settings.DJUST_CONFIG = {**BASE, "TENANT_RESOLVER": "header"}
    await sync_to_async(suspension.suspend)("acme", reason="audit")
    client = AsyncClient()
    response = await client.get("/public/", headers={"x-tenant-id": "acme"})
    assert response.status_code == 503 and b"suspended" in response.content
    assert (await client.get("/public/", headers={"x-tenant-id": "globex"})).status_code == 200


def test_deactivation_stays_a_404(settings, tenants):
    settings.DJUST_CONFIG = {**BASE, "TENANT_MODEL": "lifecycle.Account"}
    Account.objects.create(slug="initech", name="Initech")
    call_command("tenantry", "deactivate", "initech")
    assert Client().get("/public/", HTTP_HOST="initech.example.com").status_code == 404
    with pytest.raises(CommandError, match="does not know"):
        call_command("tenantry", "suspend", "initech")


def test_only_members_learn_that_a_tenant_is_suspended(settings, tenants, django_user_model):
    """With a membership check, a stranger choosing the suspended tenant by
    a header gets the one 404 of every refusal: suspension is not a way to
    learn which tenants exist."""
    settings.DJUST_CONFIG = {
        **BASE,
        "TENANT_RESOLVER": "header",
        "TENANT_MEMBERSHIP_CHECK": "tests.operations_life.views.member",
    }
    suspension.suspend("acme")
    response = Client().get("/public/", HTTP_X_TENANT_ID="acme")
    assert response.status_code == 404


@shared_task(name="tests.operations_life.whoami")
def whoami() -> str | None:
    tenant = get_current_tenant()
    return None if tenant is None else tenant.id


def test_the_data_is_untouched_and_jobs_are_refused(settings, tenants):
    suspension.suspend("acme", reason="chargeback")
    with tenant_context("acme"):  # operator code still reaches the data
        assert [i.name for i in Item.objects.all()] == ["acme's row"]
    refused = whoami.apply(headers={HEADER: "acme"})
    assert isinstance(refused.result, TenantSuspended)
    assert "suspended" in str(refused.result) and "did not run" in str(refused.result)
    with tenant_context("acme"):  # bound, then published eagerly: the same refusal
        assert isinstance(whoami.apply().result, TenantSuspended)
    assert whoami.apply(headers={HEADER: "globex"}).get() == "globex"
    suspension.resume("acme")
    assert whoami.apply(headers={HEADER: "acme"}).get() == "acme"


def test_a_job_of_a_tenant_being_moved_is_refused_saying_so(settings, tenants):
    """A move's hold (docs/operations.md#moving-a-tenant) refuses jobs like
    a suspension, but the refusal says the tenant is being moved (retry in
    seconds), not that it is suspended (an operator would look for a
    suspension to lift)."""
    suspension.hold_for_move("acme", "default")
    try:
        refused = whoami.apply(headers={HEADER: "acme"})
        assert isinstance(refused.result, TenantSuspended) and refused.result.moving
        assert "being moved" in str(refused.result) and "did not run" in str(refused.result)
        assert "suspended" not in str(refused.result)
    finally:
        suspension.release_move("acme")
    assert whoami.apply(headers={HEADER: "acme"}).get() == "acme"


def test_fan_out_skips_suspended_tenants(settings, tenants):
    suspension.suspend("globex")
    assert list(active_tenant_ids()) == ["acme"]


def test_the_registry_cache_carries_the_suspension(settings, tenants, django_assert_num_queries):
    """A request of a cached tenant makes no query for its suspension: it
    rides on the registry's lookup (one per TENANT_CACHE_TTL)."""
    client = Client()
    client.get("/public/", HTTP_HOST="acme.example.com")
    with django_assert_num_queries(0):
        assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
    suspension.suspend("acme")
    with django_assert_num_queries(2):  # the registry row and its suspension, once
        assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 503
    with django_assert_num_queries(0):
        assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 503


def test_other_processes_see_it_when_the_cache_expires(settings, tenants):
    """A suspension written by another process (here: the row itself, as
    the command in another process writes it) is seen when this process's
    cached lookup expires."""
    settings.DJUST_CONFIG = {**BASE, "TENANT_CACHE_TTL": 3600}
    client = Client()
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
    TenantSuspension.objects.create(suspended_tenant="acme")  # no signal to this cache
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
    settings.DJUST_CONFIG = {**BASE, "TENANT_CACHE_TTL": 0}  # the TTL ran out
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 503


def test_commands_and_signals(settings, tenants, capsys):
    sent = []

    def receiver(signal, sender, tenant_id, **kwargs):
        sent.append((signal, tenant_id, kwargs.get("reason")))

    for signal in (tenant_signals.tenant_suspended, tenant_signals.tenant_resumed):
        signal.connect(receiver)
    try:
        call_command("tenantry", "suspend", "acme", "--reason", "fraud review")
        call_command("tenantry", "suspend", "acme", "--reason", "again")  # no second signal
        assert TenantSuspension.objects.get().reason == "fraud review"
        call_command("tenantry", "resume", "acme")
        with pytest.raises(CommandError, match="not suspended"):
            call_command("tenantry", "resume", "acme")
    finally:
        for signal in (tenant_signals.tenant_suspended, tenant_signals.tenant_resumed):
            signal.disconnect(receiver)
    assert sent == [
        (tenant_signals.tenant_suspended, "acme", "fraud review"),
        (tenant_signals.tenant_resumed, "acme", None),
    ]
    out = capsys.readouterr().out
    assert "suspended tenant 'acme'" in out and "suspended already" in out
    with pytest.raises(CommandError, match="invalid tenant id"):
        call_command("tenantry", "suspend", "acme:evil")
    with pytest.raises(CommandError, match="does not know"):
        call_command("tenantry", "suspend", "ghost")


def test_suspension_needs_a_registry(settings, tenants):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
    with pytest.raises(CommandError, match="TENANT_MODEL"):
        call_command("tenantry", "suspend", "acme")


def test_a_new_tenant_with_the_id_starts_unsuspended(settings, tenants):
    suspension.suspend("acme")
    call_command("tenantry", "delete", "acme")
    assert not TenantSuspension.objects.exists()
    TenantSuspension.objects.create(suspended_tenant="acme")  # left by a raw deletion, say
    Tenant.objects.create(slug="acme", name="Acme again")
    assert not suspension.is_suspended("acme")
    assert Client().get("/public/", HTTP_HOST="acme.example.com").status_code == 200


def test_refusals_are_counted(settings, tenants):
    suspension.suspend("acme")
    before = refusal_counts()["admission"]
    Client().get("/public/", HTTP_HOST="acme.example.com")
    assert refusal_counts()["admission"] == before + 1


# -- the live plane ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("registry", ["model", "validator"])
async def test_open_sockets_stop_and_mounts_are_refused(settings, tenants, registry):
    if registry == "validator":
        use_validator(settings)
    acme, globex = LiveClient("acme.example.com"), LiveClient("globex.example.com")
    assert (await acme.mount())["type"] == "mount"
    assert (await globex.mount())["type"] == "mount"
    await sync_to_async(suspension.suspend)("acme", reason="unpaid")
    assert await acme.event("peek") == SUSPENDED
    assert await closed_with(acme) == 4403
    assert (await globex.event("peek"))["type"] != "error"
    again = LiveClient("acme.example.com")
    frame = await again.mount()
    assert frame["type"] == "error"
    await sync_to_async(suspension.resume)("acme")
    fresh = LiveClient("acme.example.com")
    assert (await fresh.mount())["type"] == "mount"


@pytest.mark.asyncio
async def test_a_socket_stops_within_the_readmit_interval_without_this_process_told(
    settings, tenants
):
    """Another process suspended the tenant (the row written behind this
    process's back, no cache drop here): with the cache expired, the open
    socket stops at its next event once TENANT_READMIT_INTERVAL passed."""
    settings.DJUST_CONFIG = {**BASE, "TENANT_CACHE_TTL": 0}
    tab = LiveClient("acme.example.com")
    assert (await tab.mount())["type"] == "mount"
    await sync_to_async(TenantSuspension.objects.create)(suspended_tenant="acme")
    await asyncio.sleep(0.3)
    assert await tab.event("peek") == SUSPENDED


@pytest.mark.asyncio
async def test_presence_heartbeats_stop(settings, tenants):
    tab = LiveClient("acme.example.com")
    assert (await tab.mount("tests.app.views.LiveRoomView", "/items/"))["type"] == "mount"
    await sync_to_async(suspension.suspend)("acme")
    await tab.socket.send_json_to({"type": "ping"})
    assert await tab.until("error") == SUSPENDED


@pytest.mark.asyncio
async def test_writes_through_an_open_socket_stop(settings, tenants):
    tab = LiveClient("acme.example.com")
    assert (await tab.mount())["type"] == "mount"
    assert (await tab.event("add_item", name="before"))["type"] != "error"
    await sync_to_async(suspension.suspend)("acme")
    assert await tab.event("add_item", name="after") == SUSPENDED
    names = await sync_to_async(lambda: sorted(Item.all_tenants.values_list("name", flat=True)))()
    assert "after" not in names and "before" in names


def test_one_read_of_the_suspension_table_for_many_tenants(
    settings, tenants, django_assert_num_queries
):
    """Each registry miss reads the suspension from this process's copy of
    the table: one query for every tenant, not one per tenant."""
    settings.DJUST_CONFIG = {**BASE, "TENANT_READMIT_INTERVAL": 60}
    client = Client()
    with django_assert_num_queries(3):  # acme's row, globex's row, the suspension table once
        assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
        assert client.get("/public/", HTTP_HOST="globex.example.com").status_code == 200


@pytest.mark.asyncio
async def test_no_query_on_the_event_loop_and_no_cached_guess(settings, tenants):
    """tenant_context() in async code with a validator that needs no
    database makes no query on the event loop (SynchronousOnlyOperation
    otherwise), and its answer is not cached: a page still sees the
    suspension."""
    use_validator(settings)
    await sync_to_async(suspension.suspend)("acme")
    with tenant_context("acme") as bound:
        assert bound.id == "acme"
    response = await sync_to_async(Client().get)("/public/", HTTP_HOST="acme.example.com")
    assert response.status_code == 503
