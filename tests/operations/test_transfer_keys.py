"""Import's rules for references and keys (docs/operations.md#export-and-import):
generic foreign keys follow the archive's rows (or are refused when they
name another tenant's row), values unique across tenants and primary keys
the database does not generate are checked before the first write (a
conflict names model, field and value, and nothing is written), a taken
UUID key with a default is made anew with every reference following it.
SQLite and PostgreSQL (row-level security on every model here)."""

from __future__ import annotations

import json
import uuid
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError

from tenantry import tenant_context, transfer
from tenantry.exceptions import ArchiveRefused
from tests.app.models import Tenant
from tests.porting.models import (
    Code,
    Flag,
    Grant,
    Handle,
    Ledger,
    Mark,
    Pair,
    Profile,
    Remark,
    Sheet,
    Site,
    Token,
    Use,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """A tenant storage of this test's own (no files of another test's tenants)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "tenantry.storage.TenantFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }


PORTING = (Remark, Sheet, Flag, Mark, Code, Token, Grant, Use, Site, Pair, Handle, Ledger, Profile)


def nothing_imported(slug: str) -> None:
    """The refused import wrote nothing: no registry row, no row of any model."""
    assert not Tenant.objects.filter(slug=slug).exists()
    for model in PORTING:
        assert not model.all_tenants.filter(tenant_id=slug).exists(), model


def everything_of(slug: str) -> dict:
    """Every porting row of ``slug``, by value."""
    with tenant_context(slug):
        return {
            model._meta.label: sorted(
                str(sorted((k, str(v)) for k, v in row.items() if k not in ("id", "tenant_id")))
                for row in model.objects.values()
            )
            for model in PORTING
        }


def export(slug: str, tmp_path) -> object:
    archive = tmp_path / f"{slug}-archive"
    transfer.export_tenant(slug, archive)
    return archive


def forge(archive, label: str, change) -> None:
    """Rewrite the rows of ``label`` with ``change(item)`` and list the new
    hashes: a forged archive that passes the manifest check."""
    rows = archive / "rows" / f"{label}.jsonl"
    items = [json.loads(line) for line in rows.read_text().splitlines() if line.strip()]
    for item in items:
        change(item)
    rows.write_text("".join(json.dumps(item) + "\n" for item in items))
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][f"rows/{label}.jsonl"].update(
        sha256=transfer._sha256(rows), bytes=rows.stat().st_size
    )
    manifest_file.write_text(json.dumps(manifest))


def ct(model) -> int:
    return ContentType.objects.get_for_model(model).pk


# -- generic foreign keys ---------------------------------------------------------------------


def plant_generic(slug: str) -> dict:
    """A sheet with a remark (custom names, char id), a flag (text id) and
    a mark (integer id) on it; a remark on a remark (same model, created
    first); a flag on a token (UUID key as text); a remark on a user (a
    shared model)."""
    user = User.objects.create_user(f"{slug}-reader")
    with tenant_context(slug):
        first = Remark.objects.create(text="on a later remark")
        sheet = Sheet.objects.create(title=f"{slug} sheet")
        Remark.objects.create(text="on the sheet", about=sheet)
        later = Remark.objects.create(text="the later remark")
        first.about = later
        first.save()
        Flag.objects.create(target=sheet)
        Mark.objects.create(target=sheet)
        token = Token.objects.create(label="token")
        Flag.objects.create(target=token)
        Remark.objects.create(text="on a user", about=user)
    return {"user": user}


def test_generic_foreign_keys_follow_the_archives_rows(stored, tmp_path):
    """docs/operations.md#export-and-import: a generic reference to a row
    of the archive names the new row, one to a shared model's row is kept."""
    planted = plant_generic("acme")
    call_command(
        "tenantry", "import", str(export("acme", tmp_path)), "--as", "acme-copy", stdout=StringIO()
    )
    with tenant_context("acme"):
        old_sheet = Sheet.objects.get()
        old_token = Token.objects.get()
    with tenant_context("acme-copy"):
        sheet = Sheet.objects.get()
        assert sheet.pk != old_sheet.pk
        # Through the GenericRelation on the target side (custom field names).
        assert [r.text for r in sheet.remarks.all()] == ["on the sheet"]
        assert Flag.objects.get(content_type=ct(Sheet)).target == sheet
        assert Mark.objects.get().target == sheet
        first = Remark.objects.get(text="on a later remark")
        assert first.about == Remark.objects.get(text="the later remark")
        assert first.about.tenant_id == "acme-copy"
        token = Token.objects.get()
        assert token.pk != old_token.pk  # the UUID key was taken by acme's token
        assert Flag.objects.get(content_type=ct(Token)).target == token
        assert Remark.objects.get(text="on a user").about == planted["user"]
    # acme's own rows untouched: each still names acme's rows.
    with tenant_context("acme"):
        assert [r.text for r in Sheet.objects.get().remarks.all()] == ["on the sheet"]


@pytest.mark.parametrize("holder", ["remark", "flag", "mark"])
def test_a_generic_key_naming_another_tenants_row_is_refused(stored, tmp_path, holder):
    """A forged archive whose generic reference names globex's sheet: refused
    naming model, fields and value, before anything is written."""
    with tenant_context("acme"):
        sheet = Sheet.objects.create(title="acme sheet")
        Remark.objects.create(text="on the sheet", about=sheet)
        Flag.objects.create(target=sheet)
        Mark.objects.create(target=sheet)
    with tenant_context("globex"):
        theirs = Sheet.objects.create(title="globex sheet")
    archive = export("acme", tmp_path)
    label, fields = {
        "remark": ("porting.Remark", "about: kind, ref"),
        "flag": ("porting.Flag", "target: content_type, object_id"),
        "mark": ("porting.Mark", "target: content_type, object_id"),
    }[holder]
    id_field = "ref" if holder == "remark" else "object_id"
    as_text = holder != "mark"
    forge(
        archive,
        label,
        lambda item: item["fields"].update({id_field: str(theirs.pk) if as_text else theirs.pk}),
    )
    with pytest.raises(CommandError) as refused:
        call_command("tenantry", "import", str(archive), "--as", "forged", stdout=StringIO())
    message = str(refused.value)
    assert f"rows/{label}.jsonl" in message and f"({fields})" in message
    assert f"porting.Sheet {str(theirs.pk) if as_text else theirs.pk!r}" in message
    nothing_imported("forged")
    with tenant_context("globex"):
        assert not Sheet.objects.get().remarks.exists()


def test_a_generic_key_naming_a_shared_row_is_kept_even_when_forged(stored, tmp_path):
    """A user is no tenant's row: the reference stays as it is."""
    other = User.objects.create_user("somebody")
    with tenant_context("acme"):
        Remark.objects.create(text="on a user", about=User.objects.create_user("acme-reader"))
    archive = export("acme", tmp_path)
    forge(archive, "porting.Remark", lambda item: item["fields"].update(ref=str(other.pk)))
    transfer.import_tenant(archive, as_id="acme-copy")
    with tenant_context("acme-copy"):
        assert Remark.objects.get().about == other


# -- values unique across tenants -----------------------------------------------------------------


@pytest.mark.parametrize(
    "model, values, expected",
    [
        (Site, {"host": "shop.acme.test"}, "porting.Site.host: 'shop.acme.test' is already taken"),
        (Pair, {"kind": "gold", "number": 7}, r"porting.Pair (kind, number): ('gold', 7) is"),
        (Handle, {"name": "acme", "public": True}, "porting.Handle.name: 'acme' is already taken"),
        (Profile, {}, "porting.Profile.user: {user} is already taken"),
    ],
    ids=["unique", "unique_together", "conditional-constraint", "one-to-one-to-a-user"],
)
def test_a_value_unique_across_tenants_is_refused_before_writing(
    stored, tmp_path, model, values, expected
):
    """docs/operations.md#export-and-import: importing --as a new id while
    the source tenant still holds its unique values: refused naming model,
    field(s) and value, nothing imported, the holder's row untouched."""
    user = User.objects.create_user("acme-owner")
    with tenant_context("acme"):
        Sheet.objects.create(title="written before the conflicting model")
        Ledger.objects.create(number=1)  # unique per tenant only: never a conflict
        row = model.objects.create(**(values or {"user": user}))
    archive = export("acme", tmp_path)
    with pytest.raises(CommandError) as refused:
        call_command("tenantry", "import", str(archive), "--as", "acme-copy", stdout=StringIO())
    message = str(refused.value)
    assert expected.format(user=user.pk) in message
    assert "nothing was imported" in message
    assert "tenant 'acme'" not in message  # the holder is not named
    nothing_imported("acme-copy")
    with tenant_context("acme"):
        assert model.objects.get().pk == row.pk
    # Once the holder is gone the same archive imports.
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    transfer.import_tenant(archive, as_id="acme-copy")
    with tenant_context("acme-copy"):
        assert model.objects.count() == 1 and Ledger.objects.get().number == 1


def test_a_conditional_unique_value_outside_the_condition_imports(stored, tmp_path):
    """A private handle is not unique: the same name imports."""
    with tenant_context("acme"):
        Handle.objects.create(name="acme", public=False)
        Ledger.objects.create(number=1)
    transfer.import_tenant(export("acme", tmp_path), as_id="acme-copy")
    assert everything_of("acme-copy") == everything_of("acme")


def test_a_unique_value_of_a_third_tenant_is_refused(stored, tmp_path):
    """The conflict may be any tenant's: globex took the host since."""
    with tenant_context("acme"):
        Site.objects.create(host="shared.example.test")
    archive = export("acme", tmp_path)
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    with tenant_context("globex"):
        Site.objects.create(host="shared.example.test")
    with pytest.raises(
        ArchiveRefused, match=r"porting.Site.host: 'shared.example.test' is already"
    ) as refused:
        transfer.import_tenant(archive)
    assert "globex" not in str(refused.value)
    assert not Tenant.objects.filter(slug="acme").exists()
    nothing_imported("acme")


# -- primary keys the database does not generate ------------------------------------------------


def plant_keys(slug: str, grant: bool = True) -> None:
    with tenant_context(slug):
        code = Code.objects.create(code=f"{slug}-c1", label="code")
        tokens = [Token.objects.create(label=f"token {n}") for n in range(2)]
        granted = Grant.objects.create(id=uuid.uuid4(), label="grant") if grant else None
        use = Use.objects.create(code=code, token=tokens[0], grant=granted)
        use.tokens.set(tokens)
        Flag.objects.create(target=tokens[1])
        Flag.objects.create(target=code)


def test_free_keys_are_kept(stored, tmp_path):
    """After the source is deleted its keys are free: kept as they were."""
    plant_keys("acme")
    with tenant_context("acme"):
        before = {
            "codes": set(Code.objects.values_list("pk", flat=True)),
            "tokens": set(Token.objects.values_list("pk", flat=True)),
            "grants": set(Grant.objects.values_list("pk", flat=True)),
        }
    archive = export("acme", tmp_path)
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    transfer.import_tenant(archive, as_id="acme-copy")
    with tenant_context("acme-copy"):
        assert set(Code.objects.values_list("pk", flat=True)) == before["codes"]
        assert set(Token.objects.values_list("pk", flat=True)) == before["tokens"]
        assert set(Grant.objects.values_list("pk", flat=True)) == before["grants"]
        use = Use.objects.get()
        assert use.code.tenant_id == use.token.tenant_id == use.grant.tenant_id == "acme-copy"
        assert Flag.objects.get(content_type=ct(Code)).target.tenant_id == "acme-copy"


def test_a_taken_uuid_key_with_a_default_is_made_anew(stored, tmp_path):
    """acme still holds its tokens: the copy's tokens get new keys, and the
    foreign key, the many-to-many and the generic key follow them."""
    plant_keys("acme", grant=False)
    with tenant_context("acme"):
        Flag.objects.filter(content_type=ct(Code)).delete()
        Use.objects.update(code=None)
        Code.objects.all().delete()  # a char key would be refused (next test)
        old = set(Token.objects.values_list("pk", flat=True))
    transfer.import_tenant(export("acme", tmp_path), as_id="acme-copy")
    with tenant_context("acme-copy"):
        tokens = set(Token.objects.values_list("pk", flat=True))
        assert len(tokens) == 2 and tokens.isdisjoint(old)
        use = Use.objects.get()
        assert use.token.pk in tokens and use.token.tenant_id == "acme-copy"
        assert set(use.tokens.values_list("pk", flat=True)) == tokens
        assert Flag.objects.get(content_type=ct(Token)).target.pk in tokens
    with tenant_context("acme"):
        assert set(Token.objects.values_list("pk", flat=True)) == old
        assert set(Use.objects.get().tokens.values_list("pk", flat=True)) == old


@pytest.mark.parametrize("kind", ["char", "uuid-without-default"])
def test_another_taken_key_is_refused_before_writing(stored, tmp_path, kind):
    plant_keys("acme")
    with tenant_context("acme"):
        if kind == "char":
            Use.objects.update(grant=None)
            Grant.objects.all().delete()
            expected = "porting.Code: primary key 'acme-c1' is already taken"
        else:
            Flag.objects.filter(content_type=ct(Code)).delete()
            Use.objects.update(code=None)
            Code.objects.all().delete()
            grant = Grant.objects.get()
            expected = f"porting.Grant: primary key UUID('{grant.pk}') is already taken"
        before = everything_of("acme")
    with pytest.raises(CommandError) as refused:
        call_command(
            "tenantry",
            "import",
            str(export("acme", tmp_path)),
            "--as",
            "acme-copy",
            stdout=StringIO(),
        )
    assert expected in str(refused.value)
    nothing_imported("acme-copy")
    assert everything_of("acme") == before


def test_generic_keys_to_the_registry_row_and_to_a_multi_table_child(stored, tmp_path):
    """The registry row is a tenant's row too: a remark about acme's row
    names the copy's row, one forged to name globex's row is refused; a
    remark about a multi-table child (graph.Shop) names the copy's child."""
    from tests.graph.models import Shop

    with tenant_context("acme"):
        Remark.objects.create(text="about the tenant", about=stored["acme"])
        shop = Shop.objects.create(name="acme shop", kind="bakery")
        Remark.objects.create(text="about the shop", about=shop)
    archive = export("acme", tmp_path)
    transfer.import_tenant(archive, as_id="acme-copy")
    copy = Tenant.objects.get(slug="acme-copy")
    with tenant_context("acme-copy"):
        assert Remark.objects.get(text="about the tenant").about == copy
        new_shop = Remark.objects.get(text="about the shop").about
        assert isinstance(new_shop, Shop) and new_shop.tenant_id == "acme-copy"
        assert new_shop.pk != shop.pk and new_shop.kind == "bakery"
    globex = stored["globex"]
    forge(
        archive,
        "porting.Remark",
        lambda item: (
            item["fields"].update(ref=str(globex.pk))
            if item["fields"]["text"] == "about the tenant"
            else None
        ),
    )
    with pytest.raises(ArchiveRefused, match=rf"to app.Tenant '{globex.pk}', which the archive"):
        transfer.import_tenant(archive, as_id="forged")
    nothing_imported("forged")


def test_content_types_are_translated_by_name(stored, tmp_path):
    """docs/operations.md#references-and-keys-on-import: another database
    numbers its content types otherwise; the archive lists each id's
    ``app_label.model`` and the import translates by it. An id whose model
    is not installed here is refused, named."""
    with tenant_context("acme"):
        sheet = Sheet.objects.create(title="acme sheet")
        Remark.objects.create(text="on the sheet", about=sheet)
        Flag.objects.create(target=sheet)
    archive = export("acme", tmp_path)
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    assert manifest["content_types"][str(ct(Sheet))] == "porting.sheet"
    # As another database would have numbered them: every id moved by 9000.
    manifest["content_types"] = {
        str(int(old) + 9000): label for old, label in manifest["content_types"].items()
    }
    manifest_file.write_text(json.dumps(manifest))
    forge(
        archive,
        "porting.Remark",
        lambda item: item["fields"].update(kind=item["fields"]["kind"] + 9000),
    )
    forge(
        archive,
        "porting.Flag",
        lambda item: item["fields"].update(content_type=item["fields"]["content_type"] + 9000),
    )
    transfer.import_tenant(archive, as_id="acme-copy")
    with tenant_context("acme-copy"):
        copy = Sheet.objects.get()
        assert Remark.objects.get().about == copy and Flag.objects.get().target == copy
    manifest = json.loads(manifest_file.read_text())
    manifest["content_types"][str(ct(Sheet) + 9000)] = "gone.model"
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(
        ArchiveRefused, match=r"content type \d+ names a model that is not installed"
    ):
        transfer.import_tenant(archive, as_id="acme-third")
    nothing_imported("acme-third")
