"""Moving a tenant out and back in: ``manage.py tenantry export ID PATH`` and
``manage.py tenantry import PATH [--as ID]`` (docs/operations.md#export-and-import).

**The archive** is a folder:

``manifest.json``          format, tenant id, incarnation, when, and for every
                           other file its SHA-256, size and (row files) count
``registry.jsonl``         the registry row (``TENANT_MODEL``), when there is one
``rows/<app.Model>.jsonl`` the tenant's rows of each tenant-owned model
                           (``tenantry.ownership``, the list a deletion walks),
                           one JSON object per line: ``pk`` and ``fields``
                           (Django's serialized form)
``files/<n>/<name>``       the tenant's files of its ``n``-th tenant storage

Presence, saved state, cache and rate-limit counts are transient and not
exported; the audit trail stays with the old incarnation
(``manage.py tenantry audit export``).

**Import** checks the archive first (every file listed, no file unlisted,
every hash, size and count as listed: ``ArchiveRefused`` names the file and
the mismatch), refuses a target tenant that holds anything (rows or files),
then in one transaction (with the new tenant bound, so the ORM's wall and
row-level security hold every write to it): creates the registry row (a
new incarnation), then the rows of each model, targets before the models
pointing at them, each with a new primary key; references between the
tenant's rows (foreign keys, one-to-ones, many-to-many, the parent link of
multi-table inheritance) follow the new keys, the tenant fields name the
new tenant, references to rows that are no tenant's (users, content types)
are kept as they are. Then the files. Other tenants are not touched: every
write is the new tenant's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps as django_apps
from django.core import serializers
from django.core.files.base import ContentFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, router, transaction
from django.utils import timezone

from . import _core, audit, conf, lifecycle, signals
from ._core import TenantInfo
from .context import tenant_context
from .exceptions import ArchiveRefused
from .ownership import OwnedModel, owned_models
from .storage import tenant_storages

__all__ = ["FORMAT", "Summary", "export_tenant", "import_tenant", "read_manifest"]

logger = logging.getLogger("tenantry.transfer")

FORMAT = "tenantry-export-1"
MANIFEST = "manifest.json"
REGISTRY = "registry.jsonl"


@dataclass
class Summary:
    """What an export wrote or an import created: rows per model, files."""

    tenant_id: str
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    manifest_sha256: str = ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _registry() -> tuple[type[models.Model] | None, str | None]:
    found = conf.current().tenant_model
    if found is None:
        return None, None
    return django_apps.get_model(found[0]), found[1]


def _serialized(rows: Any) -> list[dict[str, Any]]:
    return [
        {"pk": item["pk"], "fields": item["fields"]}
        for item in serializers.serialize("python", rows.order_by("pk"))
    ]


# -- export ---------------------------------------------------------------------------


def export_tenant(tenant_id: Any, path: str | os.PathLike[str]) -> Summary:
    """Write the archive of ``tenant_id`` to the folder ``path`` (new or
    empty). See the module docs."""
    tenant_id = _core.validate_tenant_id(tenant_id)
    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ArchiveRefused(f"{target}: the archive folder must be new or empty")
    registry, id_field = _registry()
    row = None
    if registry is not None:
        row = registry._base_manager.filter(**{id_field: tenant_id}).first()
        if row is None:
            raise _core.TenantNotFound(f"no tenant {tenant_id!r} in {registry._meta.label}")
    tenant = TenantInfo(tenant_id, raw=row)
    target.mkdir(parents=True, exist_ok=True)
    listed: dict[str, dict[str, Any]] = {}
    summary = Summary(tenant_id)

    def write_lines(name: str, items: list[dict[str, Any]]) -> None:
        file = target / name
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "w", encoding="utf-8") as handle:
            for item in items:
                handle.write(json.dumps(item, cls=DjangoJSONEncoder, sort_keys=True) + "\n")
        listed[name] = {"sha256": _sha256(file), "bytes": file.stat().st_size, "rows": len(items)}

    with tenant_context(tenant, must_exist=False), transaction.atomic():
        if row is not None:
            write_lines(REGISTRY, _serialized(registry._base_manager.filter(pk=row.pk)))
        for entry in owned_models():
            if entry.is_registry:
                continue
            rows = lifecycle.owned_rows(entry, tenant)
            if rows is None:
                continue
            items = _serialized(rows)
            if items:
                write_lines(f"rows/{entry.label}.jsonl", items)
                summary.rows[entry.label] = len(items)
        storages = tenant_storages()
        for index, storage in enumerate(storages):
            for name in sorted(storage.tenant_files()):
                relative = f"files/{index}/{name}"
                file = target / relative
                file.parent.mkdir(parents=True, exist_ok=True)
                with storage.open(name, "rb") as source, open(file, "wb") as sink:
                    for chunk in iter(lambda src=source: src.read(1 << 16), b""):
                        sink.write(chunk)
                listed[relative] = {"sha256": _sha256(file), "bytes": file.stat().st_size}
                summary.files += 1
    manifest = {
        "format": FORMAT,
        "tenant_id": tenant_id,
        "incarnation": lifecycle.incarnation(tenant),
        "exported_at": timezone.now().isoformat(),
        "models": summary.rows,
        "storages": [str(s.tenant_files_key()) for s in storages],
        "files": listed,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    summary.manifest_sha256 = _sha256(target / MANIFEST)
    audit.emit(
        "tenant.exported",
        tenant=tenant,
        level=logging.WARNING,
        rows=summary.rows,
        files=summary.files,
        manifest_sha256=summary.manifest_sha256,
    )
    return summary


# -- checking an archive -----------------------------------------------------------------


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of the archive at ``path``, after checking every file
    against it; ``ArchiveRefused`` names the first file that differs."""
    root = Path(path)
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        raise ArchiveRefused(f"{root}: no {MANIFEST} (not a tenantry export)")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArchiveRefused(f"{manifest_file}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveRefused(f"{manifest_file}: format is not {FORMAT!r}")
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise ArchiveRefused(f"{manifest_file}: no list of files")
    present = {
        file.relative_to(root).as_posix()
        for file in root.rglob("*")
        if file.is_file() or file.is_symlink()
    } - {MANIFEST}
    for name in sorted(present - set(listed)):
        raise ArchiveRefused(f"{name}: in the archive but not in the manifest")
    for name, expected in sorted(listed.items()):
        file = root / name
        if not _inside(root, file) or file.is_symlink():
            raise ArchiveRefused(f"{name}: outside the archive folder, or a link")
        if not file.is_file():
            raise ArchiveRefused(f"{name}: listed in the manifest but missing")
        size = file.stat().st_size
        if size != expected.get("bytes"):
            raise ArchiveRefused(f"{name}: {size} bytes, the manifest says {expected.get('bytes')}")
        digest = _sha256(file)
        if digest != expected.get("sha256"):
            raise ArchiveRefused(
                f"{name}: SHA-256 {digest}, the manifest says {expected.get('sha256')}"
            )
        if "rows" in expected:
            with open(file, encoding="utf-8") as handle:
                count = sum(1 for line in handle if line.strip())
            if count != expected["rows"]:
                raise ArchiveRefused(f"{name}: {count} rows, the manifest says {expected['rows']}")
    return manifest


def _inside(root: Path, file: Path) -> bool:
    try:
        file.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _lines(root: Path, name: str) -> list[dict[str, Any]]:
    file = root / name
    if not file.is_file():
        return []
    with open(file, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# -- import --------------------------------------------------------------------------------


def _holds_anything(tenant: TenantInfo) -> list[str]:
    """What ``tenant`` already holds: owned models with rows, storages with files."""
    found = []
    with tenant_context(tenant, must_exist=False):
        for entry in owned_models():
            if entry.is_registry:
                continue
            rows = lifecycle.owned_rows(entry, tenant)
            if rows is not None and rows.exists():
                found.append(entry.label)
        for storage in tenant_storages():
            if next(iter(storage.tenant_files()), None) is not None:
                found.append(f"files in {storage.tenant_files_key()}")
    return found


class _Keys:
    """Old primary key → new row, per model (the remapping of references)."""

    def __init__(self) -> None:
        self.rows: dict[type[models.Model], dict[Any, models.Model]] = {}
        self.exported: dict[type[models.Model], list[dict[str, Any]]] = {}

    def new(self, target: type[models.Model], field: Any, old: Any) -> Any:
        """The new value of a reference ``field`` to ``target`` whose old value is ``old``."""
        concrete = target._meta.concrete_model
        mapped = self.rows.get(concrete)
        if mapped is None:
            return old  # a model no tenant owns (a user): kept as it is
        to_field = field.target_field
        if to_field.primary_key:
            row = mapped.get(_key(concrete, old))
        else:
            row = next(
                (
                    mapped.get(_key(concrete, item["pk"]))
                    for item in self.exported.get(concrete, [])
                    if str(item["fields"].get(to_field.name)) == str(old)
                ),
                None,
            )
        if row is None:
            return _missing
        return getattr(row, to_field.attname)


_missing = object()


def _key(model: type[models.Model], value: Any) -> Any:
    return str(model._meta.pk.to_python(value))


def import_tenant(path: str | os.PathLike[str], *, as_id: Any = None) -> Summary:
    """Restore the archive at ``path`` as tenant ``as_id`` (default: the
    exported id); see the module docs. ``ArchiveRefused`` when the archive
    differs from its manifest or the target tenant holds anything."""
    root = Path(path)
    manifest = read_manifest(root)
    tenant_id = _core.validate_tenant_id(as_id if as_id is not None else manifest["tenant_id"])
    registry, id_field = _registry()
    summary = Summary(tenant_id)
    alias = router.db_for_write(registry) if registry is not None else "default"
    with transaction.atomic(using=alias):
        row = None
        if registry is not None:
            row = registry._base_manager.filter(**{id_field: tenant_id}).first()
        tenant = TenantInfo(tenant_id, raw=row)
        held = _holds_anything(tenant)
        if held:
            raise ArchiveRefused(
                f"tenant {tenant_id!r} is not empty ({', '.join(held)}): import into a tenant "
                "that holds nothing (delete it first, or pass --as NEW_ID)"
            )
        if registry is not None and row is None:
            row = _create_registry_row(registry, id_field, tenant_id, _lines(root, REGISTRY))
        tenant = TenantInfo(tenant_id, raw=row)
        with tenant_context(tenant, must_exist=False):
            keys = _Keys()
            entries = [e for e in reversed(owned_models()) if not e.is_registry]
            if registry is not None and row is not None:
                old = _lines(root, REGISTRY)
                if old:
                    keys.rows[registry] = {_key(registry, old[0]["pk"]): row}
                    keys.exported[registry] = old
            by_label = {e.label: e for e in entries}
            unknown = sorted(set(manifest.get("models", {})) - set(by_label))
            if unknown:
                raise ArchiveRefused(
                    f"the archive holds rows of {', '.join(unknown)}, which is not a tenant-owned "
                    "model here"
                )
            for entry in entries:
                items = _lines(root, f"rows/{entry.label}.jsonl")
                keys.exported[entry.model] = items
                # A reference to a tenant-owned model must name a row of the
                # archive (never one of another tenant's rows, kept as it was).
                keys.rows.setdefault(entry.model, {})
            for entry in entries:
                items = keys.exported[entry.model]
                if items:
                    _create_rows(entry, items, keys, tenant)
                    summary.rows[entry.label] = len(items)
            for entry in entries:
                _set_many_to_many(entry, keys)
            summary.files = _restore_files(root, manifest)
        _verify_counts(manifest, summary)
    audit.emit(
        "tenant.imported",
        tenant=tenant,
        level=logging.WARNING,
        rows=summary.rows,
        files=summary.files,
        source=manifest["tenant_id"],
    )
    signals.tenant_imported.send(sender=import_tenant, tenant_id=tenant_id)
    return summary


def _create_registry_row(registry: Any, id_field: str, tenant_id: str, old: list[dict]) -> Any:
    fields = dict(old[0]["fields"]) if old else {}
    values: dict[str, Any] = {}
    for model_field in registry._meta.concrete_fields:
        if model_field.primary_key or model_field.name not in fields:
            continue
        if model_field.is_relation:
            continue  # a registry row's references are not the tenant's data
        values[model_field.attname] = model_field.to_python(fields[model_field.name])
    values[id_field] = tenant_id
    values.pop(lifecycle.INCARNATION_FIELD, None)  # a new tenant: a new incarnation
    row = registry(**values)
    row.save(force_insert=True)
    return row


def _create_rows(
    entry: OwnedModel, items: list[dict[str, Any]], keys: _Keys, tenant: TenantInfo
) -> None:
    model = entry.model
    opts = model._meta
    tenant_fields = {f.name for f in entry.fields}
    parent_links = {f.name for f in opts.parents.values() if f is not None}
    mapped = keys.rows.setdefault(model, {})
    pending = list(items)
    while pending:
        later = []
        for item in pending:
            obj, unresolved = _build(model, item, keys, tenant, tenant_fields, parent_links)
            if unresolved:
                later.append(item)
                continue
            if parent_links:
                obj.save_base(raw=True, force_insert=True)  # the parent rows exist already
            else:
                obj.save(force_insert=True)
            mapped[_key(model, item["pk"])] = obj
        if len(later) == len(pending):
            names = ", ".join(str(item["pk"]) for item in later[:5])
            raise ArchiveRefused(
                f"rows/{entry.label}.jsonl: rows {names} refer to rows the archive does not hold"
            )
        pending = later


def _build(
    model: Any,
    item: dict[str, Any],
    keys: _Keys,
    tenant: TenantInfo,
    tenant_fields: set[str],
    parent_links: set[str],
) -> tuple[models.Model, bool]:
    opts = model._meta
    values: dict[str, Any] = {}
    fields = item["fields"]
    for model_field in opts.local_concrete_fields if parent_links else opts.concrete_fields:
        name = model_field.name
        if model_field.primary_key and name not in parent_links:
            if not isinstance(
                model_field, models.AutoField | models.BigAutoField | models.SmallAutoField
            ):
                values[model_field.attname] = model_field.to_python(item["pk"])
            continue
        raw = item["pk"] if name in parent_links else fields.get(name)
        if name in tenant_fields:
            if model_field.is_relation:
                target = model_field.related_model
                row = tenant.raw
                values[model_field.attname] = (
                    getattr(row, model_field.target_field.attname)
                    if row is not None and isinstance(row, target)
                    else tenant.id
                )
            else:
                values[model_field.attname] = model_field.to_python(tenant.id)
            continue
        if model_field.is_relation and raw is not None:
            new = keys.new(model_field.related_model, model_field, raw)
            if new is _missing:
                if model_field.related_model._meta.concrete_model is model._meta.concrete_model:
                    return model(), True  # a row of this model not created yet
                raise ArchiveRefused(
                    f"rows/{opts.label}.jsonl: row {item['pk']} refers to "
                    f"{model_field.related_model._meta.label} {raw!r}, which the archive lacks"
                )
            values[model_field.attname] = new
            continue
        if name in fields:
            values[model_field.attname] = model_field.to_python(raw)
    return model(**values), False


def _set_many_to_many(entry: OwnedModel, keys: _Keys) -> None:
    model = entry.model
    for m2m in model._meta.local_many_to_many:
        if not m2m.remote_field.through._meta.auto_created:
            continue  # an explicit through model is a model of its own
        target = m2m.related_model._meta.concrete_model
        for item in keys.exported.get(model, []):
            old = item["fields"].get(m2m.name) or []
            if not old:
                continue
            mapped = keys.rows.get(target)
            if mapped is None:  # a model no tenant owns: the keys are kept
                new = list(old)
            else:
                missing = [pk for pk in old if _key(target, pk) not in mapped]
                if missing:
                    raise ArchiveRefused(
                        f"rows/{model._meta.label}.jsonl: row {item['pk']} links {m2m.name} to "
                        f"{target._meta.label} {', '.join(map(repr, missing[:5]))}, which the "
                        "archive lacks"
                    )
                new = [mapped[_key(target, pk)].pk for pk in old]
            getattr(keys.rows[model][_key(model, item["pk"])], m2m.name).set(new)


def _restore_files(root: Path, manifest: dict[str, Any]) -> int:
    storages = tenant_storages()
    by_key = {str(s.tenant_files_key()): s for s in storages}
    exported = manifest.get("storages", [])
    count = 0
    for name in sorted(manifest["files"]):
        if not name.startswith("files/"):
            continue
        _, index, relative = name.split("/", 2)
        key = exported[int(index)] if int(index) < len(exported) else None
        storage = by_key.get(key) or (storages[0] if len(storages) == 1 else None)
        if storage is None:
            raise ArchiveRefused(
                f"{name}: no tenant storage here matches {key!r} (and there is not exactly one)"
            )
        with open(root / name, "rb") as handle:
            saved = storage.save(relative, ContentFile(handle.read()))
        if saved != relative:
            raise ArchiveRefused(f"{name}: stored as {saved!r}, the tenant's folder was not empty")
        count += 1
    return count


def _verify_counts(manifest: dict[str, Any], summary: Summary) -> None:
    for label, count in manifest.get("models", {}).items():
        if summary.rows.get(label, 0) != count:
            raise ArchiveRefused(
                f"rows/{label}.jsonl: {summary.rows.get(label, 0)} rows imported, the manifest "
                f"says {count}"
            )
