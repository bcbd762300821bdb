"""Which models hold a tenant's data: the tenant-owned-model registry.

A model is *tenant-owned* when each of its rows belongs to a tenant through
a field that holds the tenant's id, or points at its registry row. Deleting
a tenant (``tenantry.lifecycle``) removes the rows of every tenant-owned
model; exporting one walks the same list; the ORM's write rules
(``tenantry.isolation``) hold every owned model's rows to the bound tenant.
Whose row a row is has one rule, ``tenantry.graph.owner_of`` (this module
lists what it finds); it is found once, from the model graph and the config,
and found again when ``DJUST_CONFIG`` changes:

1. **Declared**: ``tenantry.ownership.declare("crm.Membership",
   field="org_slug")`` (call it in an ``AppConfig.ready``), for a model whose
   tenant field tenantry cannot guess: another name, or a model of a
   package you do not edit.
2. **A TenantManager**: its tenant field (``tenantry.graph.scope_of``).
3. **TENANT_DOMAIN_MODEL**: ``TENANT_DOMAIN_TENANT_FIELD``, whatever its type
   (a column of ids, or a foreign key to ``TENANT_MODEL``).
4. **The detection rule** (:func:`detected_tenant_fields`, one function in
   ``tenantry.graph``, so a check can warn about a tenant field without a
   ``TenantManager``):

   * a ``ForeignKey``/``OneToOneField`` to ``TENANT_MODEL`` whose
     ``on_delete`` is ``CASCADE``, ``PROTECT``, ``RESTRICT`` or
     ``DO_NOTHING`` (a ``SET_NULL``/``SET_DEFAULT``/``SET(...)`` reference is
     cleared by Django when the registry row goes: the row is not the
     tenant's, it only pointed at it);
   * a concrete field that is not a relation and whose column is
     ``tenant_id`` (tenantry's default tenant field name) or ``tenant``.

5. **TENANT_MODEL** itself, by ``TENANT_MODEL_ID_FIELD`` (deleted last).

Multi-table-inheritance children are owned when a parent is (they inherit
its tenant field) and come before it. Proxy models, swapped models and
auto-created many-to-many tables are not listed: their rows are the concrete
model's, or go with them by cascade. An unmanaged model (``managed =
False``, often a database view) is listed only when declared.

``tenantry.ownership.exclude("audit.Entry", reason=...)`` keeps a model out
of deletion: its rows outlive it (they are still their tenant's rows for the
write rules). Key such rows by the tenant's incarnation too
(``tenantry.lifecycle.incarnation``), so that a new tenant that takes the
id never sees them as its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from . import conf, graph
from .graph import TENANT_COLUMNS, detected_tenant_fields

__all__ = [
    "TENANT_COLUMNS",
    "OwnedModel",
    "declare",
    "detected_tenant_fields",
    "exclude",
    "owned_model",
    "owned_models",
]


@dataclass(frozen=True)
class OwnedModel:
    """A tenant-owned model and the fields that tie its rows to a tenant (a
    row is the tenant's when any of them names it)."""

    model: type[models.Model]
    fields: tuple[Any, ...]
    #: How it was found: "declared", "manager", "domain", "detected", "registry".
    source: str

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def is_registry(self) -> bool:
        return self.source == "registry"


_excluded: dict[str, str] = {}  # label_lower → reason
_lock = threading.Lock()
_cache: list[tuple[OwnedModel, ...]] = []


def _label(model: Any) -> str:
    if isinstance(model, str):
        return model.lower()
    return model._meta.label_lower


def declare(model: type[models.Model] | str, field: str) -> None:
    """Declare that ``model``'s rows belong to the tenant named by ``field``
    (its id, or a foreign key to ``TENANT_MODEL``). ``model`` is a class or
    an ``"app_label.Model"`` label; checked at first use."""
    if not isinstance(field, str) or not field:
        raise ValueError(f"ownership.declare({model!r}, field=...) takes a field name")
    with _lock:
        graph.declare(_label(model), field)
        _excluded.pop(_label(model), None)
        _cache.clear()


def exclude(model: type[models.Model] | str, reason: str) -> None:
    """Keep ``model`` out of the registry: its rows outlive a tenant's
    deletion. ``reason`` is required (it is shown in the certificate's
    notes); key such rows by incarnation."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"ownership.exclude({model!r}, reason=...) needs a reason")
    with _lock:
        _excluded[_label(model)] = reason
        graph.undeclare(_label(model))
        _cache.clear()


def excluded() -> dict[str, str]:
    """``{label: reason}`` of the models kept out with :func:`exclude`."""
    return dict(_excluded)


def _find(model: type[models.Model], registry: Any) -> OwnedModel | None:
    opts = model._meta
    if opts.label_lower in _excluded or opts.proxy or opts.swapped or opts.auto_created:
        return None
    found = graph.tenant_fields(model)
    if not found:
        return None
    fields = tuple(field for field, _how in found)
    how = found[0][1]
    if model is registry:
        source = "registry"
    elif any(h == "domain" for _, h in found):
        source = "domain"
    elif how in ("manager", "declared"):
        source = how
    else:
        source = "detected"
    return OwnedModel(model, fields, source)


def _dependencies(owned: Iterable[OwnedModel]) -> list[OwnedModel]:
    """``owned`` with every model before the models it points at (its rows
    go first, so a PROTECT or RESTRICT between two owned models never
    blocks), the registry last. A cycle keeps the remaining models in label
    order (Django's cascade handles what is left)."""
    pending = {entry.model: entry for entry in owned if not entry.is_registry}
    registry = [entry for entry in owned if entry.is_registry]
    targets = {
        model: {
            field.related_model
            for field in model._meta.concrete_fields
            if field.is_relation
            and field.related_model in pending
            and field.related_model is not model
        }
        for model in pending
    }
    ordered: list[OwnedModel] = []
    while pending:
        # A model nothing pending points at can go now.
        pointed = set().union(*(targets[m] for m in pending))
        ready = sorted((m for m in pending if m not in pointed), key=lambda m: m._meta.label)
        if not ready:
            ready = sorted(pending, key=lambda m: m._meta.label)[:1]
        for model in ready:
            ordered.append(pending.pop(model))
    return ordered + registry


def owned_models() -> tuple[OwnedModel, ...]:
    """Every tenant-owned model, in deletion order (found once per config)."""
    if _cache:
        return _cache[0]
    registry, _ = graph.registry_model()
    found = []
    for model in apps.get_models():
        entry = _find(model, registry)
        if entry is not None:
            found.append(entry)
    known = {entry.model._meta.label_lower for entry in found}
    missing = [label for label in graph.declared() if label not in known]
    if missing:
        raise ImproperlyConfigured(
            f"tenantry.ownership.declare() names {', '.join(sorted(missing))}: not installed, "
            "or a proxy/swapped model (declare the concrete model)"
        )
    ordered = tuple(_dependencies(found))
    with _lock:
        _cache[:] = [ordered]
    return ordered


def owned_model(model: type[models.Model] | str) -> OwnedModel | None:
    """The entry of ``model``, or None when it is not tenant-owned."""
    label = _label(model)
    return next((e for e in owned_models() if e.model._meta.label_lower == label), None)


def _forget() -> None:
    _cache.clear()


conf._reset_hooks.append(_forget)
