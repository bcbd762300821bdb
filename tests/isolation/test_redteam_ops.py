"""Red-team attacks on the operations features (docs/operations.md), written
from the docs and the public API only: the stored audit trail, export and
import, suspension, impersonation and feature flags. Each test is one
attack (or a family of sibling attacks) and PASSES when the attack is
refused and nothing leaks. Attacks that succeeded are written up in
FINDINGS.md (with their code) and kept out of this file.

Real parts: the suite's Django, SQLite or PostgreSQL (row-level security),
djust over WebSocket (channels' communicator), the real management commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from io import StringIO

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from celery import shared_task
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.http import HttpResponse
from django.test import AsyncClient, Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tenantry import (
    TenantMismatchError,
    TenantSuspended,
    audit,
    audit_trail,
    get_current_tenant,
    impersonation,
    suspension,
    tenant_context,
    transfer,
)
from tenantry.celery import HEADER, active_tenant_ids
from tenantry.exceptions import ArchiveRefused, AuditTrailProtected
from tenantry.models import AuditEvent, AuditHead
from tests.app.models import Document, Folder, Item, Tag, Tenant
from tests.live_client import TrackedLiveClient as LiveClient
from tests.live_client import disconnect_opened
from tests.operations_life import views as life_views

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "app.Tenant",
    "TENANT_AUDIT_STORE": "database",
    "TENANT_READMIT_INTERVAL": 0.2,
}
#: What a write into the trail gets: the trail's own refusal, or the wall's.
REFUSED = (AuditTrailProtected, TenantMismatchError)
SUSPENDED_FRAME = {"type": "error", "error": TenantSuspended.MESSAGE, "refused": "admission"}


@pytest.fixture
def config(settings):
    cfg = dict(BASE)
    cfg.update({k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"})
    settings.DJUST_CONFIG = cfg
    return cfg


@pytest.fixture
def two(config, db):
    return {s: Tenant.objects.create(slug=s, name=s.title()) for s in ("acme", "globex")}


@pytest_asyncio.fixture(autouse=True)
async def _disconnect_tabs():
    yield
    await disconnect_opened()


def chain(slug):
    return audit_trail.select_chain(slug)


def rows(ch):
    with audit_trail._scope(ch):
        return list(audit_trail.events(ch))


def verify(slug, *args):
    out, err = StringIO(), StringIO()
    try:
        call_command("tenantry", "audit", "verify", slug, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return False, out.getvalue() + err.getvalue() + str(exc)
    return True, out.getvalue()


def raw_sql(sql, params=()):
    with audit_trail._scope(audit_trail.Chain(None)), connection.cursor() as cursor:
        cursor.execute(sql, params)


def emit_three(slug):
    with tenant_context(slug):
        for n in range(3):
            audit.emit(f"rt.e{n}", tenant=slug, n=n)
    return rows(chain(slug))


# =============================================================================================
# Audit trail
# =============================================================================================


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route",
    ["qs_update", "base_update", "bulk_update", "qs_delete", "base_delete", "save", "upsert"],
)
def test_audit_a_tenant_cannot_change_another_tenants_rows_through_the_orm(two, route):
    """acme bound, writing globex's trail by every ORM route (docs/operations.md#audit-trail)."""
    (victim,) = emit_three("globex")[:1]
    with tenant_context("acme"):
        with pytest.raises(REFUSED):
            with transaction.atomic():
                if route == "qs_update":
                    AuditEvent.objects.filter(pk=victim.pk).update(event="rt.forged")
                elif route == "base_update":
                    AuditEvent._base_manager.filter(pk=victim.pk).update(event="rt.forged")
                elif route == "bulk_update":
                    victim.event = "rt.forged"
                    AuditEvent._base_manager.bulk_update([victim], ["event"])
                elif route == "qs_delete":
                    AuditEvent.objects.filter(pk=victim.pk).delete()
                elif route == "base_delete":
                    AuditEvent._base_manager.filter(pk=victim.pk).delete()
                elif route == "save":
                    victim.event = "rt.forged"
                    victim.save(update_fields=["event"])
                else:
                    victim.event = "rt.forged"
                    AuditEvent.objects.bulk_create(
                        [victim],
                        update_conflicts=True,
                        update_fields=["event"],
                        unique_fields=["chain", "seq"],
                    )
    assert [r.event for r in rows(chain("globex"))] == ["rt.e0", "rt.e1", "rt.e2"]
    assert verify("globex")[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_audit_async_orm_writes_are_refused(two):
    victims = await sync_to_async(emit_three)("globex")
    victim = victims[0]

    async def attack():
        with pytest.raises(REFUSED):
            await AuditEvent.objects.filter(pk=victim.pk).aupdate(event="rt.forged")
        with pytest.raises(REFUSED):
            await AuditEvent.objects.filter(pk=victim.pk).adelete()
        victim.event = "rt.forged"
        with pytest.raises(REFUSED):
            await victim.asave()
        with pytest.raises(REFUSED):
            await victim.adelete()
        with pytest.raises(REFUSED):
            await AuditEvent.objects.abulk_update([victim], ["event"])

    await attack()
    events = await sync_to_async(lambda: [r.event for r in rows(chain("globex"))])()
    assert events == ["rt.e0", "rt.e1", "rt.e2"]


@pytest.mark.django_db
def test_audit_update_or_create_and_get_or_create_cannot_rewrite_a_row(two):
    victim = emit_three("globex")[1]
    with tenant_context("acme"):
        with pytest.raises(REFUSED), transaction.atomic():
            AuditEvent.objects.update_or_create(pk=victim.pk, defaults={"event": "rt.forged"})
    assert rows(chain("globex"))[1].event == "rt.e1"
    assert verify("globex")[0]


@pytest.mark.django_db
def test_audit_the_head_cannot_be_moved_through_the_orm(two):
    """The head is part of what verify trusts: rewinding it (to hide rows at
    the end) through the ORM must be refused or caught."""
    emit_three("globex")
    key = chain("globex").key
    with tenant_context("acme"):
        try:
            with transaction.atomic():
                AuditHead.objects.filter(chain=key).update(seq=1)
        except Exception:
            pass
        try:
            with transaction.atomic():
                AuditHead.objects.filter(chain=key).delete()
        except Exception:
            pass
    ok, _ = verify("globex")
    with audit_trail._scope(chain("globex")):
        head = AuditHead.objects.filter(chain=key).first()
    # Either the write was refused (head intact, verify OK) or verify caught it.
    assert (head is not None and head.seq == 3 and ok) or not ok


@pytest.mark.django_db
def test_audit_removing_the_head_row_is_found(two):
    emit_three("acme")
    raw_sql("DELETE FROM tenantry_audithead WHERE chain = %s", [chain("acme").key])
    ok, out = verify("acme")
    assert not ok, out


@pytest.mark.django_db
def test_audit_moving_a_row_into_another_chain_is_found(two):
    """An SQL edit moving globex's row into acme's chain: both verifies fail."""
    emit_three("acme")
    moved = emit_three("globex")[1]
    raw_sql(
        "UPDATE tenantry_auditevent SET chain = %s, tenant_id = %s, seq = 99 WHERE id = %s",
        [chain("acme").key, "acme", moved.pk],
    )
    assert not verify("acme")[0]
    assert not verify("globex")[0]


@pytest.mark.django_db
def test_audit_swapping_two_rows_is_found(two):
    _, second, third = emit_three("acme")
    raw_sql("UPDATE tenantry_auditevent SET seq = 1000 WHERE id = %s", [second.pk])
    raw_sql("UPDATE tenantry_auditevent SET seq = 2 WHERE id = %s", [third.pk])
    raw_sql("UPDATE tenantry_auditevent SET seq = 3 WHERE id = %s", [second.pk])
    assert not verify("acme")[0]


@pytest.mark.django_db
def test_audit_changing_the_time_of_a_row_is_found(two):
    from datetime import timedelta

    second = emit_three("acme")[1]
    raw_sql(
        "UPDATE tenantry_auditevent SET created_at = %s WHERE id = %s",
        [second.created_at + timedelta(microseconds=1), second.pk],
    )
    assert not verify("acme")[0]


@pytest.mark.django_db
def test_audit_changing_data_to_an_equal_looking_value_is_found(two):
    """``{"n": 1}`` -> ``{"n": "1"}`` (a type change) in a row's data."""
    second = emit_three("acme")[1]
    raw_sql(
        "UPDATE tenantry_auditevent SET data = %s WHERE id = %s",
        [json.dumps({"n": "1", "tenant_id": "acme"}), second.pk],
    )
    assert not verify("acme")[0]


@pytest.mark.django_db
def test_audit_admin_never_shows_another_tenants_or_incarnations_rows(two):
    """acme staff with view permission: changelist lookups, search, history,
    the head's admin, rows of acme's deleted incarnation."""
    with tenant_context("globex"):
        audit.emit("rt.globex_secret", tenant="globex")
    with tenant_context("acme"):
        audit.emit("rt.acme_old", tenant="acme")
    old = chain("acme")
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    Tenant.objects.create(slug="acme", name="Acme again")
    with tenant_context("acme"):
        audit.emit("rt.acme_new", tenant="acme")
    staff = User.objects.create_user("auditor", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client = Client(HTTP_HOST="acme.example.com")
    client.force_login(staff)
    base = "/admin/tenantry/auditevent/"
    globex_row = rows(chain("globex"))[0]
    old_row = rows(old)[0]
    for query in (
        "",
        "?tenant_id=globex",
        "?chain=" + chain("globex").key,
        "?incarnation=" + old.incarnation,
        "?q=globex",
        "?tenant_id__in=acme,globex",
        "?event__startswith=rt.",
        "?o=1",
        "?all=",
    ):
        body = client.get(base + query).content.decode()
        assert "rt.globex_secret" not in body, query
        assert "rt.acme_old" not in body, query
    for pk in (globex_row.pk, old_row.pk):
        for suffix in ("change/", "history/", ""):
            response = client.get(f"{base}{pk}/{suffix}")
            body = response.content.decode()
            assert "rt.globex_secret" not in body and "rt.acme_old" not in body, (pk, suffix)
    head = client.get("/admin/tenantry/audithead/")
    assert head.status_code in (302, 403, 404)


@pytest.mark.django_db
def test_audit_admin_on_another_tenants_host_is_refused_to_a_stranger(two, settings):
    """A staff member of acme (by the membership check) reading globex's
    admin: nothing of globex."""
    with tenant_context("globex"):
        audit.emit("rt.globex_secret", tenant="globex")
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "TENANT_MEMBERSHIP_CHECK": "tests.isolation.test_redteam_ops.only_prefixed",
    }
    staff = User.objects.create_user("acme-auditor", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client = Client(HTTP_HOST="globex.example.com")
    client.force_login(staff)
    response = client.get("/admin/tenantry/auditevent/")
    assert b"rt.globex_secret" not in response.content
    # and the admin site's index (no tenant in the host) lists no row either
    main = Client(HTTP_HOST="example.com")
    main.force_login(staff)
    assert b"rt.globex_secret" not in main.get("/admin/tenantry/auditevent/").content


def only_prefixed(user, tenant) -> bool:
    return user.get_username().startswith(f"{tenant.id}-")


@pytest.mark.django_db
def test_audit_a_recreated_tenant_starts_a_new_chain_in_every_reader(two):
    emit_three("acme")
    old = chain("acme")
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    Tenant.objects.create(slug="acme", name="again")
    new = chain("acme")
    assert new.key != old.key
    with tenant_context("acme"):
        audit.emit("rt.new", tenant="acme")
    out = StringIO()
    call_command("tenantry", "audit", "export", "acme", stdout=out)
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["rt.new"]
    ok, text = verify("acme")
    assert ok and "1 rows" in text
    assert [r.event for r in rows(new)] == ["rt.new"]


@pytest.mark.django_db
def test_audit_an_event_of_a_stale_tenant_object_does_not_land_in_the_new_chain(two):
    """A request that bound acme before its deletion emits after acme was
    created again: its event is about the old incarnation."""
    with tenant_context("acme") as stale:
        audit.emit("rt.before", tenant=stale)
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    Tenant.objects.create(slug="acme", name="again")
    audit.emit("rt.straggler", tenant=stale)
    assert "rt.straggler" not in [r.event for r in rows(chain("acme"))]


@pytest.mark.django_db
def test_audit_export_and_verify_of_an_unknown_or_hostile_id(two):
    for bad in ("../acme", "acme:evil", "ACME", "nobody"):
        out = StringIO()
        try:
            call_command("tenantry", "audit", "export", bad, stdout=out, stderr=StringIO())
        except (CommandError, Exception):
            continue
        assert out.getvalue().strip() == "", bad


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_audit_concurrent_writers_without_a_transaction_do_not_fork(config):
    """Autocommit writers of two tenants interleaved: each chain unbroken."""
    for slug in ("acme", "globex"):
        Tenant.objects.create(slug=slug, name=slug)
    errors = []

    def writer(slug, n):
        try:
            with tenant_context(slug):
                for i in range(6):
                    audit.emit("rt.concurrent", tenant=slug, writer=n, i=i)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=writer, args=(slug, n))
        for n in range(3)
        for slug in ("acme", "globex")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    audit.flush()
    for slug in ("acme", "globex"):
        found = [r for r in rows(chain(slug)) if r.event == "rt.concurrent"]
        assert len(found) == 18
        assert all(r.tenant_id == slug for r in found)
        assert verify(slug)[0]


# =============================================================================================
# Impersonation
# =============================================================================================

IMP_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenantry.impersonation.ImpersonationMiddleware",
    "tenantry.middleware.TenantMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
AUDITED: list[dict] = []


def audited(record):
    AUDITED.append(record)


def _writes():
    return [(r["model"], r["action"]) for r in AUDITED if r["event"] == "impersonation.write"]


@csrf_exempt
def many_writes(request):
    """Every ORM write route a member's request could take."""
    kind = request.POST["kind"]
    if kind == "bulk_create":
        Item.objects.bulk_create([Item(name="b1"), Item(name="b2")])
    elif kind == "qs_update":
        Item.objects.create(name="u")
        AUDITED.clear()
        Item.objects.all().update(name="u2")
    elif kind == "bulk_update":
        row = Item.objects.create(name="bu")
        AUDITED.clear()
        row.name = "bu2"
        Item.objects.bulk_update([row], ["name"])
    elif kind == "get_or_create":
        Item.objects.get_or_create(name="goc")
    elif kind == "update_or_create":
        Item.objects.create(name="uoc")
        AUDITED.clear()
        Item.objects.update_or_create(name="uoc", defaults={"name": "uoc2"})
    elif kind == "plain_manager":
        Item.all_tenants.create(name="plain", tenant_id="acme")
    elif kind == "m2m":
        doc = Document.objects.create(title="d")
        tag = Tag.objects.create(name="t")
        AUDITED.clear()
        doc.tags.add(tag)
    elif kind == "qs_delete":
        Item.objects.create(name="del")
        AUDITED.clear()
        Item.objects.all().delete()
    elif kind == "user_write":
        # the member changes their own account (a user row): still a write
        request.user.first_name = "changed"
        request.user.save(update_fields=["first_name"])
    return HttpResponse("ok")


@csrf_exempt
async def async_write(request):
    await Item.objects.acreate(name="async")
    await Item.objects.filter(name="async").aupdate(name="async2")
    return HttpResponse("ok")


@csrf_exempt
def start_raw(request):
    """impersonation.start with the minutes given as they come (no float())."""
    user = User.objects.filter(username=request.POST["as"]).first()
    raw = request.POST.get("minutes", "15")
    try:
        minutes = json.loads(raw)
    except ValueError:
        minutes = raw
    try:
        impersonation.start(request, user, reason=request.POST.get("reason", "r"), minutes=minutes)
    except (PermissionDenied, ValueError, TypeError) as exc:
        return HttpResponse(f"refused {exc}", status=403)
    return HttpResponse("acting")


urlpatterns = [
    *life_views.urlpatterns,
    path("many-writes/", many_writes),
    path("async-write/", async_write),
    path("start-raw/", start_raw),
    path("admin-like/", lambda r: HttpResponse("x")),
]


@pytest.fixture
def imp(settings, django_user_model, db):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
        "TENANT_MEMBERSHIP_CHECK": "tests.operations_life.views.member",
        "TENANT_AUDIT_CALLBACK": f"{__name__}.audited",
    }
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = IMP_MIDDLEWARE
    allowed = settings.LIVEVIEW_ALLOWED_MODULES
    settings.LIVEVIEW_ALLOWED_MODULES = [*allowed, "tests.operations_life"]
    AUDITED.clear()
    life_views.MEMBERS.clear()
    Tenant.objects.create(slug="acme", name="Acme")
    Tenant.objects.create(slug="globex", name="Globex")
    staff = django_user_model.objects.create_user("support", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="impersonate"))
    people = {"staff": staff}
    for name in ("alice", "bob", "carol", "dave"):
        people[name] = django_user_model.objects.create_user(name)
    people["root"] = django_user_model.objects.create_superuser("root")
    life_views.MEMBERS.update(
        {
            ("support", "acme"),
            ("alice", "acme"),
            ("alice", "globex"),  # alice belongs to both tenants
            ("bob", "globex"),
            ("carol", "acme"),
            ("dave", "acme"),
            ("root", "acme"),
        }
    )
    yield people
    life_views.MEMBERS.clear()


def signed_in(user, host="acme.example.com"):
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client


def start(client, who="alice", minutes="15", reason="ticket 1"):
    return client.post("/impersonate/", {"as": who, "reason": reason, "minutes": minutes})


def whoami(client, host="acme.example.com"):
    response = client.get("/page/", HTTP_HOST=host)
    return response.status_code, response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_imp_a_holder_of_the_permission_through_a_group_cannot_be_impersonated(imp):
    group = Group.objects.create(name="support-team")
    group.permissions.add(Permission.objects.get(codename="impersonate"))
    imp["carol"].groups.add(group)
    client = signed_in(imp["staff"])
    assert start(client, who="carol").status_code == 403


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "minutes", ["Infinity", "1e309", "240.0000001", "-0.0", "null", '"15"', "true"]
)
def test_imp_the_time_bound_cannot_be_escaped(imp, minutes, monkeypatch):
    client = signed_in(imp["staff"])
    response = client.post("/start-raw/", {"as": "alice", "minutes": minutes, "reason": "r"})
    if response.status_code == 200:
        # whatever was accepted must be a bound of at most MAX_MINUTES
        later = time.time() + impersonation.MAX_MINUTES * 60 + 5
        monkeypatch.setattr(impersonation.time, "time", lambda: later)
        assert "<p id='user'>support</p>" in whoami(client)[1], minutes


@pytest.mark.django_db(transaction=True)
def test_imp_an_inactive_user_cannot_be_impersonated(imp):
    imp["carol"].is_active = False
    imp["carol"].save()
    client = signed_in(imp["staff"])
    assert start(client, who="carol").status_code == 403
    assert "<p id='user'>support</p>" in whoami(client)[1]


@pytest.mark.django_db(transaction=True)
def test_imp_the_impersonated_member_cannot_start_or_nest(imp):
    """While acting, start() is refused whoever the target (no nesting),
    and after stop the member's session is gone."""
    client = signed_in(imp["staff"])
    assert start(client).status_code == 200
    assert start(client, who="carol").status_code == 403
    assert start(client, who="support").status_code == 403
    assert client.post("/impersonate/stop/").content == b"stopped"
    assert "<p id='user'>support</p>" in whoami(client)[1]
    assert client.post("/impersonate/stop/").content == b"nothing to stop"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "kind",
    [
        "bulk_create",
        "qs_update",
        "bulk_update",
        "get_or_create",
        "update_or_create",
        "plain_manager",
        "m2m",
        "qs_delete",
        "user_write",
    ],
)
def test_imp_every_orm_write_route_is_audited(imp, kind):
    client = signed_in(imp["staff"])
    assert start(client).status_code == 200
    AUDITED.clear()
    assert client.post("/many-writes/", {"kind": kind}).status_code == 200
    assert _writes(), f"{kind}: no impersonation.write audited"


@pytest.mark.django_db(transaction=True)
def test_imp_async_view_writes_are_audited(imp):
    client = signed_in(imp["staff"])
    assert start(client).status_code == 200
    AUDITED.clear()
    assert client.post("/async-write/").status_code == 200
    kinds = {action for _, action in _writes()}
    assert {"insert", "update"} <= kinds, _writes()


def _cookie(client):
    return "; ".join(f"{n}={m.value}" for n, m in client.cookies.items())


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_imp_a_socket_opened_while_acting_stays_audited_after_stop_elsewhere(imp):
    """stop() in another tab: the open socket still acts as alice (documented
    until its bound) - but every write of it must still be audited."""
    client = await sync_to_async(signed_in)(imp["staff"])
    assert (await sync_to_async(start)(client)).status_code == 200
    tab = LiveClient("acme.example.com", cookie=_cookie(client))
    assert (await tab.mount())["type"] == "mount"
    await sync_to_async(client.post)("/impersonate/stop/")
    AUDITED.clear()
    frame = await tab.event("add_item", name="after stop")
    if frame.get("type") != "error":
        assert _writes(), "a write after stop over the open socket was not audited"


# =============================================================================================
# Suspension
# =============================================================================================


@shared_task(name="tests.isolation.redteam.whoami")
def task_whoami():
    tenant = get_current_tenant()
    return None if tenant is None else tenant.id


@pytest.fixture
def susp(settings, db):
    settings.DJUST_CONFIG = {k: v for k, v in BASE.items() if k != "TENANT_AUDIT_STORE"}
    settings.ROOT_URLCONF = "tests.app.urls"
    for slug in ("acme", "globex", "acme2"):
        Tenant.objects.create(slug=slug, name=slug)
    with tenant_context("acme"):
        Item.objects.create(name="acme row")
    suspension.suspend("acme", reason="unpaid")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("resolver", ["path", "header", "session"])
def test_susp_every_resolver_answers_503(settings, susp, resolver):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RESOLVER": resolver}
    client = Client()
    if resolver == "path":
        response = client.get("/acme/items/")
    elif resolver == "header":
        response = client.get("/public/", HTTP_X_TENANT_ID="acme")
    else:
        session = client.session
        session["tenant_id"] = "acme"
        session.save()
        client.cookies["sessionid"] = session.session_key
        response = client.get("/public/")
    assert response.status_code == 503, response.status_code
    assert b"acme row" not in response.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "host",
    ["ACME.example.com", "acme.example.com.", "acme.EXAMPLE.com", "acme.example.com:80"],
)
def test_susp_host_spellings_do_not_slip_past(susp, host):
    response = Client().get("/items/", HTTP_HOST=host)
    assert b"acme row" not in response.content, host
    assert response.status_code != 200 or b"acme" not in response.content, host


@pytest.mark.django_db(transaction=True)
def test_susp_admin_and_exempt_paths(susp, settings):
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "TENANT_EXEMPT_PATHS": ["/public/", "/admin/"],
    }
    client = Client()
    for p in ("/admin/", "/admin/login/", "/public/", "/stream/", "/bound/"):
        assert client.get(p, HTTP_HOST="acme.example.com").status_code == 503, p


@pytest.mark.django_db(transaction=True)
def test_susp_does_not_touch_lookalike_tenants(susp):
    client = Client()
    assert client.get("/public/", HTTP_HOST="acme2.example.com").status_code == 200
    assert client.get("/public/", HTTP_HOST="globex.example.com").status_code == 200
    assert suspension.is_suspended("acme2") is False
    assert list(active_tenant_ids()) == ["acme2", "globex"] or set(active_tenant_ids()) == {
        "acme2",
        "globex",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "route", ["apply_header", "apply_async_eager", "signature", "bound_delay_eager", "case"]
)
def test_susp_every_job_route_is_refused(susp, route, settings):
    if route == "apply_header":
        result = task_whoami.apply(headers={HEADER: "acme"})
    elif route == "apply_async_eager":
        task_whoami.app.conf.task_always_eager = True
        try:
            result = task_whoami.apply_async(headers={HEADER: "acme"})
        finally:
            task_whoami.app.conf.task_always_eager = False
    elif route == "signature":
        result = task_whoami.s().apply(headers={HEADER: "acme"})
    elif route == "bound_delay_eager":
        task_whoami.app.conf.task_always_eager = True
        try:
            with tenant_context("acme"):
                result = task_whoami.delay()
        finally:
            task_whoami.app.conf.task_always_eager = False
    else:
        result = task_whoami.apply(headers={HEADER: "ACME"})
    value = result.result
    assert value != "acme", route
    assert value is None or isinstance(value, Exception), (route, value)


@pytest.mark.django_db(transaction=True)
def test_susp_a_job_prepared_before_suspension_is_refused_when_run(settings, db):
    settings.DJUST_CONFIG = {k: v for k, v in BASE.items() if k != "TENANT_AUDIT_STORE"}
    Tenant.objects.create(slug="acme", name="acme")
    with tenant_context("acme"):
        sig = task_whoami.s()
    suspension.suspend("acme")
    with tenant_context("acme"):  # operator context allowed, but the job must not run
        result = sig.apply()
    assert isinstance(result.result, TenantSuspended)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_susp_sockets_by_other_views_and_heartbeats(susp):
    for view, url in (
        ("tests.app.views.SavedStateView", "/saved/"),
        ("tests.app.views.LiveRoomView", "/items/"),
        ("tests.app.views.SwitchView", "/switch/"),
    ):
        tab = LiveClient("acme.example.com")
        frame = await tab.mount(view, url)
        assert frame["type"] == "error", (view, frame)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_susp_switching_an_open_socket_into_a_suspended_tenant(settings, db):
    """A globex socket switching its tenant to acme (SwitchView) after acme's
    suspension: refused, never reads acme's rows."""
    settings.DJUST_CONFIG = {k: v for k, v in BASE.items() if k != "TENANT_AUDIT_STORE"}
    await sync_to_async(Tenant.objects.create)(slug="acme", name="a")
    await sync_to_async(Tenant.objects.create)(slug="globex", name="g")
    await sync_to_async(suspension.suspend)("acme")
    tab = LiveClient("globex.example.com")
    assert (await tab.mount("tests.app.views.SwitchView", "/switch/"))["type"] == "mount"
    frame = await tab.event("switch", tenant="acme")
    assert frame.get("type") == "error" or "acme" not in json.dumps(frame)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_susp_async_stack_path_resolver(susp, settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RESOLVER": "path"}
    response = await AsyncClient().get("/acme/items/")
    assert response.status_code == 503
    assert b"acme row" not in response.content


# =============================================================================================
# Export / import
# =============================================================================================


@pytest.fixture
def media(settings, tmp_path, two):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "tenantry.storage.TenantFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    with tenant_context("acme"):
        Item.objects.create(name="acme item")
        Folder.objects.create(name="acme folder")
        storages["default"].save("logo.png", ContentFile(b"acme logo"))
    with tenant_context("globex"):
        Item.objects.create(name="globex item")
        Folder.objects.create(name="globex folder")
        storages["default"].save("secret.txt", ContentFile(b"globex secret"))
    return tmp_path


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _rehash(archive, rel):
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    target = archive / rel
    lines = (
        len([x for x in target.read_text().splitlines() if x.strip()])
        if rel.startswith("rows/") or rel == "registry.jsonl"
        else None
    )
    entry = manifest["files"].setdefault(rel, {})
    entry.update(sha256=_sha(target), bytes=target.stat().st_size)
    if lines is not None:
        entry["rows"] = lines
        if rel.startswith("rows/"):
            manifest.setdefault("models", {})[rel[5:-6]] = lines
    manifest_file.write_text(json.dumps(manifest))


def _globex_snapshot():
    with tenant_context("globex"):
        return (
            sorted(Item.objects.values_list("pk", "name")),
            sorted(Folder.objects.values_list("pk", "name")),
            storages["default"].open("secret.txt").read(),
        )


@pytest.mark.django_db
def test_xfer_export_holds_nothing_of_another_tenant(media):
    archive = media / "acme-archive"
    transfer.export_tenant("acme", archive)
    for p in archive.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert b"globex" not in data, p


@pytest.mark.django_db
def test_xfer_row_naming_another_tenant_lands_in_the_target(media):
    before = _globex_snapshot()
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    f = archive / "rows" / "app.Item.jsonl"
    row = json.loads(f.read_text().splitlines()[0])
    row["fields"]["tenant_id"] = "globex"
    row["fields"]["name"] = "planted"
    f.write_text(json.dumps(row) + "\n")
    _rehash(archive, "rows/app.Item.jsonl")
    try:
        transfer.import_tenant(archive, as_id="newco")
    except (ArchiveRefused, Exception):
        pass
    assert _globex_snapshot() == before
    assert not Item.all_tenants.filter(tenant_id="globex", name="planted").exists()


@pytest.mark.django_db
def test_xfer_a_row_with_another_tenants_pk_never_overwrites_it(media):
    before = _globex_snapshot()
    globex_item_pk = before[0][0][0]
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    f = archive / "rows" / "app.Item.jsonl"
    row = json.loads(f.read_text().splitlines()[0])
    row["pk"] = globex_item_pk
    row["fields"]["name"] = "overwritten"
    f.write_text(json.dumps(row) + "\n")
    _rehash(archive, "rows/app.Item.jsonl")
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    assert _globex_snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["own_file", "line_model"])
def test_xfer_rows_of_a_model_no_tenant_owns_are_refused(media, how):
    """A user row (a superuser!) smuggled into the archive: as its own
    rows/auth.User.jsonl, or as a line naming auth.user inside app.Item's file."""
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    evil = {
        "model": "auth.user",
        "pk": 4242,
        "fields": {
            "username": "evil-root",
            "password": "!",
            "is_superuser": True,
            "is_staff": True,
            "is_active": True,
            "first_name": "",
            "last_name": "",
            "email": "",
            "date_joined": "2026-01-01T00:00:00Z",
            "groups": [],
            "user_permissions": [],
        },
    }
    if how == "own_file":
        rel = "rows/auth.User.jsonl"
        (archive / rel).write_text(json.dumps(evil) + "\n")
    else:
        rel = "rows/app.Item.jsonl"
        f = archive / rel
        f.write_text(f.read_text() + json.dumps(evil) + "\n")
    _rehash(archive, rel)
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    assert not User.objects.filter(username="evil-root").exists()


@pytest.mark.django_db
def test_xfer_a_forged_registry_row_never_rewrites_another_tenant(media):
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    reg = archive / "registry.jsonl"
    row = json.loads(reg.read_text().splitlines()[0])
    globex = Tenant.objects.get(slug="globex")
    row["pk"] = globex.pk
    row["fields"]["name"] = "Pwned"
    row["fields"]["settings"] = {"flags": {"beta": True}}
    reg.write_text(json.dumps(row) + "\n")
    _rehash(archive, "registry.jsonl")
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    globex.refresh_from_db()
    assert globex.name == "Globex" and globex.settings in ({}, None)
    assert Tenant.objects.filter(slug="globex").count() == 1


@pytest.mark.django_db
def test_xfer_a_forged_registry_row_cannot_rename_the_target(media):
    """registry.jsonl naming slug 'globex' while importing --as newco:
    never a second globex, never the import landing in globex."""
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    reg = archive / "registry.jsonl"
    row = json.loads(reg.read_text().splitlines()[0])
    row["fields"]["slug"] = "globex"
    reg.write_text(json.dumps(row) + "\n")
    _rehash(archive, "registry.jsonl")
    before = _globex_snapshot()
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    assert _globex_snapshot() == before
    assert Tenant.objects.filter(slug="globex").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        "files/0/../../escaped.txt",
        "files/0/../../../escaped.txt",
        "files/0/{abs}/abs-escape.txt",
        "files/../rows/app.Item.jsonl",
        "files/0/./../0/../../escaped.txt",
    ],
)
def test_xfer_file_paths_cannot_escape(media, name):
    name = name.replace("{abs}", str(media))
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    target = os.path.normpath(os.path.join(str(archive), name))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.exists(target):
        with open(target, "wb") as fh:
            fh.write(b"escape payload")
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    with open(target, "rb") as fh:
        payload = fh.read()
    manifest["files"][name] = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    }
    manifest_file.write_text(json.dumps(manifest))
    media_root = media / "media"
    before = {
        p for p in media.rglob("*") if p.is_file() and "a" not in p.relative_to(media).parts[:1]
    }
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    after = {
        p for p in media.rglob("*") if p.is_file() and "a" not in p.relative_to(media).parts[:1]
    }
    new_files = after - before
    assert all(str(p).startswith(str(media_root / "newco")) for p in new_files), new_files


@pytest.mark.django_db
def test_xfer_a_symlink_to_another_tenants_file_is_refused(media):
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    secret = next((media / "media").rglob("secret.txt"))
    link = archive / "files" / "0" / "stolen.txt"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    _rehash(archive, "files/0/stolen.txt")
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    with tenant_context("newco", must_exist=False):
        leaked = storages["default"].exists("stolen.txt")
    assert not leaked, "globex's file was imported into newco through a symlink"


@pytest.mark.django_db
def test_xfer_a_symlinked_rows_file_is_refused(media):
    """rows/app.Item.jsonl a symlink to a file outside the archive."""
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    outside = media / "outside.jsonl"
    rel = "rows/app.Item.jsonl"
    outside.write_bytes((archive / rel).read_bytes())
    (archive / rel).unlink()
    (archive / rel).symlink_to(outside)
    with pytest.raises(ArchiveRefused):
        transfer.import_tenant(archive, as_id="newco")


@pytest.mark.django_db
@pytest.mark.parametrize("holding", ["a_file", "a_plain_column_row", "an_m2m_link_only"])
def test_xfer_import_into_a_tenant_holding_little_is_refused(media, holding):
    """initech holds only a file, or only a row of a model keyed by a plain
    column, or only a tag: the import must refuse, not mix."""
    from tests.lifecycle.models import Seat

    Tenant.objects.create(slug="initech", name="Initech")
    with tenant_context("initech"):
        if holding == "a_file":
            storages["default"].save("mine.txt", ContentFile(b"initech's own"))
        elif holding == "a_plain_column_row":
            Seat.objects.create(org_slug="initech", label="initech seat")
        else:
            Tag.objects.create(name="initech tag")
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    with pytest.raises(ArchiveRefused, match="not empty"):
        transfer.import_tenant(archive, as_id="initech")
    with tenant_context("initech"):
        assert not Item.objects.exists()


@pytest.mark.django_db
def test_xfer_a_self_fk_pointing_at_another_tenants_row_is_refused(media):
    with tenant_context("globex"):
        theirs = Folder.objects.get()
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    f = archive / "rows" / "app.Folder.jsonl"
    row = json.loads(f.read_text().splitlines()[0])
    row["fields"]["parent"] = theirs.pk
    f.write_text(json.dumps(row) + "\n")
    _rehash(archive, "rows/app.Folder.jsonl")
    with pytest.raises(ArchiveRefused):
        transfer.import_tenant(archive, as_id="newco")
    with tenant_context("globex"):
        assert not Folder.all_tenants.filter(parent=theirs).exists()


@pytest.mark.django_db
def test_xfer_a_row_listed_twice_cannot_double_or_clash(media):
    """Duplicate lines with the same pk: the remap must not join them to one
    row of another tenant or crash half way leaving rows."""
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    f = archive / "rows" / "app.Item.jsonl"
    line = f.read_text().splitlines()[0]
    f.write_text(line + "\n" + line + "\n")
    _rehash(archive, "rows/app.Item.jsonl")
    before = _globex_snapshot()
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    assert _globex_snapshot() == before


# =============================================================================================
# Flags
# =============================================================================================


@pytest.fixture
def flagged(settings, db):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "app.Tenant",
        "TENANT_FLAGS": {"beta": False},
    }
    settings.ROOT_URLCONF = "tests.operations_life.views"
    allowed = settings.LIVEVIEW_ALLOWED_MODULES
    settings.LIVEVIEW_ALLOWED_MODULES = [*allowed, "tests.operations_life"]
    Tenant.objects.create(slug="acme", name="Acme", settings={"flags": {"beta": True}})
    Tenant.objects.create(slug="globex", name="Globex")


@pytest.mark.django_db(transaction=True)
def test_flags_mutating_a_tenants_settings_in_memory_does_not_leak(flagged):
    with tenant_context("globex") as globex:
        try:
            globex.settings.setdefault("flags", {})["beta"] = True
        except Exception:
            pass
        try:
            globex.settings["flags"] = {"beta": True}
        except Exception:
            pass
        try:
            globex.flags.beta = True
        except Exception:
            pass
    with tenant_context("globex") as again:
        assert again.flags.beta is False
    assert Client().get("/beta/", HTTP_HOST="globex.example.com").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_flags_mutating_the_config_default_in_memory_does_not_leak(flagged):
    with tenant_context("acme") as acme:
        d = acme.flags.as_dict()
        d["beta"] = True
        d["evil"] = True
    with tenant_context("globex") as globex:
        assert globex.flags.beta is False and globex.flags.evil is False


@pytest.mark.django_db(transaction=True)
def test_flags_a_request_cannot_flip_a_flag(flagged):
    client = Client()
    for kwargs in (
        {"HTTP_X_TENANT_FLAGS": "beta"},
        {"HTTP_X_FEATURE_BETA": "1"},
        {"QUERY_STRING": "beta=1&flags=beta&flags.beta=true"},
    ):
        assert client.get("/beta/", HTTP_HOST="globex.example.com", **kwargs).status_code == 404
    client.cookies["flags"] = "beta"
    assert client.get("/beta/?flags=beta", HTTP_HOST="globex.example.com").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_flags_alternating_tenants_in_one_process_never_mix(flagged):
    client = Client()
    for _ in range(5):
        assert client.get("/beta/", HTTP_HOST="acme.example.com").status_code == 200
        assert client.get("/beta/", HTTP_HOST="globex.example.com").status_code == 404
        assert "beta-off" in client.get("/page/", HTTP_HOST="globex.example.com").content.decode()


@pytest.mark.django_db(transaction=True)
def test_flags_a_tenant_cannot_set_flags_through_its_own_row_name(flagged):
    """A settings value that is not a bool (a string "true", 1) is refused,
    never read as on."""
    Tenant.objects.create(slug="initech", name="I", settings={"flags": {"beta": "true"}})
    with tenant_context("initech") as initech, pytest.raises(TypeError):
        _ = initech.flags.beta
    Tenant.objects.create(slug="hooli", name="H", settings={"flags": {"beta": 1}})
    with tenant_context("hooli") as hooli, pytest.raises(TypeError):
        _ = hooli.flags.beta


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_flags_globex_socket_cannot_call_acmes_flagged_handler(flagged):
    tab = LiveClient("globex.example.com")
    assert (await tab.mount("tests.operations_life.views.FlaggedLiveView", "/page/"))[
        "type"
    ] == "mount"
    frame = await tab.event("beta_action")
    assert frame.get("refused") == "flag"
    count = await sync_to_async(lambda: Item.all_tenants.filter(name="beta action").count())()
    assert count == 0


# =============================================================================================
# More siblings
# =============================================================================================


@pytest.mark.django_db
def test_audit_a_lookalike_id_never_shares_a_chain(two):
    """acme and acme2 (one id a prefix of the other): acme2's events are in
    no reader of acme's trail."""
    Tenant.objects.create(slug="acme2", name="Acme 2")
    emit_three("acme")
    with tenant_context("acme2"):
        audit.emit("rt.acme2_secret", tenant="acme2")
    assert [c.key for c in audit_trail.chains_of("acme")] == [chain("acme").key]
    out = StringIO()
    call_command("tenantry", "audit", "export", "acme", stdout=out)
    assert "rt.acme2_secret" not in out.getvalue()
    ok, text = verify("acme")
    assert (ok and "3 rows" in text) or "4 rows" in text or ok


@pytest.mark.django_db
def test_audit_export_and_verify_with_another_tenants_incarnation(two):
    """`audit export acme --incarnation <globex's>`: never globex's rows."""
    with tenant_context("globex"):
        audit.emit("rt.globex_secret", tenant="globex")
    theirs = chain("globex").incarnation
    out = StringIO()
    try:
        call_command("tenantry", "audit", "export", "acme", "--incarnation", theirs, stdout=out)
    except CommandError:
        pass
    assert "rt.globex_secret" not in out.getvalue()
    _, text = verify("acme", "--incarnation", theirs)
    assert "rt.globex_secret" not in text


@pytest.mark.django_db
def test_audit_admin_actions_and_posts_on_another_tenants_rows(two):
    with tenant_context("globex"):
        audit.emit("rt.globex_event", tenant="globex")
    (globex_row,) = rows(chain("globex"))
    staff = User.objects.create_user("auditor", password="pw", is_staff=True, is_superuser=True)
    client = Client(HTTP_HOST="acme.example.com")
    client.force_login(staff)
    base = "/admin/tenantry/auditevent/"
    client.post(
        base,
        {"action": "delete_selected", "_selected_action": [globex_row.pk], "post": "yes"},
    )
    client.post(f"{base}{globex_row.pk}/change/", {"event": "rt.forged"})
    client.post(f"{base}{globex_row.pk}/delete/", {"post": "yes"})
    client.post(f"{base}add/", {"event": "rt.added", "tenant_id": "globex"})
    assert [(r.pk, r.event) for r in rows(chain("globex"))] == [(globex_row.pk, "rt.globex_event")]
    assert verify("globex")[0]


@pytest.mark.django_db
def test_audit_no_tenant_bound_cannot_rewrite_a_chain(two):
    """Platform code (no tenant bound) updating or deleting acme's rows."""
    victim = emit_three("acme")[0]
    for attempt in (
        lambda: AuditEvent.objects.filter(pk=victim.pk).update(event="rt.forged"),
        lambda: AuditEvent.objects.filter(pk=victim.pk).delete(),
        lambda: AuditEvent.objects.all().delete(),
    ):
        with pytest.raises(REFUSED), transaction.atomic():
            attempt()
    assert verify("acme")[0]


@pytest.mark.django_db(transaction=True)
def test_imp_start_without_a_tenant_is_refused(imp):
    """Starting on the main domain (no tenant bound), as bob of globex."""
    client = Client(HTTP_HOST="example.com")
    client.force_login(imp["staff"])
    assert start(client, who="bob").status_code in (403, 404)
    assert "<p id='user'>bob</p>" not in whoami(client, "globex.example.com")[1]


@pytest.mark.django_db(transaction=True)
def test_imp_start_with_no_real_user_is_refused(imp, rf):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    request = rf.get("/", HTTP_HOST="acme.example.com")
    request.session = SessionStore()
    request.user = imp["staff"]
    with tenant_context("acme"):
        for target in (AnonymousUser(), None):
            with pytest.raises((PermissionDenied, ValueError, TypeError)):
                impersonation.start(request, target, reason="r", minutes=5)
    assert impersonation.current(request) is None


@pytest.mark.django_db(transaction=True)
def test_imp_a_user_without_the_permission_cannot_start_from_a_staff_session(imp):
    """alice (a plain member) calls start for carol: no permission."""
    client = signed_in(imp["alice"])
    assert start(client, who="carol").status_code == 403
    assert "<p id='user'>alice</p>" in whoami(client)[1]


@pytest.mark.django_db(transaction=True)
def test_susp_a_member_gets_503_and_a_stranger_404(settings, susp):
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "TENANT_MEMBERSHIP_CHECK": "tests.operations_life.views.member",
    }
    life_views.MEMBERS.clear()
    member = User.objects.create_user("m")
    life_views.MEMBERS.add(("m", "acme"))
    try:
        stranger = Client(HTTP_HOST="acme.example.com")
        stranger.force_login(User.objects.create_user("s"))
        assert stranger.get("/public/").status_code == 404
        client = Client(HTTP_HOST="acme.example.com")
        client.force_login(member)
        response = client.get("/items/")
        assert response.status_code == 503 and b"acme row" not in response.content
    finally:
        life_views.MEMBERS.clear()


@pytest.mark.django_db(transaction=True)
def test_susp_fan_out_sends_nothing_to_a_suspended_tenant(susp):
    from tenantry.celery import for_each_tenant

    task_whoami.app.conf.task_always_eager = True
    try:
        results = for_each_tenant(task_whoami, jitter=0)
    finally:
        task_whoami.app.conf.task_always_eager = False
    ran = sorted(r.result for r in results if not isinstance(r.result, Exception))
    assert "acme" not in ran and ran == ["acme2", "globex"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad", ["ACME", "acme ", " acme", "acme\n", "acme/x"])
def test_susp_id_spellings_never_suspend_or_resume_another(susp, bad):
    try:
        suspension.resume(bad)
    except Exception:
        pass
    try:
        suspension.suspend(bad)
    except Exception:
        pass
    assert suspension.is_suspended("acme") is True
    assert suspension.is_suspended("globex") is False
    assert Client().get("/public/", HTTP_HOST="globex.example.com").status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_susp_a_globex_socket_keeps_working(susp):
    tab = LiveClient("globex.example.com")
    assert (await tab.mount())["type"] == "mount"
    assert (await tab.event("add_item", name="globex ok"))["type"] != "error"
    other = LiveClient("acme.example.com")
    assert (await other.mount())["type"] == "error"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "smuggled", ["tenantry.AuditEvent", "app.Tenant", "tenantry.TenantSuspension"]
)
def test_xfer_rows_of_tenantrys_own_or_the_registry_model_are_refused(media, smuggled):
    """A rows file for the audit trail (to forge globex's chain), the
    registry (a second tenant) or the suspension table."""
    from django.utils import timezone

    emit_three("globex")
    last = rows(chain("globex"))[-1]
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    now = timezone.now().isoformat()
    fields = {
        "tenantry.AuditEvent": {
            "chain": last.chain,
            "tenant_id": "globex",
            "incarnation": last.incarnation,
            "seq": 4,
            "event": "rt.smuggled",
            "created_at": now,
            "data": {},
            "prev": last.hash,
            "hash": "0" * 64,
        },
        "app.Tenant": {"slug": "smuggled", "name": "Smuggled", "settings": {}},
        "tenantry.TenantSuspension": {"suspended_tenant": "globex", "reason": "x"},
    }[smuggled]
    rel = f"rows/{smuggled}.jsonl"
    line = {"model": smuggled.lower(), "pk": 999, "fields": fields}
    (archive / rel).write_text(json.dumps(line) + "\n")
    _rehash(archive, rel)
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    assert "rt.smuggled" not in [r.event for r in rows(chain("globex"))]
    assert not Tenant.objects.filter(slug="smuggled").exists()
    assert not suspension.is_suspended("globex")


@pytest.mark.django_db
def test_xfer_a_registry_file_with_two_rows_creates_one_tenant(media):
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    reg = archive / "registry.jsonl"
    row = json.loads(reg.read_text().splitlines()[0])
    second = json.loads(json.dumps(row))
    second["pk"] = 98765
    second["fields"]["slug"] = "evilco"
    reg.write_text(json.dumps(row) + "\n" + json.dumps(second) + "\n")
    _rehash(archive, "registry.jsonl")
    try:
        transfer.import_tenant(archive, as_id="newco")
    except Exception:
        pass
    assert not Tenant.objects.filter(slug="evilco").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["../globex", "a:b", "", "globex\n", "x" * 500])
def test_xfer_a_manifest_naming_a_bad_id_is_refused(media, bad):
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["tenant_id"] = bad
    manifest_file.write_text(json.dumps(manifest))
    before = _globex_snapshot()
    with pytest.raises((ArchiveRefused, CommandError, ValueError)):
        transfer.import_tenant(archive)
    assert _globex_snapshot() == before


@pytest.mark.django_db
def test_xfer_export_of_acme_holds_no_file_of_acme2(media):
    """A tenant whose id extends another's: its files are not the other's."""
    Tenant.objects.create(slug="acme2", name="Acme 2")
    from tests.lifecycle.models import Membership, Seat

    with tenant_context("acme2"):
        storages["default"].save("acme2-private.txt", ContentFile(b"acme2 private"))
        Item.objects.create(name="acme2 item")
        Seat.objects.create(org_slug="acme2", label="acme2 seat")
        Membership.objects.create(
            tenant_id="acme2", user=User.objects.create_user("acme2-user"), role="owner"
        )
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    names = [str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file()]
    assert not any("acme2-private" in n for n in names), names
    assert all(b"acme2" not in (archive / n).read_bytes() for n in names)


@pytest.mark.django_db
def test_xfer_a_generic_foreign_key_to_another_tenants_row_reads_nothing(media):
    from django.contrib.contenttypes.models import ContentType

    from tests.graph.models import Bookmark as GraphBookmark

    with tenant_context("globex"):
        theirs = Item.objects.get()
    with tenant_context("acme"):
        mine = Item.objects.get()
        GraphBookmark.objects.create(
            note="gfk", content_type=ContentType.objects.get_for_model(Item), object_id=mine.pk
        )
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    f = archive / "rows" / "graph.Bookmark.jsonl"
    if not f.exists():
        pytest.fail("graph.Bookmark not exported: the GFK holder is tenant-owned")
    row = json.loads(f.read_text().splitlines()[0])
    row["fields"]["object_id"] = theirs.pk
    f.write_text(json.dumps(row) + "\n")
    _rehash(archive, "rows/graph.Bookmark.jsonl")
    try:
        transfer.import_tenant(archive, as_id="newco")
    except (ArchiveRefused, TenantMismatchError):
        assert not Tenant.objects.filter(slug="newco").exists()
        return
    with tenant_context("newco"):
        (bookmark,) = GraphBookmark.objects.all()
        assert bookmark.target is None or bookmark.target.tenant_id == "newco"


@pytest.mark.django_db(transaction=True)
def test_flags_odd_names_are_errors_not_leaks(flagged):
    with tenant_context("globex") as globex:
        for name in ("beta; acme", "__class__", "../beta", "acme.beta"):
            try:
                value = globex.flags[name]
            except (ValueError, KeyError, AttributeError):
                continue
            assert value is False, name
        assert globex.flags.as_dict() == {"beta": False}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_flags_async_view_and_header_resolver_keep_tenants_apart(flagged, settings):
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_RESOLVER": "header"}
    client = AsyncClient()
    for _ in range(3):
        assert (await client.get("/abeta/", headers={"x-tenant-id": "acme"})).status_code == 200
        assert (await client.get("/abeta/", headers={"x-tenant-id": "globex"})).status_code == 404


@pytest.mark.django_db
def test_audit_an_event_waiting_for_flush_keeps_its_incarnation(two):
    """Emitted in a coroutine (waits for flush), then acme is deleted and
    created again before the flush: never in the new customer's chain."""
    from asgiref.sync import async_to_sync

    async def live_handler():
        audit.emit("rt.deferred_old", tenant="acme")

    with tenant_context("acme"):
        async_to_sync(live_handler)()
    old = chain("acme")
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    Tenant.objects.create(slug="acme", name="again")
    assert audit.flush() == 1
    assert "rt.deferred_old" not in [r.event for r in rows(chain("acme"))]
    assert "rt.deferred_old" in [r.event for r in rows(old)]


@pytest.mark.django_db
def test_audit_an_event_waiting_for_flush_is_not_written_to_the_flushing_tenant(two):
    """acme's deferred event flushed at the end of a globex request."""
    from asgiref.sync import async_to_sync

    async def live_handler():
        audit.emit("rt.deferred_acme", tenant="acme")

    with tenant_context("acme"):
        async_to_sync(live_handler)()
    Client().get("/public/", HTTP_HOST="globex.example.com")
    audit.flush()
    assert "rt.deferred_acme" in [r.event for r in rows(chain("acme"))]
    assert "rt.deferred_acme" not in [r.event for r in rows(chain("globex"))]


@pytest.mark.django_db
def test_xfer_files_of_a_storage_that_does_not_exist_are_refused(media):
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    src = archive / "files" / "0" / "logo.png"
    dst = archive / "files" / "7" / "logo.png"
    dst.parent.mkdir(parents=True)
    src.rename(dst)
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["files/7/logo.png"] = manifest["files"].pop("files/0/logo.png")
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(ArchiveRefused, match=r"files/7/logo\.png"):
        transfer.import_tenant(archive, as_id="newco")
    assert not Tenant.objects.filter(slug="newco").exists()


@pytest.mark.django_db(transaction=True)
def test_susp_no_tenant_can_lift_a_suspension_through_the_admin(susp):
    """globex's superuser on globex's host: the suspension table is not in
    the admin, and acme stays suspended."""
    admin_user = User.objects.create_superuser("globex-admin")
    client = Client(HTTP_HOST="globex.example.com")
    client.force_login(admin_user)
    assert client.get("/admin/tenantry/tenantsuspension/").status_code == 404
    assert b"tenantsuspension" not in client.get("/admin/").content
    assert suspension.is_suspended("acme")


@pytest.mark.django_db(transaction=True)
def test_imp_the_banner_escapes_the_reason(imp):
    client = signed_in(imp["staff"])
    assert start(client, reason="<script>alert(1)</script>").status_code == 200
    body = whoami(client)[1]
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body


@pytest.mark.django_db
def test_audit_strangers_refused_by_the_membership_check_do_not_fill_the_tenants_chain(
    two, settings
):
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "TENANT_MEMBERSHIP_CHECK": "tests.operations_life.views.member",
    }
    client = Client()
    for n in range(10):
        client.get(f"/public/?n={n}", HTTP_HOST="globex.example.com")
    assert rows(chain("globex")) == []


@pytest.mark.django_db
def test_xfer_export_never_follows_a_link_into_another_tenants_files(media):
    """A symlink in acme's storage folder to globex's file (planted on the
    disk): the export refuses rather than copying globex's bytes."""
    from django.core.exceptions import SuspiciousFileOperation

    logo = next((media / "media").rglob("logo.png"))
    secret = next((media / "media").rglob("secret.txt"))
    os.symlink(secret, logo.parent / "linked.txt")
    archive = media / "a"
    try:
        transfer.export_tenant("acme", archive)
    except SuspiciousFileOperation:
        pass
    leaked = [p for p in archive.rglob("*") if p.is_file() and b"globex secret" in p.read_bytes()]
    assert leaked == []


@pytest.mark.django_db
def test_xfer_a_foreign_key_to_another_registry_row_lands_on_the_target(media):
    """app.Note's tenant field is a foreign key to the registry: an archive
    naming globex's registry row there writes newco's note, never globex's."""
    from tests.app.models import Note

    with tenant_context("acme"):
        Note.objects.create(text="acme note")
    archive = media / "a"
    transfer.export_tenant("acme", archive)
    f = archive / "rows" / "app.Note.jsonl"
    row = json.loads(f.read_text().splitlines()[0])
    row["fields"]["org"] = Tenant.objects.get(slug="globex").pk
    f.write_text(json.dumps(row) + "\n")
    _rehash(archive, "rows/app.Note.jsonl")
    try:
        transfer.import_tenant(archive, as_id="newco")
    except ArchiveRefused:
        pass
    assert not Note.all_tenants.filter(org__slug="globex").exists()


@pytest.mark.django_db(transaction=True)
def test_imp_an_expired_impersonation_ends_on_any_host(imp, monkeypatch):
    """Expired, the next request on the main domain (no tenant) and then on
    acme: the staff user again, never the member."""
    client = signed_in(imp["staff"])
    assert start(client, minutes="1").status_code == 200
    later = time.time() + 120
    monkeypatch.setattr(impersonation.time, "time", lambda: later)
    assert (
        "<p id='user'>alice</p>"
        not in client.get("/page/", HTTP_HOST="example.com").content.decode()
    )
    assert "<p id='user'>support</p>" in whoami(client)[1]
