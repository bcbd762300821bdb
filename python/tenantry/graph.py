"""The model graph the ORM isolation rules are derived from
(docs/querysets.md#how-the-wall-is-built).

A *scoped model* holds rows of one tenant each. It is scoped by

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

from django.core.exceptions import FieldDoesNotExist
from django.db import models

__all__ = ["Guard", "Scope", "build", "guard_of", "problems", "scope_of", "scoping_managers"]


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
        "relations",
        "remembered",
        "scope",
    )

    def __init__(self, model: type[models.Model]) -> None:
        opts = model._meta
        self.model = model
        self.scope = scope_of(model)
        tenant_field = None if self.scope is None else self.scope.field
        #: Concrete FK/OneToOne fields to a scoped model: ``(field, target scope)``.
        self.relations: tuple[tuple[Any, Scope], ...] = tuple(
            (field, target)
            for field in opts.concrete_fields
            if field.is_relation
            and (field.many_to_one or field.one_to_one)
            and field is not tenant_field
            and not field.remote_field.parent_link
            and (target := scope_of(field.related_model)) is not None
        )
        #: Generic foreign keys: ``(gfk, content type field, object id field)``.
        self.generics: tuple[tuple[Any, Any, Any], ...] = tuple(_generics(model))
        #: A link table (a many-to-many ``through`` model, not scoped
        #: itself): the foreign keys to scoped models that make a row a
        #: tenant's. UPDATE and DELETE keep to rows whose ends are the tenant's.
        self.ends: tuple[tuple[Any, Scope], ...] = ()
        if self.scope is None and _is_link(model):
            self.ends = self.relations
        #: Primary-key attnames of each table of the row (multi-table
        #: inheritance: the child's link, then each parent's key).
        concrete = opts.concrete_model
        self.keys: tuple[str, ...] = tuple(
            dict.fromkeys(
                m._meta.pk.attname for m in (concrete, *concrete._meta.get_parent_list())
            )
        )
        #: Scoped models whose rows a key of this model names, one per
        #: table holding a tenant column (filled by ``_family``).
        self.family: tuple[Scope, ...] = ()
        #: An unscoped multi-table parent: its scoped descendants, whose
        #: rows share its rows. UPDATE and DELETE keep to rows no other
        #: tenant's descendant shares (filled by ``_heirs``).
        self.heirs: tuple[Scope, ...] = ()
        attnames = [field.attname for field, _ in self.relations]
        for _, ct, fk in self.generics:
            attnames += [ct.attname, fk.attname]
        if self.scope is not None:
            attnames.append(self.scope.attname)
        #: What ``from_db`` remembers of each row: keys, tenant, references.
        self.remembered: tuple[str, ...] = tuple(dict.fromkeys((*self.keys, *attnames)))

    @property
    def watched(self) -> bool:
        """Whether the rules have anything to look at for this model."""
        return bool(self.scope or self.relations or self.generics or self.family or self.heirs)

    def __repr__(self) -> str:
        return f"<Guard {self.model._meta.label}>"


def _unguardable(field: Any) -> bool:
    """A forward relation to a scoped model of a kind the rules cannot check
    (a multi-column ForeignObject, a custom virtual relation)."""
    from django.db.models import ForeignObjectRel

    if not field.is_relation or isinstance(field, ForeignObjectRel) or field.many_to_many:
        return False
    if isinstance(field, models.ForeignKey):
        return False
    if getattr(field, "ct_field", None) or getattr(field, "object_id_field_name", None):
        return False  # GenericForeignKey (guarded), GenericRelation (its holder's columns)
    target = getattr(field, "related_model", None)
    return isinstance(target, type) and scope_of(target) is not None


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
_guards: dict[type, Guard | None] = {}
_through: list[frozenset[type]] = []
_families: dict[type, tuple[type, ...]] = {}


def clear() -> None:
    """Forget everything (a model was added: tests)."""
    _scopes.clear()
    _guards.clear()
    _through.clear()
    _families.clear()


def _through_models() -> frozenset[type]:
    if not _through:
        from django.apps import apps

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


def guard_of(model: Any) -> Guard | None:
    """``model``'s :class:`Guard`, or None when nothing of it needs one."""
    try:
        return _guards[model]
    except (KeyError, TypeError):
        pass
    from django.apps import apps

    if not apps.models_ready or not isinstance(model, type):
        return None
    guard = Guard(model)
    guard.family = _family(model)
    if guard.scope is None and not model._meta.proxy:
        guard.heirs = _heirs(model)
    found = guard if guard.watched or guard.ends else None
    _guards[model] = found
    return found


def _root(model: type[models.Model]) -> type:
    parents = [p for p in model._meta.get_parent_list() if not p._meta.parents]
    return parents[0] if parents else model._meta.concrete_model


def _family(model: type[models.Model]) -> tuple[Scope, ...]:
    """The scoped concrete models whose tables share ``model``'s root table
    (multi-table inheritance), one per table holding a tenant column; a key
    of ``model`` names a row of each."""
    model = model._meta.concrete_model
    if not (model._meta.parents or _families_of().get(model)):
        scope = scope_of(model)
        return () if scope is None else (scope,)
    root = _root(model)
    members = (root, *_families_of().get(root, ()))
    by_table: dict[type, Scope] = {}
    for member in members:
        scope = scope_of(member)
        if scope is not None:
            by_table.setdefault(scope.table, scope)
    return tuple(by_table.values())


def _heirs(model: type[models.Model]) -> tuple[Scope, ...]:
    """The scoped multi-table descendants of the unscoped ``model``, the
    nearest on each branch."""
    found: list[Scope] = []
    for child in _children(model):
        scope = scope_of(child)
        found += [scope] if scope is not None else list(_heirs(child))
    return tuple(found)


def _children(model: type[models.Model]) -> list[type]:
    from django.apps import apps

    return [
        m
        for m in apps.get_models()
        if not m._meta.proxy and model in m._meta.parents and m._meta.parents[model] is not None
    ]


def _families_of() -> dict[type, tuple[type, ...]]:
    """Root model → its multi-table-inheritance descendants (concrete)."""
    if not _families:
        from django.apps import apps

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
    from django.apps import apps

    clear()
    return [g for m in apps.get_models(include_auto_created=True) if (g := guard_of(m))]


# -- what cannot be guarded (manage.py check) ---------------------------------------


def problems(of: Any = None) -> list[tuple[str, Any, str]]:
    """``(id, model, message)`` for every relation to a scoped model that
    cannot be guarded, and every model whose managers escape its scoping
    (every installed model, or those ``of``)."""
    from django.apps import apps

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
