"""Moving a tenant out and back in: ``manage.py tenantry export ID PATH`` and
``manage.py tenantry import PATH [--as ID]`` (docs/operations.md#export-and-import).

**The archive** is a folder:

``manifest.json``          format, tenant id, incarnation, when, every content
                           type id with its ``app_label.model``, and for every
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
refuses, before the first write, what would meet a row outside the import
(a generic foreign key naming a tenant's row the archive lacks, a value
unique across tenants that is taken, a taken primary key the database does
not generate; a taken UUID key with a default is made anew), then in one
transaction (with the new tenant bound, so the ORM's wall and
row-level security hold every write to it): creates the registry row (a
new incarnation), then the rows of each model, targets before the models
pointing at them, each with a new primary key; references between the
tenant's rows (foreign keys, one-to-ones, many-to-many, generic foreign keys, the parent
link of multi-table inheritance) follow the new keys, the tenant fields name the
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
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.files.base import ContentFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, router, transaction
from django.utils import timezone

from . import _core, audit, conf, lifecycle, signals
from ._core import TenantInfo
from .context import tenant_context
from .db.scope import rls_bypass
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
        "content_types": _content_type_labels(),
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
        problem = _name_problem(name)
        if problem is not None:
            raise ArchiveRefused(f"{name}: {problem}")
        if not isinstance(expected, dict):
            raise ArchiveRefused(f"{name}: its manifest entry is not an object")
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


def _name_problem(name: Any) -> str | None:
    """What is wrong with a file name of the manifest, or None: the
    registry, ``rows/<app.Model>.jsonl`` or ``files/<storage number>/<path>``,
    plain relative paths (no ``..``, no empty or ``.`` part)."""
    if not isinstance(name, str) or not name:
        return "not a file name"
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        return "not a plain path inside the archive (no '..', '.', empty parts or backslashes)"
    if name == REGISTRY or (len(parts) == 2 and parts[0] == "rows" and name.endswith(".jsonl")):
        return None
    if len(parts) >= 3 and parts[0] == "files":
        if parts[1].isdigit() and parts[1].isascii():
            return None
        return f"{parts[1]!r} is not a storage number (files/<number>/<path>)"
    return "not a file of a tenantry export (registry.jsonl, rows/..., files/<number>/...)"


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
        #: Per model, the old keys of rows whose UUID key is taken: a new one.
        self.regenerate: dict[type[models.Model], set[Any]] = {}
        #: The registry model (its rows are tenants' rows too).
        self.registry: type[models.Model] | None = None
        #: The archive's content type ids → this database's (None: kept).
        self.content_types: dict[str, Any] | None = None
        self._archived: dict[type[models.Model], set[Any]] = {}

    def owned(self, model: type[models.Model]) -> bool:
        """Whether ``model``'s rows are tenants' rows (a reference to one
        must name a row of the archive)."""
        concrete = model._meta.concrete_model
        return concrete in self.rows or (
            self.registry is not None and concrete is self.registry._meta.concrete_model
        )

    def content_type(self, old: Any) -> Any:
        """This database's id of the archive's content type ``old``."""
        if self.content_types is None or old is None:
            return old
        if str(old) not in self.content_types:
            raise ArchiveRefused(f"content type {old!r} is not listed in the manifest")
        new = self.content_types[str(old)]
        if new is None:
            raise ArchiveRefused(f"content type {old!r} names a model that is not installed here")
        return new

    def in_archive(self, model: type[models.Model], old: Any) -> bool:
        concrete = model._meta.concrete_model
        try:
            key = _key(concrete, old)
        except ValidationError:
            return False
        archived = self._archived.get(concrete)
        if archived is None:
            archived = self._archived[concrete] = {
                _key(concrete, item["pk"]) for item in self.exported.get(concrete, [])
            }
        return key in archived

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


def _generic_keys(model: type[models.Model]) -> list[tuple[Any, Any, Any]]:
    """``model``'s generic foreign keys: (the GenericForeignKey, its content
    type field, its object id field), whatever their names."""
    found = []
    opts = model._meta
    for private in opts.private_fields:
        ct_name, fk_name = getattr(private, "ct_field", None), getattr(private, "fk_field", None)
        if not isinstance(ct_name, str) or not isinstance(fk_name, str):
            continue
        try:
            found.append((private, opts.get_field(ct_name), opts.get_field(fk_name)))
        except FieldDoesNotExist:  # a broken declaration: Django's checks report it
            continue
    return found


def _content_types() -> Any:
    """Django's ContentType model, or None without ``django.contrib.contenttypes``."""
    try:
        return django_apps.get_model("contenttypes", "ContentType")
    except LookupError:
        return None


def _content_type_labels() -> dict[str, str]:
    """Every content type id of this database → ``app_label.model``: the
    archive's ids are translated by these names on import (another database
    numbers its content types otherwise)."""
    model = _content_types()
    if model is None:
        return {}
    return {
        str(pk): f"{app_label}.{name}"
        for pk, app_label, name in model.objects.values_list("pk", "app_label", "model")
    }


def _local_content_types(manifest: dict[str, Any], alias: str) -> dict[str, Any] | None:
    """The archive's content type id → this database's (None for an id whose
    model is not here), or None for an archive that lists none (ids kept)."""
    listed = manifest.get("content_types")
    model = _content_types()
    if not isinstance(listed, dict) or model is None:
        return None
    here = {
        f"{app_label}.{name}": pk
        for pk, app_label, name in model.objects.db_manager(alias).values_list(
            "pk", "app_label", "model"
        )
    }
    return {str(old): here.get(str(label)) for old, label in listed.items()}


def _content_model(alias: str, content_type_id: Any) -> type[models.Model] | None:
    """The model a content type id names (None: a content type of a model
    that no longer exists). ``ArchiveRefused`` for an id that is no content
    type here."""
    content_types = django_apps.get_model("contenttypes", "ContentType")
    try:
        content_type = content_types.objects.db_manager(alias).get_for_id(content_type_id)
    except (content_types.DoesNotExist, ValueError, TypeError):
        raise ArchiveRefused(f"content type {content_type_id!r} does not exist here") from None
    return content_type.model_class()


def import_tenant(path: str | os.PathLike[str], *, as_id: Any = None) -> Summary:
    """Restore the archive at ``path`` as tenant ``as_id`` (default: the
    exported id); see the module docs. ``ArchiveRefused`` when the archive
    differs from its manifest, the target tenant holds anything, or a row
    would take a key or a unique value another row holds (nothing written)."""
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
        entries = [e for e in reversed(owned_models()) if not e.is_registry]
        by_label = {e.label: e for e in entries}
        unknown = sorted(set(manifest.get("models", {})) - set(by_label))
        if unknown:
            raise ArchiveRefused(
                f"the archive holds rows of {', '.join(unknown)}, which is not a tenant-owned "
                "model here"
            )
        keys = _Keys()
        keys.registry = registry
        keys.content_types = _local_content_types(manifest, alias)
        old_registry = _lines(root, REGISTRY)
        for entry in entries:
            keys.exported[entry.model] = _lines(root, f"rows/{entry.label}.jsonl")
            # A reference to a tenant-owned model must name a row of the
            # archive (never one of another tenant's rows, kept as it was).
            keys.rows.setdefault(entry.model, {})
        if registry is not None and old_registry:
            keys.exported[registry] = old_registry
        # Everything that would meet another tenant's row is refused before
        # the first write.
        _check_before_writing(entries, keys, tenant, registry, id_field, old_registry)
        if registry is not None and row is None:
            row = _create_registry_row(registry, id_field, tenant_id, old_registry)
        tenant = TenantInfo(tenant_id, raw=row)
        with tenant_context(tenant, must_exist=False):
            if registry is not None and row is not None and old_registry:
                keys.rows[registry] = {_key(registry, old_registry[0]["pk"]): row}
            try:
                summary.rows = {
                    label: count
                    for label, count in sorted(_create_rows(entries, keys, tenant).items())
                }
                for entry in entries:
                    _set_many_to_many(entry, keys)
            except IntegrityError as exc:
                # What the checks above cannot see (a unique expression, a
                # database trigger): the transaction takes everything back.
                raise ArchiveRefused(
                    f"the database refused a row of the archive ({exc}); nothing was imported"
                ) from None
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


# -- the checks before the first write ---------------------------------------------------------


def _check_before_writing(
    entries: list[OwnedModel],
    keys: _Keys,
    tenant: TenantInfo,
    registry: Any,
    id_field: str | None,
    old_registry: list[dict[str, Any]],
) -> None:
    """Refuse, naming model, field and value, an archive whose rows would
    take a primary key or a value unique across tenants that a row outside
    the import holds, or whose generic foreign keys name a tenant's row the
    archive lacks. Reads every tenant's rows (an audited bypass of row-level
    security): the answer is only ever "taken"."""
    with (
        tenant_context(tenant, must_exist=False),
        rls_bypass(reason=f"tenantry.transfer: keys and unique values free for {tenant.id!r}"),
    ):
        for entry in entries:
            items = keys.exported[entry.model]
            if not items:
                continue
            tenant_fields = {f.name for f in entry.fields}
            _check_generic_keys(entry.model, items, keys)
            _check_primary_keys(entry.model, items, keys)
            _check_unique_values(entry.model, items, keys, tenant_fields)
        if registry is not None and old_registry:
            skipped = {id_field, lifecycle.INCARNATION_FIELD}
            _check_unique_values(registry, old_registry[:1], keys, skipped, registry_row=True)


def _check_generic_keys(model: Any, items: list[dict[str, Any]], keys: _Keys) -> None:
    label = model._meta.label
    alias = router.db_for_write(model)
    for generic, ct_field, fk_field in _generic_keys(model):
        for item in items:
            content_type = item["fields"].get(ct_field.name)
            object_id = item["fields"].get(fk_field.name)
            if content_type is None or object_id is None:
                continue
            try:
                target = _content_model(alias, keys.content_type(content_type))
            except ArchiveRefused as exc:
                raise ArchiveRefused(
                    f"rows/{label}.jsonl: row {item['pk']} {generic.name}: {exc}"
                ) from None
            if target is None or not keys.owned(target):
                continue  # a shared model's row (a user): kept as it is
            if not keys.in_archive(target, object_id):
                raise ArchiveRefused(
                    f"rows/{label}.jsonl: row {item['pk']} refers ({generic.name}: "
                    f"{ct_field.name}, {fk_field.name}) to "
                    f"{target._meta.concrete_model._meta.label} {object_id!r}, which the "
                    "archive lacks"
                )


def _generated(field: Any) -> bool:
    return isinstance(field, models.AutoField | models.BigAutoField | models.SmallAutoField)


def _check_primary_keys(model: Any, items: list[dict[str, Any]], keys: _Keys) -> None:
    """A primary key the database does not generate is kept when it is
    free; a taken UUID key with a default is made anew (references follow);
    any other taken key is refused."""
    opts = model._meta
    pk = opts.pk
    if _generated(pk) or (opts.parents and pk in opts.parents.values()):
        return  # a new key, or the parent row's (checked with the parent)
    if pk.is_relation and keys.owned(pk.related_model):
        return  # follows the archive's row it points at: a new key
    wanted = {}
    for item in items:
        try:
            wanted[_key(model, item["pk"])] = pk.to_python(item["pk"])
        except ValidationError:
            raise ArchiveRefused(
                f"rows/{opts.label}.jsonl: {item['pk']!r} is not a valid {opts.label} primary key"
            ) from None
    taken = _taken(model, pk.attname, list(wanted.values()))
    if not taken:
        return
    if isinstance(pk, models.UUIDField) and pk.has_default():
        keys.regenerate[model] = taken
        return
    first = wanted[sorted(taken)[0]]
    raise ArchiveRefused(
        f"{opts.label}: primary key {first!r} is already taken (a key that is not generated is "
        "kept on import): nothing was imported"
    )


def _taken(model: Any, attname: str, values: list[Any]) -> set[Any]:
    """Which of ``values`` of ``model``'s ``attname`` a row holds (as keys)."""
    field = model._meta.get_field(attname) if attname != "pk" else model._meta.pk
    manager = model._base_manager.db_manager(router.db_for_write(model))
    found: set[Any] = set()
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        for value in manager.filter(**{f"{attname}__in": chunk}).values_list(attname, flat=True):
            found.add(str(field.to_python(value)))
    return found


def _unique_groups(model: Any, keys: _Keys, skipped: set[str]) -> list[tuple[tuple[Any, ...], Any]]:
    """The field groups of ``model`` whose values are unique across
    tenants, each with its condition (or None): ``unique=True`` fields,
    ``unique_together`` and ``UniqueConstraint(fields=...)``; a group that
    holds a tenant field is unique per tenant, and one that holds a
    reference to a tenant-owned model gets a new value: neither can meet
    another tenant's row."""
    opts = model._meta
    groups: list[tuple[tuple[Any, ...], Any]] = []
    for model_field in opts.concrete_fields:
        if model_field.unique and not model_field.primary_key:
            groups.append(((model_field,), None))
    for names in opts.unique_together:
        groups.append((tuple(opts.get_field(name) for name in names), None))
    for constraint in opts.constraints:
        if isinstance(constraint, models.UniqueConstraint) and constraint.fields:
            fields = tuple(opts.get_field(name) for name in constraint.fields)
            groups.append((fields, constraint.condition))
    kept = []
    for fields, condition in groups:
        if any(f.name in skipped or f.primary_key for f in fields):
            continue
        if any(f.is_relation and keys.owned(f.related_model) for f in fields):
            continue
        kept.append((fields, condition))
    return kept


def _check_unique_values(
    model: Any,
    items: list[dict[str, Any]],
    keys: _Keys,
    skipped: set[str],
    *,
    registry_row: bool = False,
) -> None:
    opts = model._meta
    alias = router.db_for_write(model)
    manager = model._base_manager.db_manager(alias)
    where = f"the registry row ({opts.label})" if registry_row else opts.label
    for fields, condition in _unique_groups(model, keys, skipped):
        checked = items
        if len(fields) == 1 and condition is None:
            # One query per 500 values; only the rows holding a taken one
            # are looked at again below (to name the value).
            field = fields[0]
            wanted = [field.to_python(item["fields"].get(field.name)) for item in items]
            taken = _taken(model, field.attname, [v for v in wanted if v is not None])
            checked = [
                item
                for item, value in zip(items, wanted, strict=True)
                if value is not None and str(field.to_python(value)) in taken
            ]
        for item in checked:
            values = {f.attname: f.to_python(item["fields"].get(f.name)) for f in fields}
            if any(value is None for value in values.values()):
                continue  # NULLs never collide
            if condition is not None and not _meets(model, item, condition, alias):
                continue
            rows = manager.filter(**values)
            if condition is not None:
                rows = rows.filter(condition)
            if not rows.exists():
                continue
            names = ", ".join(f.name for f in fields)
            shown = (
                repr(next(iter(values.values())))
                if len(fields) == 1
                else repr(tuple(values.values()))
            )
            raise ArchiveRefused(
                f"{where}.{names}: {shown} is already taken (unique across tenants): free it "
                "or change it before importing; nothing was imported"
                if len(fields) == 1
                else f"{where} ({names}): {shown} is already taken (unique across tenants): "
                "free it or change it before importing; nothing was imported"
            )


def _meets(model: Any, item: dict[str, Any], condition: Any, alias: str) -> bool:
    """Whether the archive's row meets a unique constraint's ``condition``."""
    against: dict[str, Any] = {}
    for model_field in model._meta.concrete_fields:
        raw = item["pk"] if model_field.primary_key else item["fields"].get(model_field.name)
        typed = model_field.target_field if model_field.is_relation else model_field
        try:
            value = typed.to_python(raw)
        except ValidationError:
            value = raw
        expression = models.Value(value, output_field=typed)
        against[model_field.name] = expression
        against[model_field.attname] = expression
    try:
        return condition.check(against, using=alias)
    except Exception:  # a condition Django cannot evaluate alone: checked as if it held
        return True


# -- writing -------------------------------------------------------------------------------------


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


def _create_rows(entries: list[OwnedModel], keys: _Keys, tenant: TenantInfo) -> dict[str, int]:
    """Every row of the archive, each once the archive's rows it refers to
    (foreign keys, generic foreign keys, the parent row) exist: rounds over
    the models in dependency order until none is left."""
    pending = {e: list(keys.exported[e.model]) for e in entries if keys.exported[e.model]}
    created: dict[str, int] = {}
    while pending:
        progress = False
        for entry in list(pending):
            model = entry.model
            opts = model._meta
            tenant_fields = {f.name for f in entry.fields}
            parent_links = {f.name for f in opts.parents.values() if f is not None}
            mapped = keys.rows.setdefault(model, {})
            later = []
            for item in pending[entry]:
                obj = _build(model, item, keys, tenant, tenant_fields, parent_links)
                if obj is None:
                    later.append(item)
                    continue
                if parent_links:
                    obj.save_base(raw=True, force_insert=True)  # the parent rows exist already
                else:
                    obj.save(force_insert=True)
                mapped[_key(model, item["pk"])] = obj
                created[entry.label] = created.get(entry.label, 0) + 1
                progress = True
            if later:
                pending[entry] = later
            else:
                del pending[entry]
        if not progress:
            entry, items = next(iter(pending.items()))
            names = ", ".join(str(item["pk"]) for item in items[:5])
            raise ArchiveRefused(
                f"rows/{entry.label}.jsonl: rows {names} refer to rows the archive does not hold "
                "(or to each other in a circle)"
            )
    return created


def _build(
    model: Any,
    item: dict[str, Any],
    keys: _Keys,
    tenant: TenantInfo,
    tenant_fields: set[str],
    parent_links: set[str],
) -> models.Model | None:
    """The new row of the archive's ``item``, or None while a row of the
    archive it refers to is not created yet."""
    opts = model._meta
    values: dict[str, Any] = {}
    fields = item["fields"]
    for model_field in opts.local_concrete_fields if parent_links else opts.concrete_fields:
        name = model_field.name
        is_key = model_field.primary_key and name not in parent_links
        if is_key and not model_field.is_relation:
            if _generated(model_field):
                continue
            old = model_field.to_python(item["pk"])
            if str(old) in keys.regenerate.get(model, ()):
                values[model_field.attname] = model_field.get_default()
            else:
                values[model_field.attname] = old
            continue
        raw = item["pk"] if (name in parent_links or is_key) else fields.get(name)
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
            target = model_field.related_model
            if target is _content_types() and model_field.target_field.primary_key:
                values[model_field.attname] = keys.content_type(raw)  # by its name
                continue
            new = keys.new(target, model_field, raw)
            if new is _missing:
                if _held_later(keys, target, model_field, raw):
                    return None  # a row of the archive not created yet
                raise ArchiveRefused(
                    f"rows/{opts.label}.jsonl: row {item['pk']} refers to "
                    f"{target._meta.label} {raw!r}, which the archive lacks"
                )
            values[model_field.attname] = new
            continue
        if name in fields:
            values[model_field.attname] = model_field.to_python(raw)
    alias = router.db_for_write(model)
    for _generic, ct_field, fk_field in _generic_keys(model):
        content_type = values.get(ct_field.attname)
        old = fields.get(fk_field.name)
        if content_type is None or old is None:
            continue
        target = _content_model(alias, content_type)
        if target is None or not keys.owned(target):
            continue  # a shared model's row: kept
        concrete = target._meta.concrete_model
        row = keys.rows.get(concrete, {}).get(_key(concrete, old))
        if row is None:
            return None  # checked before writing: the archive holds it
        values[fk_field.attname] = fk_field.to_python(row.pk)
    return model(**values)


def _held_later(keys: _Keys, target: Any, field: Any, old: Any) -> bool:
    """Whether the archive holds the row ``old`` of ``target`` (referred to
    by ``field``) that is not created yet."""
    concrete = target._meta.concrete_model
    if field.target_field.primary_key:
        return keys.in_archive(concrete, old)
    return any(
        str(item["fields"].get(field.target_field.name)) == str(old)
        for item in keys.exported.get(concrete, [])
    )


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
