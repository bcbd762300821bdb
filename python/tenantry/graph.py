"""The model graph the ORM isolation rules are derived from
(docs/querysets.md#how-the-wall-is-built).

**Whose row is this** (:func:`owner_of`, the one rule; ``tenantry.ownership``
lists the same models for deletion). A *tenant-owned* model holds rows of one
tenant each, named by its *tenant field*, found in this order:

1. a :class:`~tenantry.managers.TenantManager`'s tenant field (a *scoped*
   model, below);
2. a field declared with ``tenantry.ownership.declare()``;
3. ``TENANT_DOMAIN_TENANT_FIELD`` of ``TENANT_DOMAIN_MODEL``;
4. the detection rule (:func:`detected_tenant_fields`): a foreign key to
   ``TENANT_MODEL`` that owns its rows, or a ``tenant_id``/``tenant`` column;

and, for a proxy, its concrete model's; for a multi-table child, its
nearest owned parent's. An unmanaged model is owned only when declared.
Every write rule of :mod:`tenantry.isolation` applies to every owned model,
whatever managers it has. ``TENANT_MODEL`` itself is listed for deletion
(:func:`tenant_fields`, source ``"registry"``) but is no tenant's data: its
rows are the tenants (``tenantry.lifecycle`` guards them).

A *scoped model* is an owned model whose reads are scoped too. It is scoped by

* a :class:`~tenantry.managers.TenantManager` among its managers (the
  default one wins when several scope), or, when it has none,
* its concrete model, for a proxy (a proxy never escapes the scoping of its
  rows, whatever managers it declares), or
* its nearest scoped parent, for a multi-table-inheritance child.

For every model, scoped or not, its :class:`Guard` says what the rules must
look at when it is written: its tenant field (scoped models), the concrete
foreign keys and one-to-ones that reach a scoped model (parent links aside),
its generic foreign keys (their target is only known per row), the scoped
ends of a many-to-many link table, and the scoped models sharing its rows
through multi-table inheritance. :func:`build` walks the whole graph once at
start-up (``AppConfig.ready``); models made later (tests) get theirs on first
use. :func:`problems` lists what cannot be guarded, for ``manage.py check``.

TenantManager is recognised by a class attribute (``scopes_by_tenant``), so
this module imports nothing of tenantry's ORM layer.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.db.models import ForeignObjectRel

from . import conf

__all__ = [
    "Guard",
    "Held",
    "Scope",
    "build",
    "declare",
    "detected_tenant_fields",
    "guard_of",
    "held_table",
    "owner_of",
    "problems",
    "scope_of",
    "scoping_managers",
    "unscoped_owned",
]

#: Column names that mark a tenant field by convention (tenantry's default
#: tenant field, and the plain name).
TENANT_COLUMNS = ("tenant_id", "tenant")
#: ``on_delete`` handlers of a foreign key to the registry whose rows are the
#: tenant's own (the others clear or reset the reference).
_OWNING = (models.CASCADE, models.PROTECT, models.RESTRICT, models.DO_NOTHING)


def scoping_managers(model: type[models.Model]) -> list[Any]:
    """``model``'s own managers that scope by tenant (TenantManager)."""
    return [m for m in model._meta.managers if getattr(m, "scopes_by_tenant", False)]


class Scope:
    """Whose rows a scoped model holds: its tenant field (built once)."""

    __slots__ = ("attname", "field", "model", "pk_attname", "table")

    def __init__(self, model: type[models.Model], field: Any) -> None:
        self.model = model
        self.field = field
        self.attname = field.attname
        self.pk_attname = model._meta.pk.attname
        #: The concrete model whose table holds the tenant column.
        self.table = field.model._meta.concrete_model

    @property
    def label(self) -> str:
        return self.model._meta.label

    def __repr__(self) -> str:
        return f"<Scope {self.label}.{self.field.name}>"


class Guard:
    """What the isolation rules look at when ``model`` is written."""

    __slots__ = (
        "ends",
        "family",
        "generics",
        "heirs",
        "keys",
        "model",
        "owner",
        "relations",
        "remembered",
        "shared_parents",
    )

    def __init__(self, model: type[models.Model]) -> None:
        opts = model._meta
        self.model = model
        #: Whose rows the model holds: its tenant field (owned models).
        self.owner = owner_of(model)
        tenant_field = None if self.owner is None else self.owner.field
        #: Concrete FK/OneToOne fields to an owned model: ``(field, target owner)``.
        self.relations: tuple[tuple[Any, Scope], ...] = tuple(
            (field, target)
            for field in opts.concrete_fields
            if field.is_relation
            and (field.many_to_one or field.one_to_one)
            and field is not tenant_field
            and not field.remote_field.parent_link
            and (target := owner_of(field.related_model)) is not None
        )
        #: Concrete FK/OneToOne fields to an unowned multi-table parent whose
        #: rows an owned child may share: ``(field, the child owners)``. A
        #: reference to such a row is a reference to the child's tenant's row.
        self.shared_parents: tuple[tuple[Any, tuple[Scope, ...]], ...] = tuple(
            (field, heirs)
            for field in opts.concrete_fields
            if field.is_relation
            and (field.many_to_one or field.one_to_one)
            and not field.remote_field.parent_link
            and owner_of(field.related_model) is None
            and (heirs := _heirs(field.related_model._meta.concrete_model))
        )
        #: Generic foreign keys: ``(gfk, content type field, object id field)``.
        self.generics: tuple[tuple[Any, Any, Any], ...] = tuple(_generics(model))
        #: A link table (a many-to-many ``through`` model, not owned
        #: itself): the foreign keys to owned models that make a row a
        #: tenant's. UPDATE and DELETE keep to rows whose ends are the tenant's.
        self.ends: tuple[tuple[Any, Scope], ...] = ()
        if self.owner is None and _is_link(model):
            self.ends = self.relations
        #: Primary-key attnames of each table of the row (multi-table
        #: inheritance: the child's link, then each parent's key).
        concrete = opts.concrete_model
        self.keys: tuple[str, ...] = tuple(
            dict.fromkeys(m._meta.pk.attname for m in (concrete, *concrete._meta.get_parent_list()))
        )
        #: Owned models whose rows a key of this model names, one per
        #: table holding a tenant column (filled by ``_family``).
        self.family: tuple[Scope, ...] = ()
        #: An unowned multi-table parent: its owned descendants, whose
        #: rows share its rows. UPDATE and DELETE keep to rows no other
        #: tenant's descendant shares (filled by ``_heirs``).
        self.heirs: tuple[Scope, ...] = ()
        attnames = [field.attname for field, _ in self.relations]
        attnames += [field.attname for field, _ in self.shared_parents]
        for _, ct, fk in self.generics:
            attnames += [ct.attname, fk.attname]
        if self.owner is not None:
            attnames.append(self.owner.attname)
        #: What ``from_db`` remembers of each row: keys, tenant, references,
        #: and the columns other models refer to by ``to_field`` (a loaded
        #: row vouches only for the values it was loaded with).
        self.remembered: tuple[str, ...] = tuple(
            dict.fromkeys((*self.keys, *attnames, *_referenced_attnames(model)))
        )

    @property
    def watched(self) -> bool:
        """Whether the rules have anything to look at for this model."""
        return bool(
            self.owner
            or self.relations
            or self.shared_parents
            or self.generics
            or self.family
            or self.heirs
        )

    def __repr__(self) -> str:
        return f"<Guard {self.model._meta.label}>"


def _unguardable(field: Any) -> bool:
    """A forward relation to a scoped model of a kind the rules cannot check
    (a multi-column ForeignObject, a custom virtual relation)."""
    if not field.is_relation or isinstance(field, ForeignObjectRel) or field.many_to_many:
        return False
    if isinstance(field, models.ForeignKey):
        return False
    if getattr(field, "ct_field", None) or getattr(field, "object_id_field_name", None):
        return False  # GenericForeignKey (guarded), GenericRelation (its holder's columns)
    target = getattr(field, "related_model", None)
    return isinstance(target, type) and owner_of(target) is not None


def _generics(model: type[models.Model]) -> list[tuple[Any, Any, Any]]:
    found = []
    for field in model._meta.private_fields:
        ct_name = getattr(field, "ct_field", None)
        fk_name = getattr(field, "fk_field", None)
        if field.is_relation and field.many_to_one and ct_name and fk_name:
            try:
                ct = model._meta.get_field(ct_name)
                fk = model._meta.get_field(fk_name)
            except FieldDoesNotExist:  # Django's own checks report it
                continue
            found.append((field, ct, fk))
    return found


def _is_link(model: type[models.Model]) -> bool:
    """Whether ``model`` is the ``through`` table of a many-to-many field."""
    return model in _through_models()


# -- the caches -------------------------------------------------------------------

_scopes: dict[type, Scope | None] = {}
_owners: dict[type, Scope | None] = {}
_guards: dict[type, Guard | None] = {}
_through: list[frozenset[type]] = []
_families: dict[type, tuple[type, ...]] = {}
_heirs_of: dict[type, tuple[Scope, ...]] = {}
_referenced: dict[type, tuple[str, ...]] = {}
_held: dict[str, Held | None] = {}
#: ``label_lower`` → the field declared with ``tenantry.ownership.declare()``.
_declared: dict[str, str] = {}
#: Called with each model whose guard is made (``tenantry.isolation``
#: remembers what its rows are loaded with), so a model owned after a
#: later declaration or config change is guarded like one found at start-up.
guard_hooks: list[Any] = []


def clear() -> None:
    """Forget everything (a model was added, a declaration or the config
    changed: derived again on next use)."""
    _scopes.clear()
    _owners.clear()
    _guards.clear()
    _through.clear()
    _families.clear()
    _heirs_of.clear()
    _referenced.clear()
    _held.clear()


def _through_models() -> frozenset[type]:
    if not _through:
        found = set()
        for model in apps.get_models(include_auto_created=True):
            for field in model._meta.local_many_to_many:
                through = field.remote_field.through
                if isinstance(through, type):
                    found.add(through)
        _through.append(frozenset(found))
    return _through[0]


def _own_tenant_field(model: type[models.Model]) -> str | None:
    scoping = scoping_managers(model)
    if not scoping:
        return None
    default = model._meta.default_manager
    manager = default if default in scoping else scoping[0]
    return manager.tenant_field


def scope_of(model: Any) -> Scope | None:
    """``model``'s :class:`Scope`, or None when its rows are no tenant's
    (cached per model class)."""
    try:
        return _scopes[model]
    except (KeyError, TypeError):
        pass
    scope = None
    if isinstance(model, type) and issubclass(model, models.Model) and not model._meta.abstract:
        _scopes[model] = None  # a model scoped by itself through a cycle is not
        scope = _compute_scope(model)
        _scopes[model] = scope
    return scope


def _compute_scope(model: type[models.Model]) -> Scope | None:
    opts = model._meta
    name = _own_tenant_field(model)
    if name is None:
        inherited = None
        if opts.proxy:
            inherited = scope_of(opts.concrete_model)
        else:
            for parent in opts.get_parent_list():
                inherited = scope_of(parent)
                if inherited is not None:
                    break
        if inherited is None:
            return None
        name = inherited.field.name
    try:
        return Scope(model, opts.get_field(name))
    except FieldDoesNotExist:  # reported by the manager's check (tenantry.E200)
        return None


# -- whose row is this ----------------------------------------------------------------


def declare(label: str, field: str) -> None:
    """Record that the rows of the model ``label`` (``app_label.model``,
    lower case) belong to the tenant named by ``field``
    (``tenantry.ownership.declare``)."""
    _declared[label] = field
    clear()


def undeclare(label: str) -> None:
    _declared.pop(label, None)
    clear()


def declared() -> dict[str, str]:
    return dict(_declared)


def registry_model() -> tuple[type[models.Model] | None, str | None]:
    """``TENANT_MODEL`` and its id field, or ``(None, None)``."""
    found = conf.current().tenant_model
    if found is None:
        return None, None
    label, id_field = found
    return apps.get_model(label), id_field


def detected_tenant_fields(model: type[models.Model]) -> tuple[Any, ...]:
    """The fields of ``model`` that tie a row to a tenant by tenantry's
    detection rule: foreign keys to ``TENANT_MODEL`` that own their rows
    (``on_delete`` CASCADE, PROTECT, RESTRICT or DO_NOTHING), and a
    non-relation ``tenant_id`` or ``tenant`` column. Managers, declarations
    and the config's domain model are not consulted here."""
    registry, _ = registry_model()
    found = []
    for field in model._meta.concrete_fields:
        if field.is_relation:
            if (
                registry is not None
                and (field.many_to_one or field.one_to_one)
                and not getattr(field.remote_field, "parent_link", False)
                and field.related_model is registry
                and field.remote_field.on_delete in _OWNING
            ):
                found.append(field)
        elif field.column in TENANT_COLUMNS:
            found.append(field)
    return tuple(found)


def tenant_fields(model: type[models.Model]) -> tuple[tuple[Any, str], ...]:
    """Every field of the concrete, non-proxy ``model`` that names the
    tenant its rows belong to, with how it was found (``"manager"``,
    ``"declared"``, ``"registry"``, ``"domain"``, ``"detected"``), the
    tenant field first. ``ImproperlyConfigured`` for a declared or
    configured field the model does not have."""
    opts = model._meta

    def field(name: str, why: str) -> Any:
        try:
            return opts.get_field(name)
        except FieldDoesNotExist:
            raise ImproperlyConfigured(f"{opts.label} has no field {name!r} ({why})") from None

    label = opts.label_lower
    registry, id_field = registry_model()
    if registry is not None and model is registry:
        return ((field(id_field, "TENANT_MODEL_ID_FIELD"), "registry"),)
    if label in _declared:
        return ((field(_declared[label], "ownership.declare"), "declared"),)
    if not opts.managed:
        return ()
    found: list[tuple[Any, str]] = []
    scope = scope_of(model)
    if scope is not None:
        found.append((scope.field, "manager"))
    config = conf.current()
    domain_label = config.domain_model
    if domain_label and label == domain_label.lower():
        found.append((field(config.domain_tenant_field, "TENANT_DOMAIN_TENANT_FIELD"), "domain"))
    if not found:
        inherited = _inherited_owner(model)
        if inherited is not None:
            found.append((opts.get_field(inherited.field.name), "inherited"))
    found += [(f, "detected") for f in detected_tenant_fields(model)]
    unique: dict[Any, str] = {}
    for f, how in found:
        unique.setdefault(f, how)
    return tuple(unique.items())


def _inherited_owner(model: type[models.Model]) -> Scope | None:
    for parent in model._meta.get_parent_list():
        inherited = owner_of(parent)
        if inherited is not None:
            return inherited
    return None


def owner_of(model: Any) -> Scope | None:
    """Whose rows ``model`` holds: its tenant field as a :class:`Scope`, or
    None when its rows are no tenant's (see the module docs; cached per
    model class)."""
    try:
        return _owners[model]
    except (KeyError, TypeError):
        pass
    owner = None
    if isinstance(model, type) and issubclass(model, models.Model) and not model._meta.abstract:
        _owners[model] = None  # a model owned through itself by a cycle is not
        owner = _compute_owner(model)
        _owners[model] = owner
    return owner


def _compute_owner(model: type[models.Model]) -> Scope | None:
    opts = model._meta
    scope = scope_of(model)
    if scope is not None:
        return scope
    if opts.swapped or opts.auto_created:
        return None
    if opts.proxy:
        concrete = owner_of(opts.concrete_model)
        return None if concrete is None else Scope(model, opts.get_field(concrete.field.name))
    try:
        fields = tenant_fields(model)
    except (ImproperlyConfigured, LookupError, ValueError):
        return None  # a bad declaration or TENANT_MODEL: reported where the registry is listed
    if not fields or fields[0][1] == "registry":
        # A registry row is a tenant, not a tenant's data: making one while
        # another tenant is bound is an ordinary sign-up; its id never
        # changes and it is deleted by delete_tenant() (tenantry.lifecycle).
        return None
    return Scope(model, fields[0][0])


def guard_of(model: Any) -> Guard | None:
    """``model``'s :class:`Guard`, or None when nothing of it needs one."""
    try:
        return _guards[model]
    except (KeyError, TypeError):
        pass
    if not apps.models_ready or not isinstance(model, type):
        return None
    guard = Guard(model)
    guard.family = _family(model)
    if guard.owner is None and not model._meta.proxy:
        guard.heirs = _heirs(model)
    found = guard if guard.watched or guard.ends else None
    _guards[model] = found
    if found is not None:
        for hook in guard_hooks:
            hook(model)
    return found


def _referenced_attnames(model: type[models.Model]) -> tuple[str, ...]:
    """Attnames of ``model``'s columns that a foreign key somewhere refers
    to by ``to_field`` (other than the primary key)."""
    if not _referenced:
        found: dict[type, set[str]] = {}
        for other in apps.get_models(include_auto_created=True):
            for field in other._meta.concrete_fields:
                if field.is_relation and (field.many_to_one or field.one_to_one):
                    target = field.target_field
                    if not target.primary_key:
                        found.setdefault(target.model, set()).add(target.attname)
        _referenced.update({m: tuple(sorted(names)) for m, names in found.items()})
        _referenced[object] = ()  # built
    names: list[str] = []
    for m in (model, *model._meta.get_parent_list()):
        names += _referenced.get(m._meta.concrete_model, ())
    return tuple(names)


def _root(model: type[models.Model]) -> type:
    parents = [p for p in model._meta.get_parent_list() if not p._meta.parents]
    return parents[0] if parents else model._meta.concrete_model


def _family(model: type[models.Model]) -> tuple[Scope, ...]:
    """The owned concrete models whose tables share ``model``'s root table
    (multi-table inheritance), one per table holding a tenant column; a key
    of ``model`` names a row of each."""
    model = model._meta.concrete_model
    if not (model._meta.parents or _families_of().get(model)):
        owner = owner_of(model)
        return () if owner is None else (owner,)
    root = _root(model)
    members = (root, *_families_of().get(root, ()))
    by_table: dict[type, Scope] = {}
    for member in members:
        owner = owner_of(member)
        if owner is not None:
            by_table.setdefault(owner.table, owner)
    return tuple(by_table.values())


def _heirs(model: type[models.Model]) -> tuple[Scope, ...]:
    """The owned multi-table descendants of the unowned ``model``, the
    nearest on each branch."""
    try:
        return _heirs_of[model]
    except KeyError:
        pass
    found: list[Scope] = []
    for child in _children(model):
        owner = owner_of(child)
        found += [owner] if owner is not None else list(_heirs(child))
    _heirs_of[model] = tuple(found)
    return _heirs_of[model]


def heirs_of(model: Any) -> tuple[Scope, ...]:
    """The owned multi-table descendants of ``model`` when it is an unowned
    model (their rows share its rows), else ``()``."""
    if not isinstance(model, type) or owner_of(model) is not None:
        return ()
    return _heirs(model._meta.concrete_model)


def _children(model: type[models.Model]) -> list[type]:
    return [
        m
        for m in apps.get_models()
        if not m._meta.proxy and model in m._meta.parents and m._meta.parents[model] is not None
    ]


def _families_of() -> dict[type, tuple[type, ...]]:
    """Root model → its multi-table-inheritance descendants (concrete)."""
    if not _families:
        found: dict[type, list[type]] = {}
        for model in apps.get_models():
            if model._meta.proxy or not model._meta.parents:
                continue
            found.setdefault(_root(model), []).append(model)
        _families.update({root: tuple(kids) for root, kids in found.items()})
        if not _families:
            _families[object] = ()  # built, and empty
    return _families


def build() -> list[Guard]:
    """Walk every model once (``AppConfig.ready``); the guards of the models
    that need one."""
    clear()
    return [g for m in apps.get_models(include_auto_created=True) if (g := guard_of(m))]


# -- the tables a read keeps to a tenant's rows (tenantry.joins) ----------------------


class Held:
    """How a query keeps a table's rows to one tenant's: by the table's own
    tenant column (``field``), or, for a table without one (a multi-table
    child of an owned model, a many-to-many link table), by keys that must
    name a tenant's row of another table (``keys``: ``(column, nullable,
    target Held, target column)``)."""

    __slots__ = ("ends", "field", "keys", "model", "root", "table")

    def __init__(
        self,
        model: Any,
        table: str,
        *,
        field: Any = None,
        keys: tuple[tuple[str, bool, Held, str], ...] = (),
        root: Any = None,
        ends: frozenset[Any] = frozenset(),
    ) -> None:
        self.model = model
        self.table = table
        #: The tenant column (a direct table), else None.
        self.field = field
        self.keys = keys
        #: The multi-table family's root model: tables of one family share keys.
        self.root = root
        #: A link table's foreign keys to owned rows.
        self.ends = ends

    def __repr__(self) -> str:
        how = self.field.column if self.field is not None else [k[0] for k in self.keys]
        return f"<Held {self.table} {how}>"


def held_table(table: str) -> Held | None:
    """The :class:`Held` of the database table ``table``, or None for a
    table of no tenant (shared, or an unowned multi-table parent)."""
    if not _held:
        _build_held()
    return _held.get(table)


def _build_held() -> None:
    found: dict[str, Held | None] = {}

    def of(model: type[models.Model]) -> Held | None:
        model = model._meta.concrete_model
        table = model._meta.db_table
        if table in found:
            return found[table]
        found[table] = None  # a cycle holds nothing
        owner = owner_of(model)
        held = None
        if owner is not None:
            if owner.table is model:
                held = Held(model, table, field=owner.field, root=_root(model))
            else:
                parent = of(owner.table)
                if parent is not None:
                    pk = owner.table._meta.pk.column
                    held = Held(
                        model,
                        table,
                        keys=((model._meta.pk.column, False, parent, pk),),
                        root=_root(model),
                    )
        else:
            guard = guard_of(model)
            if guard is not None and guard.ends:
                keys = []
                for fk, _target in guard.ends:
                    target = of(fk.related_model)
                    if target is not None:
                        keys.append((fk.column, fk.null, target, fk.target_field.column))
                if keys:
                    held = Held(
                        model, table, keys=tuple(keys), ends=frozenset(fk for fk, _ in guard.ends)
                    )
        found[table] = held
        return held

    for model in apps.get_models(include_auto_created=True):
        if not model._meta.proxy:
            of(model)
    _held.update(found)
    _held[""] = None  # built


# -- what cannot be guarded (manage.py check) ---------------------------------------


def unscoped_owned(of: Any = None) -> list[tuple[Any, Any]]:
    """``(model, tenant field)`` for every model (of every installed one, or
    of ``of``) whose rows belong to a tenant but that no TenantManager scopes:
    its managers read every tenant's rows (its writes are guarded all the
    same). The custom-domain model is left out: the domain resolver reads it
    across tenants on purpose; so are tenantry's own models (the stored
    audit trail: every read names its chain, docs/operations.md#audit-trail)."""
    domain = (conf.current().domain_model or "").lower()
    found = []
    for model in apps.get_models() if of is None else of:
        opts = model._meta
        if (
            opts.label_lower == domain
            or opts.app_label == "tenantry"
            or scope_of(model) is not None
        ):
            continue
        owner = owner_of(model)
        if owner is not None:
            found.append((model, owner.field))
    return found


def problems(of: Any = None) -> list[tuple[str, Any, str]]:
    """``(id, model, message)`` for every relation to a scoped model that
    cannot be guarded, and every model whose managers escape its scoping
    (every installed model, or those ``of``)."""
    found = []
    for model in apps.get_models(include_auto_created=True) if of is None else of:
        opts = model._meta
        scope = scope_of(model)
        if scope is not None and not scoping_managers(model):
            through = "its concrete model" if opts.proxy else "a parent"
            owner = scope.table._meta.label
            found.append(
                (
                    "tenantry.E202",
                    model,
                    f"{opts.label} holds rows of {owner}, scoped by tenant through {through}, "
                    f"but none of its managers is a TenantManager: "
                    f"{', '.join(repr(m.name) for m in opts.managers) or 'its managers'} "
                    "would read every tenant's rows. Give it a TenantManager (objects = "
                    f"TenantManager(tenant_field={scope.field.name!r})), or drop the managers "
                    "it declares so it inherits its parent's.",
                )
            )
        for field in opts.get_fields():
            if not _unguardable(field):
                continue
            target = field.related_model
            found.append(
                (
                    "tenantry.E201",
                    model,
                    f"{opts.label}.{field.name} is a {type(field).__name__} to the "
                    f"tenant-scoped {target._meta.label}: tenantry checks ForeignKey, "
                    "OneToOneField, ManyToManyField and GenericForeignKey references, not this "
                    "kind, so it cannot refuse one that names another tenant's row. Use one "
                    "of those kinds.",
                )
            )
    return found
