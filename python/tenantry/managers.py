"""Querysets scoped to the current tenant, failing closed.

    class Item(models.Model):
        tenant_id = models.CharField(max_length=128, db_index=True)
        objects = TenantManager(tenant_field="tenant_id")

Every query through the manager (``all``, ``filter``, ``get``, ``count``,
``update``, ``delete``, related managers) is filtered to the tenant bound by
the middleware, a ``TenantMixin`` view, djust's WebSocket events or
``tenant_context()``. With no tenant bound it raises ``TenantNotSetError``
(``TENANT_STRICT = "raise"``, the default) or returns ``.none()``
(``"empty"``); it never queries ``tenant IS NULL``. ``create()`` fills the
tenant field and refuses another tenant's value; ``update()`` refuses to move
rows to another tenant. ``unscoped(reason=...)`` is the audited escape hatch.

``tenant_field`` may be a plain column holding the id (``tenant_id``) or a
``ForeignKey`` to your tenant model: the row is matched by ``TenantInfo.raw``
when it is an instance of that model, else by the key column (the FK's
``to_field``, e.g. ``to_field="slug"``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from . import audit, conf
from ._core import TenantInfo, TenantNotSetError
from .context import get_current_tenant
from .db.querysets import RLSScopeMixin
from .db.rls import BYPASS

__all__ = ["TenantManager", "TenantQuerySet", "scoped_queryset", "tenant_field_value"]

#: Marks a queryset made while no tenant was bound (it may not create rows).
_NO_TENANT = object()


def tenant_field_value(
    model: type[models.Model], field_name: str, tenant: TenantInfo
) -> tuple[str, Any]:
    """The ``(lookup, value)`` that pins ``model.field_name`` to ``tenant``."""
    field = model._meta.get_field(field_name)
    if field.many_to_one:
        raw = tenant.raw
        if raw is not None and isinstance(raw, field.related_model):
            return field.name, raw
        return field.attname, tenant.id
    return field.attname, tenant.id


def _value_matches(field: Any, value: Any, tenant: TenantInfo) -> bool:
    if isinstance(value, models.Model):
        value = getattr(value, field.target_field.attname)
    return value is not None and str(value) == tenant.id


class TenantQuerySet(RLSScopeMixin, models.QuerySet):
    _tenant_field = "tenant"
    _tenant: Any = None  # None: unscoped; a TenantInfo; or _NO_TENANT

    def _clone(self) -> TenantQuerySet:
        clone = super()._clone()
        clone._tenant_field = self._tenant_field
        clone._tenant = self._tenant
        return clone

    def _scope(self, tenant: TenantInfo) -> TenantQuerySet:
        name, value = tenant_field_value(self.model, self._tenant_field, tenant)
        scoped = self.filter(**{name: value})
        scoped._tenant = tenant
        return scoped

    def _writing_tenant(self, action: str) -> TenantInfo | None:
        if self._tenant is _NO_TENANT:
            raise TenantNotSetError(
                f"{self.model.__name__}.objects.{action}() needs a tenant: none is bound"
            )
        return self._tenant

    def _check_assignment(self, tenant: TenantInfo, values: dict[str, Any], action: str) -> None:
        field = self.model._meta.get_field(self._tenant_field)
        for key in {field.name, field.attname} & values.keys():
            if not _value_matches(field, values[key], tenant):
                raise ValueError(
                    f"{self.model.__name__}.objects.{action}(): {key}={values[key]!r} is not "
                    f"the bound tenant {tenant.id!r}"
                )

    def create(self, **kwargs: Any) -> Any:
        tenant = self._writing_tenant("create")
        if tenant is not None:
            self._check_assignment(tenant, kwargs, "create")
            field = self.model._meta.get_field(self._tenant_field)
            if field.name not in kwargs and field.attname not in kwargs:
                name, value = tenant_field_value(self.model, self._tenant_field, tenant)
                kwargs[name] = value
        return super().create(**kwargs)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        tenant = self._writing_tenant("bulk_create")
        objs = list(objs)
        if tenant is not None:
            field = self.model._meta.get_field(self._tenant_field)
            name, value = tenant_field_value(self.model, self._tenant_field, tenant)
            for obj in objs:
                current = getattr(obj, field.attname)
                if current is None or current == "":
                    setattr(obj, name, value)
                elif not _value_matches(field, current, tenant):
                    raise ValueError(
                        f"{self.model.__name__}.objects.bulk_create(): a row has "
                        f"{field.attname}={current!r}, not the bound tenant {tenant.id!r}"
                    )
        return super().bulk_create(objs, *args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        # With no tenant (TENANT_STRICT="empty") this queryset is .none(): a no-op.
        if isinstance(self._tenant, TenantInfo):
            self._check_assignment(self._tenant, kwargs, "update")
        return super().update(**kwargs)

    update.alters_data = True

    @classmethod
    def as_manager(cls, tenant_field: str = "tenant") -> TenantManager:  # type: ignore[override]
        manager = TenantManager.from_queryset(cls)(tenant_field=tenant_field)
        manager._built_with_as_manager = True
        return manager

    as_manager.queryset_only = True  # type: ignore[attr-defined]


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    """Scopes every query to the current tenant (see the module docs)."""

    def __init__(self, *args: Any, tenant_field: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tenant_field = tenant_field

    @property
    def tenant_field(self) -> str:
        if self._tenant_field is not None:
            return self._tenant_field
        # Related managers are built from the manager's class, not the
        # instance: take the field from the model's own tenant manager.
        default = getattr(self.model, "_default_manager", None)
        if default is not None and default is not self and isinstance(default, TenantManager):
            return default.tenant_field
        return "tenant"

    def _base(self) -> TenantQuerySet:
        qs = super().get_queryset()
        qs._tenant_field = self.tenant_field
        return qs

    def get_queryset(self) -> TenantQuerySet:
        tenant = get_current_tenant()
        if tenant is not None:
            return self._base()._scope(tenant)
        return self._no_tenant(f"{self.model.__name__}.objects")

    def _no_tenant(self, what: str) -> TenantQuerySet:
        if conf.current().strict == "empty":
            empty = self._base().none()
            empty._tenant = _NO_TENANT
            return empty
        raise TenantNotSetError(
            f"{what} is tenant-scoped and no tenant is bound: use TenantMiddleware, "
            "a TenantMixin view, tenant_context(...), or .unscoped(reason=...)"
        )

    def for_tenant(self, tenant: TenantInfo | str | None) -> TenantQuerySet:
        """Rows of ``tenant`` (given explicitly, whatever is bound)."""
        if tenant is None:
            return self._no_tenant(f"{self.model.__name__}.objects.for_tenant(None)")
        if not isinstance(tenant, TenantInfo):
            tenant = TenantInfo(tenant)
        scoped = self._base()._scope(tenant)
        scoped._rls_scope = (tenant.id, "")  # row-level security sees this tenant too
        return scoped

    def unscoped(self, reason: str = "") -> TenantQuerySet:
        """Every tenant's rows. Audited (``queryset.unscoped``) with ``reason``."""
        audit.emit(
            "queryset.unscoped",
            tenant=get_current_tenant(),
            level=logging.WARNING,
            model=self.model._meta.label,
            reason=reason or "(no reason given)",
        )
        everything = self._base()
        everything._rls_scope = BYPASS  # its queries pass row-level security too
        return everything

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        try:
            self.model._meta.get_field(self.tenant_field)
        except FieldDoesNotExist:
            errors.append(
                checks.Error(
                    f"{self.model._meta.label}.{self.name} scopes by tenant_field="
                    f"{self.tenant_field!r}, which is not a field of the model.",
                    obj=self.model,
                    id="tenantry.E200",
                )
            )
        return errors


def scoped_queryset(model: type[models.Model], tenant_field: str, tenant: TenantInfo | None) -> Any:
    """``model``'s rows of ``tenant`` (``.none()`` for no tenant), whatever
    manager the model uses, without touching the bound tenant."""
    manager = model._default_manager
    base = manager._base() if isinstance(manager, TenantManager) else manager.all()
    if tenant is None:
        return base.none()
    name, value = tenant_field_value(model, tenant_field, tenant)
    return base.filter(**{name: value})
