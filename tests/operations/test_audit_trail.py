"""The stored audit trail (docs/operations.md#audit-trail): every event a
row of its tenant incarnation's chain, append-only, tamper-evident, pruned
from the oldest end with an anchor, exported as JSON lines, shown read-only
to the tenant's own staff; a deleted tenant's trail stays under its old
incarnation and a new tenant with the id starts afresh. Runs on SQLite and,
behind row-level security, on PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.test import Client

from tenantry import TenantMismatchError, audit, audit_trail, get_current_tenant, tenant_context
from tenantry.db import rls_bypass
from tenantry.exceptions import AuditTrailProtected
from tenantry.models import AuditEvent, AuditHead
from tests.app.models import Item, Tenant
from tests.doc_blocks import block_defining

pytestmark = pytest.mark.django_db


def chain_of(slug: str) -> audit_trail.Chain:
    return audit_trail.select_chain(slug)


def rows(chain: audit_trail.Chain) -> list[AuditEvent]:
    with audit_trail._scope(chain):
        return list(audit_trail.events(chain))


def raw_sql(sql: str, params=()) -> None:
    """Tampering as an attacker with database access would (bypassing RLS)."""
    with audit_trail._scope(audit_trail.Chain(None)), connection.cursor() as cursor:
        cursor.execute(sql, params)


def verify_out(slug: str | None, *args: str) -> tuple[str, str, bool]:
    out, err = StringIO(), StringIO()
    names = ["--platform"] if slug is None else [slug]
    try:
        call_command("tenantry", "audit", "verify", *names, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue() + str(exc), False
    return out.getvalue(), err.getvalue(), True


def test_config_keys_are_parsed_in_rust_and_named_when_wrong(settings):
    from django.core.exceptions import ImproperlyConfigured

    from tenantry import conf

    namespace: dict = {}
    exec(block_defining("operations.md", "DJUST_CONFIG"), namespace)  # the guide's example
    settings.DJUST_CONFIG = namespace["DJUST_CONFIG"]
    assert conf.current().audit_store == "database"
    assert conf.current().audit_retention_days == 365
    for key, bad in (("TENANT_AUDIT_STORE", "db"), ("TENANT_AUDIT_RETENTION_DAYS", 0)):
        settings.DJUST_CONFIG = {key: bad}
        with pytest.raises(ImproperlyConfigured, match=key):
            conf.load()


def test_every_event_is_a_link_of_its_tenants_chain(stored):
    with tenant_context("acme"):
        audit.emit("test.first", tenant=get_current_tenant(), value=1)
        audit.emit("test.second", tenant="acme", value="two")
    with tenant_context("globex"):
        audit.emit("test.globex", tenant="globex")
    acme = rows(chain_of("acme"))
    assert [(r.seq, r.event) for r in acme] == [(1, "test.first"), (2, "test.second")]
    assert acme[0].prev == "" and acme[1].prev == acme[0].hash
    assert acme[0].incarnation == stored["acme"].incarnation
    assert acme[1].data["value"] == "two"
    assert [r.event for r in rows(chain_of("globex"))] == ["test.globex"]
    assert verify_out("acme")[2] and verify_out("globex")[2]


def test_events_of_no_or_an_unknown_tenant_go_to_the_platform_chain(stored):
    audit.emit("test.none")
    # Hostile input naming no tenant (a Host header, before any binding).
    audit.emit("test.stranger", tenant="nobody-here")
    with tenant_context("acme"), pytest.raises(TenantMismatchError):
        audit.emit("test.planted", tenant="nobody-here")  # a tenant names only itself
    platform = [r for r in rows(audit_trail.Chain(None)) if r.event.startswith("test.")]
    assert [r.event for r in platform] == ["test.none", "test.stranger"]
    assert all(r.tenant_id is None for r in platform)
    assert platform[1].data["tenant_id"] == "nobody-here"
    assert not audit_trail.chains_of("nobody-here")
    assert verify_out(None)[2]


def test_hostile_values_are_stored_as_json_every_database_takes(stored):
    """NUL characters, unpaired surrogates, NaN, bytes and objects: stored
    (PostgreSQL's jsonb refuses the first three as given), chain intact."""
    with tenant_context("acme"):
        audit.emit(
            "test.hostile",
            tenant="acme",
            value="a\x00b\ud800c",
            ratio=float("nan"),
            raw=b"\xff",
            obj=object(),
            big="x" * 100_000,
        )
    (row,) = rows(chain_of("acme"))
    assert row.data["value"] == "a\ufffdb?c" and row.data["ratio"] == "nan"
    assert row.data["big"].startswith("x" * 2048 + "…[97952 more")
    assert verify_out("acme")[2]
    assert audit_trail.store.pending() == 0


def test_refusals_are_stored_in_the_refusing_tenants_chain(stored):
    """An isolation refusal made while acme is bound: stored in acme's chain
    (written with acme bound, past the wall and RLS), never in globex's."""
    with tenant_context("acme"), pytest.raises(TenantMismatchError):
        Item.objects.create(name="x", tenant_id="globex")
    events = [r.event for r in rows(chain_of("acme"))]
    assert "isolation.refused" in events
    assert "isolation.refused" not in [r.event for r in rows(chain_of("globex"))]


def test_no_tenant_reads_another_tenants_rows(stored):
    with tenant_context("acme"):
        audit.emit("test.secret", tenant="acme", value="acme only")
    with tenant_context("globex"):
        seen = list(AuditEvent.objects.filter(chain=chain_of("acme").key))
    if connection.vendor == "postgresql":
        assert seen == []  # row-level security: globex's scope sees no acme row
    assert rows(chain_of("globex")) == []


def test_written_in_the_running_transaction(stored):
    with tenant_context("acme"):
        try:
            with transaction.atomic():
                audit.emit("test.rolled_back", tenant="acme")
                raise RuntimeError("the request failed")
        except RuntimeError:
            pass
        with transaction.atomic():
            audit.emit("test.committed", tenant="acme")
    assert [r.event for r in rows(chain_of("acme"))] == ["test.committed"]
    assert verify_out("acme")[2]


def test_events_emitted_in_a_coroutine_wait_for_flush(stored):
    async def live_handler():
        audit.emit("test.from_loop", tenant="acme")

    with tenant_context("acme"):
        async_to_sync(live_handler)()
    # asgiref runs the coroutine in a thread with an event loop: no ORM there.
    assert rows(chain_of("acme")) == []
    assert audit.flush() == 1
    assert [r.event for r in rows(chain_of("acme"))] == ["test.from_loop"]
    assert audit.flush() == 0


def test_the_test_kit_forgets_waiting_events_between_tests(stored):
    """An event waiting for flush() must not land in the next test's database."""
    from tenantry.testing import reset_tenantry

    async def live_handler():
        audit.emit("test.from_loop", tenant="acme")

    with tenant_context("acme"):
        async_to_sync(live_handler)()
    assert audit_trail.store.pending() == 1
    reset_tenantry()
    assert audit_trail.store.pending() == 0 and audit.flush() == 0


@pytest.mark.parametrize(
    "route", ["save", "update", "bulk_update", "delete", "qs_delete", "upsert"]
)
def test_rows_are_append_only(stored, route):
    with tenant_context("acme"):
        audit.emit("test.kept", tenant="acme", value=1)
    row = rows(chain_of("acme"))[0]
    with audit_trail._scope(chain_of("acme")), pytest.raises(AuditTrailProtected):
        if route == "save":
            row.event = "test.changed"
            row.save()
        elif route == "update":
            AuditEvent.objects.filter(pk=row.pk).update(event="x")
        elif route == "bulk_update":
            row.event = "x"
            AuditEvent.objects.bulk_update([row], ["event"])
        elif route == "delete":
            row.delete()
        elif route == "qs_delete":
            AuditEvent.objects.filter(pk=row.pk).delete()
        else:
            AuditEvent.objects.bulk_create(
                [row],
                update_conflicts=True,
                update_fields=["event"],
                unique_fields=["chain", "seq"],
            )
    assert rows(chain_of("acme"))[0].event == "test.kept"


def _three(slug="acme"):
    with tenant_context(slug):
        for n in range(3):
            audit.emit(f"test.e{n}", tenant=slug, n=n)
    return rows(chain_of(slug))


def test_verify_names_a_changed_row(stored):
    second = _three()[1]
    raw_sql("UPDATE tenantry_auditevent SET event = %s WHERE id = %s", ["test.forged", second.pk])
    _, err, ok = verify_out("acme")
    assert not ok
    assert f"row seq 2 (id {second.pk}, test.forged) was changed" in err


def test_verify_names_a_changed_row_whose_hash_was_recomputed(stored):
    _, second, _ = _three()
    forged = audit_trail.row_hash(
        second.chain,
        second.tenant_id,
        second.incarnation,
        2,
        "test.forged",
        second.created_at,
        second.data,
        second.prev,
    )
    raw_sql(
        "UPDATE tenantry_auditevent SET event = %s, hash = %s WHERE id = %s",
        ["test.forged", forged, second.pk],
    )
    _, err, ok = verify_out("acme")
    assert not ok and f"row seq 2 (id {second.pk}) was changed or replaced" in err


def test_verify_names_a_removed_row_in_the_middle_and_at_the_end(stored):
    _, second, third = _three()
    raw_sql("DELETE FROM tenantry_auditevent WHERE id = %s", [second.pk])
    _, err, ok = verify_out("acme")
    assert not ok and "seq 2 removed" in err
    raw_sql("DELETE FROM tenantry_auditevent WHERE id = %s", [third.pk])
    _, err, ok = verify_out("acme")
    assert "seq 2..3 removed from the end (the head is at seq 3)" in err


def test_verify_names_rows_removed_from_the_oldest_end(stored):
    first, *_ = _three()
    raw_sql("DELETE FROM tenantry_auditevent WHERE id = %s", [first.pk])
    _, err, ok = verify_out("acme")
    assert not ok and "seq 1 removed" in err


def test_prune_removes_from_the_oldest_end_and_verify_starts_at_the_anchor(stored, settings):
    first, _, third = _three()
    old = first.created_at - timedelta(days=40)
    raw_sql(
        "UPDATE tenantry_auditevent SET created_at = %s WHERE id IN (%s, %s)",
        [old, first.pk, third.pk],  # the third is old too, but after a young one
    )
    # created_at is part of the hash: re-chain as if they had been written then.
    with audit_trail._scope(chain_of("acme")):
        prev = ""
        for row in audit_trail.events(chain_of("acme")):
            digest = audit_trail._stored_hash(
                AuditEvent(
                    **{
                        **{
                            f.attname: getattr(row, f.attname)
                            for f in AuditEvent._meta.concrete_fields
                        },
                        "prev": prev,
                    }
                )
            )
            raw_sql(
                "UPDATE tenantry_auditevent SET prev = %s, hash = %s WHERE id = %s",
                [prev, digest, row.pk],
            )
            prev = digest
        raw_sql(
            "UPDATE tenantry_audithead SET hash = %s WHERE chain = %s", [prev, chain_of("acme").key]
        )
    assert verify_out("acme")[2]
    settings.DJUST_CONFIG = {**settings.DJUST_CONFIG, "TENANT_AUDIT_RETENTION_DAYS": 30}
    out = StringIO()
    call_command("tenantry", "audit", "prune", stdout=out)
    kept = rows(chain_of("acme"))
    assert [r.seq for r in kept] == [2, 3, 4]  # only the oldest end; the pruning's own event
    assert kept[-1].event == "audit.pruned" and kept[-1].data["through_seq"] == 1
    with audit_trail._scope(chain_of("acme")):
        head = AuditHead.objects.get(chain=chain_of("acme").key)
    assert (head.anchor_seq, head.anchor_hash) == (1, kept[0].prev)
    out_, err, ok = verify_out("acme")
    assert ok, err
    assert "anchored at seq 1" in out_


def test_verify_names_an_anchor_moved_by_hand(stored):
    """Removing the oldest rows and moving the head's anchor over them (as
    the pruning would) is found: no audit.pruned event records that anchor."""
    first, second, _ = _three()
    raw_sql("DELETE FROM tenantry_auditevent WHERE id = %s", [first.pk])
    raw_sql(
        "UPDATE tenantry_audithead SET anchor_seq = 1, anchor_hash = %s WHERE chain = %s",
        [second.prev, chain_of("acme").key],
    )
    _, err, ok = verify_out("acme")
    assert not ok and "the head's anchor (seq 1) was not set by the pruning" in err


def test_prune_without_a_retention_is_refused(stored):
    with pytest.raises(CommandError, match="TENANT_AUDIT_RETENTION_DAYS"):
        call_command("tenantry", "audit", "prune", stdout=StringIO())


def test_export_writes_json_lines_to_stdout_or_a_file(stored, tmp_path):
    _three()
    out = StringIO()
    call_command("tenantry", "audit", "export", "acme", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert lines[1]["prev"] == lines[0]["hash"] and lines[2]["data"] == {
        "n": 2,
        "tenant_id": "acme",
    }
    path = tmp_path / "acme.jsonl"
    call_command("tenantry", "audit", "export", "acme", "-o", str(path), stdout=StringIO())
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines


def test_a_deleted_tenants_trail_stays_and_the_new_tenant_starts_a_new_chain(stored):
    _three()
    old = chain_of("acme")
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    kept = rows(old)
    assert [r.event for r in kept][:3] == ["test.e0", "test.e1", "test.e2"]
    assert kept[-1].event == "tenant.deleted"  # recorded in the deleted incarnation's chain
    Tenant.objects.create(slug="acme", name="Acme again")
    new = chain_of("acme")
    assert new != old and new.incarnation == Tenant.objects.get(slug="acme").incarnation
    with tenant_context("acme"):
        audit.emit("test.fresh", tenant="acme")
    fresh = rows(new)
    assert [(r.seq, r.event, r.prev) for r in fresh] == [(1, "test.fresh", "")]
    assert verify_out("acme", "--incarnation", old.incarnation)[2]
    out = StringIO()
    call_command("tenantry", "audit", "export", "acme", stdout=out)
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["test.fresh"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_one_order(stored):
    """Threads, each with its own PostgreSQL connection and transactions,
    append to one chain: the head row's lock orders them (no duplicate seq,
    an unbroken chain). (SQLite has one writer at a time: the UPDATE that
    takes the head takes the database's write lock.)"""
    errors = []

    def writer(n: int) -> None:
        try:
            with tenant_context("acme"):
                for i in range(5):
                    with transaction.atomic():  # the lock is held until commit
                        audit.emit("test.concurrent", tenant="acme", writer=n, i=i)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    found = rows(chain_of("acme"))
    assert [r.seq for r in found] == list(range(1, 21))
    assert verify_out("acme")[2]


def test_admin_shows_the_bound_tenants_own_chain_read_only(stored):
    with tenant_context("acme"):
        audit.emit("test.acme_event", tenant="acme")
    with tenant_context("globex"):
        audit.emit("test.globex_event", tenant="globex")
    staff = User.objects.create_user("auditor", password="pw", is_staff=True)
    client = Client(HTTP_HOST="acme.example.com")
    client.force_login(staff)
    assert client.get("/admin/tenantry/auditevent/").status_code == 403  # no permission yet
    staff.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    page = client.get("/admin/tenantry/auditevent/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "test.acme_event" in body and "test.globex_event" not in body
    acme_row = rows(chain_of("acme"))[0]
    globex_row = rows(chain_of("globex"))[0]
    assert client.get(f"/admin/tenantry/auditevent/{acme_row.pk}/change/").status_code == 200
    assert client.get(f"/admin/tenantry/auditevent/{globex_row.pk}/change/").status_code in (
        302,
        403,
        404,
    )
    assert client.post(f"/admin/tenantry/auditevent/{acme_row.pk}/delete/").status_code == 403
    assert client.get("/admin/tenantry/auditevent/add/").status_code == 403
    assert rows(chain_of("acme"))[0].event == "test.acme_event"


def test_admin_refuses_staff_the_membership_check_refuses(stored, settings):
    with tenant_context("acme"):
        audit.emit("test.acme_event", tenant="acme")
    settings.DJUST_CONFIG = {
        **settings.DJUST_CONFIG,
        "TENANT_MEMBERSHIP_CHECK": "tests.operations.test_audit_trail.only_acme_staff",
        "TENANT_EXEMPT_PATHS": ["/admin/"],  # the middleware lets it through: the admin must not
    }
    staff = User.objects.create_user("outsider", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client = Client(HTTP_HOST="acme.example.com")
    client.force_login(staff)
    with tenant_context("acme"):
        from django.contrib.admin import site
        from django.test import RequestFactory

        from tenantry.admin import AuditEventAdmin

        request = RequestFactory().get("/admin/tenantry/auditevent/")
        request.user = staff
        model_admin = AuditEventAdmin(AuditEvent, site)
        assert not model_admin.has_view_permission(request)
        assert list(model_admin.get_queryset(request)) == []
        staff.username = "acme-staff"
        assert model_admin.has_view_permission(request)


def only_acme_staff(user, tenant) -> bool:
    return user.username.startswith(f"{tenant.id}-")


# -- only the trail writes its tables (docs/operations.md#audit-trail) ------------------------


def _forged(last: AuditEvent, *, tenant_id: str, seq: int) -> dict:
    """A well-formed row after ``last`` (its hash recomputed), as a tenant's
    code would build it."""
    from django.utils import timezone

    created = timezone.now()
    digest = audit_trail.row_hash(
        last.chain, tenant_id, last.incarnation, seq, "rt.forged", created, {}, last.hash
    )
    return dict(
        chain=last.chain,
        tenant_id=tenant_id,
        incarnation=last.incarnation,
        seq=seq,
        event="rt.forged",
        created_at=created,
        data={},
        prev=last.hash,
        hash=digest,
    )


@pytest.mark.parametrize(
    "route", ["create", "save", "bulk_create", "acreate", "head_create", "head_update"]
)
@pytest.mark.parametrize("by", ["acme", "globex"], ids=["another-tenant", "own-tenant"])
def test_an_orm_write_into_the_trail_is_refused(stored, route, by):
    """A tenant's code cannot plant a row in a chain (another tenant's, or
    its own) nor move a head, by any ORM route: the next events still
    chain, and verify stays clean."""
    _three("globex")
    last = rows(chain_of("globex"))[-1]
    fields = _forged(last, tenant_id=by, seq=last.seq + 1)
    with tenant_context(by), pytest.raises(AuditTrailProtected, match="written only by"):
        with transaction.atomic():
            if route == "create":
                AuditEvent.objects.create(**fields)
            elif route == "save":
                AuditEvent(**fields).save()
            elif route == "bulk_create":
                AuditEvent.objects.bulk_create([AuditEvent(**fields)])
            elif route == "acreate":

                async def plant():
                    await AuditEvent.objects.acreate(**fields)

                async_to_sync(plant)()
            elif route == "head_create":
                AuditHead.objects.create(chain="tenant:newcomer:x", tenant_id=by)
            else:
                AuditHead.objects.filter(chain=last.chain).update(seq=99)
    assert "rt.forged" not in [r.event for r in rows(chain_of("globex"))]
    with tenant_context("globex"):
        audit.emit("test.after", tenant="globex")
    audit.flush()
    assert rows(chain_of("globex"))[-1].event == "test.after"
    assert verify_out("globex")[2]


def test_verify_names_a_row_past_the_head_and_a_row_of_another_tenant(stored):
    """Rows written around the writer (raw SQL): one past the head, one
    naming another tenant in this chain."""
    _three("globex")
    last = rows(chain_of("globex"))[-1]
    for tenant_id, seq in (("globex", last.seq + 1), ("acme", last.seq + 2)):
        fields = _forged(last, tenant_id=tenant_id, seq=seq)
        columns, holes = ", ".join(fields), ", ".join(["%s"] * len(fields))
        raw_sql(
            f"INSERT INTO tenantry_auditevent ({columns}) VALUES ({holes})",
            [json.dumps(v) if k == "data" else v for k, v in fields.items()],
        )
    _out, err, ok = verify_out("globex")
    assert not ok
    assert f"row seq {last.seq + 1}" in err and "is past the head" in err
    assert "names tenant 'acme'" in err


def test_the_default_manager_keeps_to_the_bound_tenants_current_trail(stored):
    """docs/operations.md#audit-trail: with a tenant bound, AuditEvent.objects
    and AuditHead.objects read its current incarnation's chain only: never
    another tenant's trail, nor the trail of the tenant that had the id
    before; with none bound (commands), no filter of its own."""
    for slug in ("acme", "globex"):
        with tenant_context(slug):
            audit.emit("test.old", tenant=slug)
    audit.flush()
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    Tenant.objects.create(slug="acme", name="Acme again")
    with tenant_context("acme"):
        audit.emit("test.new", tenant="acme")
    audit.flush()
    with tenant_context("acme"):
        seen = set(AuditEvent.objects.values_list("event", "tenant_id"))
        heads = set(AuditHead.objects.values_list("tenant_id", "incarnation"))
    assert ("test.new", "acme") in seen
    assert ("test.old", "acme") not in seen and ("test.old", "globex") not in seen
    assert {tenant_id for tenant_id, _ in heads} == {"acme"} and len(heads) == 1
    with rls_bypass(reason="test: every row, as a command reads them"):
        everything = set(AuditEvent.objects.values_list("event", "tenant_id"))
    assert ("test.old", "globex") in everything and ("test.old", "acme") in everything


def test_events_naming_unknown_ids_are_bounded_per_minute(stored):
    """docs/operations.md#audit-trail: a hostile client naming a new
    unknown id per request stores at most UNKNOWN_ID_EVENTS_PER_MINUTE rows
    of each event per minute and process; the rest is counted in one
    audit.suppressed row once the minute is over; the chain stays intact."""
    bound = audit_trail.UNKNOWN_ID_EVENTS_PER_MINUTE
    before = len(rows(audit_trail.Chain(None)))
    for n in range(bound + 15):  # what a hostile Host causes, before any binding
        audit.emit("test.stranger", tenant=f"nobody{n}")
    stored_rows = rows(audit_trail.Chain(None))[before:]
    assert [r.event for r in stored_rows] == ["test.stranger"] * bound
    audit_trail.store.unknown_ids._started -= 61  # the minute is over
    audit.emit("test.stranger", tenant="nobody-next")
    suppressed = [r for r in rows(audit_trail.Chain(None)) if r.event == "audit.suppressed"]
    assert len(suppressed) == 1
    assert suppressed[0].data["left_out"] == {"test.stranger": 15}
    assert rows(audit_trail.Chain(None))[-1].data["tenant_id"] == "nobody-next"
    # A known tenant's events are never bounded.
    with tenant_context("acme"):
        for n in range(bound + 5):
            audit.emit("test.many", tenant="acme", n=n)
    assert len([r for r in rows(chain_of("acme")) if r.event == "test.many"]) == bound + 5
    assert verify_out(None)[2]
