"""Export and import of a tenant (docs/operations.md#export-and-import): every
tenant-owned model's rows, the files, the registry row, a manifest with
counts and hashes; import into an empty tenant with new keys and references
remapped, other tenants untouched; a tampered archive or a non-empty target
refused, naming what is wrong. SQLite and PostgreSQL (row-level security)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError

from tenantry import audit_trail, signals, tenant_context, transfer
from tenantry.exceptions import ArchiveRefused
from tenantry.models import AuditEvent
from tenantry.registry import invalidate_tenant
from tests.app.models import Document, Folder, Item, Note, RlsFolder, RlsNote, Summary, Tag, Tenant
from tests.lifecycle.models import Board, Bookmark, Invoice, Membership, Seat, Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path, stored):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "tenantry.storage.TenantFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return stored


def plant(slug: str) -> dict:
    """A tenant's rows of every kind of relation, and a file."""
    row = Tenant.objects.get(slug=slug)
    invalidate_tenant(slug)
    user = User.objects.create_user(f"{slug}-user")
    with tenant_context(slug):
        Item.objects.create(name=f"{slug} item")
        tags = [Tag.objects.create(name=f"{slug} tag {n}") for n in range(2)]
        child = Folder.objects.create(name="child")
        root = Folder.objects.create(name="root")  # created after the row pointing at it
        Folder.all_tenants.filter(pk=child.pk).update(parent=root)
        doc = Document.objects.create(title=f"{slug} doc", folder=child)
        doc.tags.add(*tags)
        Summary.objects.create(document=doc, text="summary")
        Note.objects.create(text=f"{slug} note")
        walled = RlsFolder.objects.create(name="walled")
        RlsNote.objects.create(title="walled note", folder=walled)
        Membership.objects.create(tenant_id=slug, user=user, role="owner")
        Seat.objects.create(org_slug=slug, label="seat")
        Workspace.objects.create(name="plain workspace")
        Board.objects.create(name="board", columns=4)
        Invoice.objects.create(tenant=row, total=100)
        Bookmark.objects.create(tenant=row, url="https://example.com/")  # not owned: stays
        storages["default"].save("logos/logo.png", ContentFile(f"{slug} logo".encode()))
    return {"user": user}


def snapshot(slug: str) -> dict:
    """What the tenant holds, by value (keys aside)."""
    with tenant_context(slug):
        doc = Document.objects.get()
        return {
            "items": sorted(Item.objects.values_list("name", flat=True)),
            "folders": sorted(
                (f.name, f.parent.name if f.parent else None) for f in Folder.objects.all()
            ),
            "doc": (doc.title, doc.folder.name, sorted(t.name for t in doc.tags.all())),
            "summary": Summary.objects.get().document.title,
            "note": list(Note.objects.values_list("text", flat=True)),
            "walled": [(n.title, n.folder.name) for n in RlsNote.objects.all()],
            "members": list(
                Membership.objects.filter(tenant_id=slug).values_list("user__username", "role")
            ),
            "seats": list(Seat.objects.filter(org_slug=slug).values_list("label", flat=True)),
            "boards": [(b.name, b.columns) for b in Board.objects.all()],
            "workspaces": sorted(Workspace.objects.values_list("name", flat=True)),
            "invoices": list(
                Invoice.objects.filter(tenant__slug=slug).values_list("total", flat=True)
            ),
            "file": storages["default"].open("logos/logo.png").read(),
        }


def keys(slug: str) -> set:
    with tenant_context(slug):
        return set(Document.objects.values_list("pk", flat=True)) | {
            ("folder", pk) for pk in Folder.objects.values_list("pk", flat=True)
        }


def test_export_then_import_as_another_id(media, tmp_path):
    plant("acme")
    plant("globex")
    acme_before, globex_before = snapshot("acme"), snapshot("globex")
    archive = tmp_path / "acme-archive"
    out = StringIO()
    call_command("tenantry", "export", "acme", str(archive), stdout=out)
    assert "manifest.json SHA-256" in out.getvalue()
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["tenant_id"] == "acme" and manifest["models"]["app.Folder"] == 2
    assert manifest["files"]["rows/app.Document.jsonl"]["rows"] == 1
    assert "files/0/logos/logo.png" in manifest["files"]

    call_command("tenantry", "import", str(archive), "--as", "acme2", stdout=StringIO())
    copy = snapshot("acme2")
    assert copy["file"] == b"acme logo"
    assert {k: v for k, v in copy.items()} == {
        **acme_before,
        "members": [("acme-user", "owner")],
    }
    assert keys("acme2").isdisjoint(keys("acme"))  # new keys
    new = Tenant.objects.get(slug="acme2")
    assert new.incarnation != Tenant.objects.get(slug="acme").incarnation
    assert new.name == "Acme"
    # Other tenants untouched, and the original too.
    assert snapshot("acme") == acme_before and snapshot("globex") == globex_before
    with tenant_context("acme2"):
        assert Folder.objects.get(name="child").parent.tenant_id == "acme2"
        assert all(t.tenant_id == "acme2" for t in Document.objects.get().tags.all())
    # Audited in the new tenant's chain.
    chain = audit_trail.select_chain("acme2")
    with audit_trail._scope(chain):
        assert "tenant.imported" in set(
            AuditEvent.objects.filter(chain=chain.key).values_list("event", flat=True)
        )


def test_import_under_the_same_id_after_deletion(media, tmp_path):
    plant("acme")
    before = snapshot("acme")
    archive = tmp_path / "a"
    transfer.export_tenant("acme", archive)
    call_command("tenantry", "delete", "acme", stdout=StringIO())
    imported = []

    def receiver(sender, tenant_id, **kwargs):
        imported.append(tenant_id)

    signals.tenant_imported.connect(receiver)  # docs/operations.md#signals
    try:
        transfer.import_tenant(archive)
    finally:
        signals.tenant_imported.disconnect(receiver)
    assert snapshot("acme") == before
    assert imported == ["acme"]


def test_import_into_a_tenant_that_holds_anything_is_refused(media, tmp_path):
    plant("acme")
    archive = tmp_path / "a"
    transfer.export_tenant("acme", archive)
    with pytest.raises(CommandError, match="tenant 'acme' is not empty"):
        call_command("tenantry", "import", str(archive), stdout=StringIO())
    with tenant_context("globex"):
        Item.objects.create(name="globex's own")
    with pytest.raises(ArchiveRefused, match=r"tenant 'globex' is not empty .*app.Item"):
        transfer.import_tenant(archive, as_id="globex")
    with tenant_context("globex"):
        assert list(Item.objects.values_list("name", flat=True)) == ["globex's own"]


@pytest.mark.parametrize("tamper", ["row", "file", "extra", "missing", "count", "manifest"])
def test_a_tampered_archive_is_refused_naming_the_file(media, tmp_path, tamper):
    plant("acme")
    archive = tmp_path / "a"
    transfer.export_tenant("acme", archive)
    rows = archive / "rows" / "app.Item.jsonl"
    manifest_file = archive / "manifest.json"
    if tamper == "row":
        rows.write_text(rows.read_text().replace("acme item", "evil item"))
        expected = "rows/app.Item.jsonl: .*(bytes|SHA-256)"
    elif tamper == "file":
        (archive / "files/0/logos/logo.png").write_bytes(b"acme logX")
        expected = "files/0/logos/logo.png: SHA-256 .* the manifest says"
    elif tamper == "extra":
        (archive / "rows" / "app.Tag.extra.jsonl").write_text("{}\n")
        expected = "rows/app.Tag.extra.jsonl: in the archive but not in the manifest"
    elif tamper == "missing":
        rows.unlink()
        expected = "rows/app.Item.jsonl: listed in the manifest but missing"
    elif tamper == "count":
        line = rows.read_text()
        rows.write_text(line + line.replace('"pk": ', '"pk": 9'))
        manifest = json.loads(manifest_file.read_text())
        manifest["files"]["rows/app.Item.jsonl"].update(
            sha256=transfer._sha256(rows), bytes=rows.stat().st_size
        )
        manifest_file.write_text(json.dumps(manifest))
        expected = "rows/app.Item.jsonl: 2 rows, the manifest says 1"
    else:
        manifest_file.write_text("not json")
        expected = "manifest.json: not JSON"
    with pytest.raises(CommandError, match=expected):
        call_command("tenantry", "import", str(archive), "--as", "acme2", stdout=StringIO())
    assert not Tenant.objects.filter(slug="acme2").exists()
    with tenant_context("acme2", must_exist=False):
        assert not Item.objects.exists()


def test_export_refuses_a_folder_with_files_and_an_unknown_tenant(media, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(CommandError, match="must be new or empty"):
        call_command("tenantry", "export", "acme", str(tmp_path / "full"), stdout=StringIO())
    with pytest.raises(CommandError, match="no tenant 'nobody'"):
        call_command("tenantry", "export", "nobody", str(tmp_path / "n"), stdout=StringIO())


def test_an_archive_pointing_at_another_tenants_row_is_refused(media, tmp_path):
    """A forged archive (hashes recomputed) whose document names globex's
    folder: the reference must be one of the archive's rows, so nothing is
    written, and globex's folder gains no document."""
    plant("acme")
    with tenant_context("globex"):
        theirs = Folder.objects.create(name="globex folder")
        their_tag = Tag.objects.create(name="globex tag")
    archive = tmp_path / "a"
    transfer.export_tenant("acme", archive)
    docs = archive / "rows" / "app.Document.jsonl"
    item = json.loads(docs.read_text())
    item["fields"]["folder"] = theirs.pk
    docs.write_text(json.dumps(item) + "\n")
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["rows/app.Document.jsonl"].update(
        sha256=transfer._sha256(docs), bytes=docs.stat().st_size
    )
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(ArchiveRefused, match=rf"refers to app.Folder {theirs.pk}"):
        transfer.import_tenant(archive, as_id="forged")
    # The same through the many-to-many link.
    item["fields"]["folder"] = None
    item["fields"]["tags"] = [their_tag.pk]
    docs.write_text(json.dumps(item) + "\n")
    manifest["files"]["rows/app.Document.jsonl"].update(
        sha256=transfer._sha256(docs), bytes=docs.stat().st_size
    )
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(ArchiveRefused, match=rf"links tags to app.Tag {their_tag.pk}"):
        transfer.import_tenant(archive, as_id="forged")
    assert not Tenant.objects.filter(slug="forged").exists()
    with tenant_context("globex"):
        assert not Document.objects.filter(folder=theirs).exists()
        assert not their_tag.document_set.exists()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("files/../rows/app.Item.jsonl", "not a plain path inside the archive"),
        ("files/x/logos/logo.png", "'x' is not a storage number"),
        ("rows/./app.Item.jsonl", "not a plain path inside the archive"),
        ("elsewhere.jsonl", "not a file of a tenantry export"),
    ],
)
def test_a_file_name_outside_the_archives_shape_is_refused_naming_it(
    media, tmp_path, name, expected
):
    """docs/operations.md#export-and-import: every name of the manifest is a
    plain path of the archive's shape; another is refused, named."""
    plant("acme")
    archive = tmp_path / "a"
    transfer.export_tenant("acme", archive)
    manifest_file = archive / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][name] = dict(manifest["files"]["rows/app.Item.jsonl"])
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(CommandError) as refused:
        call_command("tenantry", "import", str(archive), "--as", "acme-x", stdout=StringIO())
    assert str(refused.value).startswith(f"{name}: {expected}")
    assert not Tenant.objects.filter(slug="acme-x").exists()
