"""``TenantAdminMixin``: Django's admin, scoped to the bound tenant.

    from django.contrib import admin
    from tenantry.admin import TenantAdminMixin

    @admin.register(Article)
    class ArticleAdmin(TenantAdminMixin, admin.ModelAdmin):
        list_display = ["title", "category"]

With a tenant bound (the admin served on the tenant's host):

* the change list, the change form, ``get_object``, actions, autocomplete
  (through the target model's admin) and the history see the tenant's rows
  only (the model's ``TenantManager``);
* the choices of every ForeignKey, OneToOne and ManyToMany form field whose
  model is tenant-scoped are the tenant's rows, so a POST naming another
  tenant's row is a validation error and nothing is saved (this holds for
  every form, see ``tenantry.wall``);
* the tenant field is not in any form (nor in ``fields``/``fieldsets``):
  ``save_model`` and ``save_formset`` fill it with the bound tenant. A POST
  that names another tenant in the tenant field (``tenant_id=globex``, also in
  a formset) is refused with 403 and audited (``admin.refused``).

With no tenant bound (a host that resolves none, its path in
``TENANT_EXEMPT_PATHS``): superusers get a read-only view of every tenant's
rows, with a tenant column and filter, no actions and no add, change or
delete; each request is audited (``admin.cross_tenant``). Everyone else is
refused (403), and the model does not appear on the admin index.

The mixin works on ``InlineModelAdmin`` classes too.

Every admin, with the mixin or not (:func:`install_guards`, at start-up):
related list filters, raw-id labels and autocomplete answers show only the
bound tenant's rows of a scoped model, whatever its default manager; and a
tenant's deletion that left a store behind (``DeletionIncomplete``: Redis
down) is shown as an error message, in the delete view and the "delete
selected" action (docs/registry.md#deleting-a-tenant).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import apps as django_apps
from django.contrib import messages
from django.contrib.admin import (
    AllValuesFieldListFilter,
    FieldListFilter,
    ModelAdmin,
    RelatedFieldListFilter,
)
from django.contrib.admin import site as default_admin_site
from django.contrib.admin.sites import all_sites
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core import checks
from django.core.exceptions import (
    FieldDoesNotExist,
    ImproperlyConfigured,
    PermissionDenied,
    ValidationError,
)
from django.db import models
from django.db.models.fields import AutoFieldMixin
from django.http import Http404

from . import access, audit, audit_trail
from ._core import TenantInfo, TenantMismatchError, TenantNotSetError
from .context import get_current_tenant, reset_current_tenant, set_current_tenant
from .exceptions import DeletionIncomplete
from .graph import scope_of
from .isolation import BoundTenant, tenant_rows
from .managers import TenantManager, tenant_field_value
from .models import AuditEvent

__all__ = ["AuditEventAdmin", "TenantAdminMixin", "install_guards", "model_tenant_field"]


def tenant_manager(model: type[models.Model]) -> TenantManager | None:
    """``model``'s ``TenantManager`` (its first), or ``None``."""
    for manager in model._meta.managers:
        if isinstance(manager, TenantManager):
            return manager
    return None


def model_tenant_field(model: type[models.Model]) -> str | None:
    """The tenant field of ``model`` (its TenantManager's, or, for a proxy or
    a multi-table child, its scoped parent's), or ``None`` when the model is
    not tenant-scoped."""
    scope = scope_of(model)
    return None if scope is None else scope.field.name


def _key_value(model: type[models.Model], field_name: str, tenant: TenantInfo) -> str:
    """What a form posts for ``model.field_name`` pointing at ``tenant``."""
    _, value = tenant_field_value(model, field_name, tenant)
    if isinstance(value, models.Model):
        field = model._meta.get_field(field_name)
        value = getattr(value, field.target_field.attname)
    return str(value)


#: Set on a request whose view is the cross-tenant read-only view, also while
#: the change view binds the shown row's tenant (so related managers work).
_CROSS_TENANT = "_tenantry_cross_tenant"


def cross_tenant(request: Any) -> bool:
    """True for the read-only cross-tenant view: no tenant bound, or the
    change view showing one row with that row's tenant bound."""
    return get_current_tenant() is None or bool(
        getattr(request, "__dict__", {}).get(_CROSS_TENANT, False)
    )


def _without(fields: Sequence[Any], names: set[str]) -> list[Any]:
    """``fields`` (names, or tuples of names shown on one line) minus ``names``."""
    kept: list[Any] = []
    for entry in fields:
        if isinstance(entry, (list, tuple)):
            line = [name for name in entry if name not in names]
            if line:
                kept.append(tuple(line))
        elif entry not in names:
            kept.append(entry)
    return kept


class TenantAdminMixin:
    """Mix into a ``ModelAdmin`` or ``InlineModelAdmin`` (first in the bases);
    see the module docs."""

    #: The model's tenant field; ``None``: the one its ``TenantManager`` scopes by.
    tenant_field: str | None = None

    model: type[models.Model]

    # -- the tenant field ---------------------------------------------------

    def get_tenant_field(self) -> models.Field:
        name = self.tenant_field or model_tenant_field(self.model)
        if name is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: {self.model._meta.label} has no TenantManager; give "
                "it one (objects = TenantManager(tenant_field=...)) or set tenant_field"
            )
        return self.model._meta.get_field(name)

    def _tenant_names(self) -> set[str]:
        field = self.get_tenant_field()
        return {field.name, field.attname}

    # -- rows ---------------------------------------------------------------

    def get_queryset(self, request: Any) -> Any:
        tenant = get_current_tenant()
        if tenant is None or cross_tenant(request):
            self._allow_cross_tenant(request)
            qs = self.model._base_manager.all()
        else:
            manager = tenant_manager(self.model)
            if manager is not None and manager.tenant_field == self.get_tenant_field().name:
                qs = manager.get_queryset()  # scoped to the bound tenant
            else:
                name, value = tenant_field_value(self.model, self.get_tenant_field().name, tenant)
                qs = self.model._default_manager.filter(**{name: value})
        ordering = self.get_ordering(request)
        if ordering:
            qs = qs.order_by(*ordering)
        return qs

    def _allow_cross_tenant(self, request: Any) -> None:
        """No tenant bound: superusers only, one audit event per request and model."""
        if not self._superuser(request):
            raise TenantNotSetError(
                f"the admin of {self.model._meta.label} is per tenant and no tenant is bound; "
                "only superusers get the read-only cross-tenant view"
            )
        seen = request.__dict__.setdefault("_tenantry_admin_audited", set())
        if self.model._meta.label not in seen:
            seen.add(self.model._meta.label)
            audit.emit(
                "admin.cross_tenant",
                request=request,
                level=logging.WARNING,
                model=self.model._meta.label,
            )

    # -- permissions: read-only for superusers when no tenant is bound ------

    @staticmethod
    def _superuser(request: Any) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_active and user.is_superuser)

    def has_module_permission(self, request: Any) -> bool:
        if cross_tenant(request):
            return self._superuser(request)
        return super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        if cross_tenant(request):
            return self._superuser(request)
        return super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        if cross_tenant(request):
            return False
        return super().has_add_permission(request, *args, **kwargs)  # type: ignore[misc]

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        if cross_tenant(request):
            return False
        return super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        if cross_tenant(request):
            return False
        return super().has_delete_permission(request, obj)  # type: ignore[misc]

    # -- what the pages show ------------------------------------------------

    def get_actions(self, request: Any) -> dict[str, Any]:
        if cross_tenant(request):
            return {}
        return super().get_actions(request)  # type: ignore[misc]

    def get_list_display(self, request: Any) -> Sequence[Any]:
        shown = super().get_list_display(request)  # type: ignore[misc]
        if cross_tenant(request):
            return [self.get_tenant_field().name, *shown]
        return shown

    def get_list_filter(self, request: Any) -> Sequence[Any]:
        filters = super().get_list_filter(request)  # type: ignore[misc]
        if cross_tenant(request):
            return [self.get_tenant_field().name, *filters]
        return filters

    def get_exclude(self, request: Any, obj: Any = None) -> list[str]:
        excluded = super().get_exclude(request, obj)  # type: ignore[misc]
        return [*(excluded or ()), self.get_tenant_field().name]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Sequence[str]:
        readonly = super().get_readonly_fields(request, obj)  # type: ignore[misc]
        if cross_tenant(request):
            # Every field, so no form field is built: the form field of a
            # relation to a scoped model asks its scoped manager, which has
            # no tenant now (and nothing may be edited anyway).
            opts = self.model._meta
            every = [
                f.name
                for f in (*opts.concrete_fields, *opts.private_fields, *opts.many_to_many)
                if f.editable and not isinstance(f, AutoFieldMixin) and f.name not in readonly
            ]
            return [*readonly, *every]
        return _without(readonly, self._tenant_names())

    def get_fields(self, request: Any, obj: Any = None) -> Sequence[Any]:
        if cross_tenant(request):
            return self.fields or self.get_readonly_fields(request, obj)
        return _without(super().get_fields(request, obj), self._tenant_names())  # type: ignore[misc]

    def get_fieldsets(self, request: Any, obj: Any = None) -> list[tuple[Any, dict[str, Any]]]:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if cross_tenant(request):
            return fieldsets
        names = self._tenant_names()
        return [
            (title, {**options, "fields": _without(options.get("fields", ()), names)})
            for title, options in fieldsets
        ]

    # -- writes -------------------------------------------------------------

    def changeform_view(
        self, request: Any, object_id: str | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        if get_current_tenant() is None and object_id is not None:
            return self._cross_tenant_change_view(request, object_id, *args, **kwargs)
        self._refuse_other_tenants(request)
        return super().changeform_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def _cross_tenant_change_view(self, request: Any, object_id: str, *args: Any, **kwargs: Any):
        """A superuser's read-only view of one row, with the row's tenant bound
        while it renders (its related managers and inlines are scoped)."""
        if not self._superuser(request):
            raise PermissionDenied
        request.__dict__[_CROSS_TENANT] = True
        obj = self.get_object(request, unquote(object_id))
        owner = None if obj is None else getattr(obj, self.get_tenant_field().attname)
        token = set_current_tenant(None if owner is None else str(owner))
        try:
            response = super().changeform_view(request, object_id, *args, **kwargs)  # type: ignore[misc]
            if callable(getattr(response, "render", None)):
                response.render()  # a TemplateResponse: render while the tenant is bound
            return response
        finally:
            reset_current_tenant(token)

    def changelist_view(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self._refuse_other_tenants(request)
        return super().changelist_view(request, *args, **kwargs)  # type: ignore[misc]

    def _refuse_other_tenants(self, request: Any) -> None:
        """403 for a POST whose tenant field (also ``<prefix>-<field>`` in a
        formset) names another tenant than the bound one."""
        tenant = get_current_tenant()
        if request.method != "POST" or tenant is None:
            return
        field = self.get_tenant_field()
        names = {field.name, field.attname}
        expected = _key_value(self.model, field.name, tenant)
        for key in request.POST:
            if key not in names and key.rpartition("-")[2] not in names:
                continue
            for value in request.POST.getlist(key):
                if value not in ("", expected):
                    audit.emit(
                        "admin.refused",
                        tenant=tenant,
                        request=request,
                        level=logging.WARNING,
                        model=self.model._meta.label,
                        field=key,
                        value=value,
                    )
                    raise PermissionDenied(
                        f"{self.model._meta.label}.{field.name} is set by tenantry: the form "
                        f"named tenant {value!r}, the bound tenant is {tenant.id!r}"
                    )

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        fill_tenant(obj)
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    def save_formset(self, request: Any, form: Any, formset: Any, change: bool) -> None:
        for inline_form in formset.forms:
            fill_tenant(inline_form.instance)
        super().save_formset(request, form, formset, change)  # type: ignore[misc]

    # -- system checks ------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)  # type: ignore[misc]
        label = f"{type(self).__name__} ({self.model._meta.label})"
        try:
            field = self.get_tenant_field()
        except (ImproperlyConfigured, FieldDoesNotExist) as exc:
            return [*errors, checks.Error(str(exc), obj=type(self), id="tenantry.E300")]
        editable = set(getattr(self, "list_editable", ()) or ())
        if editable & {field.name, field.attname}:
            errors.append(
                checks.Error(
                    f"{label} lists the tenant field {field.name!r} in list_editable; "
                    "tenantry sets it, remove it",
                    obj=type(self),
                    id="tenantry.E301",
                )
            )
        errors += _check_autocomplete(self, label)
        return errors


def fill_tenant(obj: models.Model) -> None:
    """Set ``obj``'s tenant field to the bound tenant (tenant-scoped models
    only); another tenant's row raises ``TenantMismatchError``."""
    name = model_tenant_field(type(obj))
    if name is None:
        return
    tenant = get_current_tenant()
    if tenant is None:
        raise TenantNotSetError(
            f"saving {type(obj)._meta.label} through the admin needs a tenant: none is bound"
        )
    field = type(obj)._meta.get_field(name)
    current = getattr(obj, field.attname)
    expected = _key_value(type(obj), name, tenant)
    if current not in (None, "") and str(current) != expected:
        raise TenantMismatchError(
            f"{type(obj)._meta.label} {obj.pk!r} belongs to tenant {current!r}, not to the "
            f"bound tenant {tenant.id!r}"
        )
    lookup, value = tenant_field_value(type(obj), name, tenant)
    setattr(obj, lookup, value)


def _check_autocomplete(model_admin: Any, label: str) -> list[checks.CheckMessage]:
    """Autocomplete answers from the *target* model's admin: a tenant-scoped
    target must be registered with TenantAdminMixin too."""
    errors: list[checks.CheckMessage] = []
    names: Iterable[str] = getattr(model_admin, "autocomplete_fields", ()) or ()
    for name in names:
        try:
            target = model_admin.model._meta.get_field(name).related_model
        except FieldDoesNotExist:
            continue  # Django's own checks report it
        if target is None or model_tenant_field(target) is None:
            continue
        target_admin = model_admin.admin_site._registry.get(target)
        if target_admin is not None and not isinstance(target_admin, TenantAdminMixin):
            errors.append(
                checks.Error(
                    f"{label} autocompletes {name!r} from the admin of "
                    f"{target._meta.label}, which is tenant-scoped but not registered with "
                    "TenantAdminMixin: its autocomplete would list every tenant's rows",
                    obj=type(model_admin),
                    id="tenantry.E302",
                )
            )
    return errors


# -- every admin: choices, labels and answers of scoped models -------------------------


class TenantRelatedFieldListFilter(RelatedFieldListFilter):
    """Django's related list filter, listing only the bound tenant's rows of
    a scoped model (registered first for every relation to one)."""

    def field_choices(self, field: Any, request: Any, model_admin: Any) -> Any:
        scope = scope_of(field.related_model)
        if scope is None:
            return super().field_choices(field, request, model_admin)
        ordering = self.field_admin_ordering(field, request, model_admin)
        limit = models.Q(BoundTenant(scope.field.name))
        if hasattr(field, "get_limit_choices_to"):
            own = field.get_limit_choices_to()
        else:  # a reverse relation
            own = getattr(field, "limit_choices_to", None)
            own = own() if callable(own) else own
        if own:
            limit &= own if isinstance(own, models.Q) else models.Q(**own)
        return field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=limit)


def _raw_id_label(self: Any, value: Any) -> tuple[str, str]:
    """``ForeignKeyRawIdWidget.label_and_url_for_value`` reading through the
    bound tenant's rows: another tenant's id shows no label (not its name)."""
    if scope_of(self.rel.model) is None:
        return _django_raw_id_label(self, value)
    key = self.rel.get_related_field().name
    rows = tenant_rows(self.rel.model._default_manager.using(self.db))
    try:
        rows.get(**{key: value})
    except (ValueError, self.rel.model.DoesNotExist, ValidationError):
        return "", ""
    return _django_raw_id_label(self, value)


_django_raw_id_label = ForeignKeyRawIdWidget.label_and_url_for_value
_django_autocomplete_queryset = AutocompleteJsonView.get_queryset


def _autocomplete_queryset(self: Any) -> Any:
    return tenant_rows(_django_autocomplete_queryset(self))


_django_all_values_init = AllValuesFieldListFilter.__init__


def _all_values_init(self: Any, field: Any, *args: Any, **kwargs: Any) -> None:
    """``AllValuesFieldListFilter`` of a field reached through a relation
    (``list_filter = ["label__name"]``) lists the values of the related
    model's default manager: keep them to the bound tenant's rows."""
    _django_all_values_init(self, field, *args, **kwargs)
    self.lookup_choices = tenant_rows(self.lookup_choices)


_django_delete_model = ModelAdmin.delete_model
_django_delete_queryset = ModelAdmin.delete_queryset


def _report_incomplete(model_admin: Any, request: Any, exc: DeletionIncomplete) -> None:
    model_admin.message_user(
        request,
        f"The deletion is incomplete: {exc}",
        messages.ERROR,
    )


def _delete_model(self: Any, request: Any, obj: Any) -> None:
    """A registry row whose deletion left a store behind (Redis down): the
    page says so (an error message beside Django's), never a silent
    success."""
    try:
        _django_delete_model(self, request, obj)
    except DeletionIncomplete as exc:
        _report_incomplete(self, request, exc)


def _delete_queryset(self: Any, request: Any, queryset: Any) -> None:
    """ "Delete selected": as :func:`_delete_model`."""
    try:
        _django_delete_queryset(self, request, queryset)
    except DeletionIncomplete as exc:
        _report_incomplete(self, request, exc)


def install_guards() -> None:
    """Hold every admin's related list filters, raw-id labels and
    autocomplete answers to the bound tenant's rows of scoped models, and
    show a tenant's incomplete deletion as an error message
    (``tenantry.wall.install``, once)."""
    ModelAdmin.delete_model = _delete_model
    ModelAdmin.delete_queryset = _delete_queryset
    FieldListFilter.register(
        lambda f: bool(f.remote_field) and scope_of(f.related_model) is not None,
        TenantRelatedFieldListFilter,
        take_priority=True,
    )
    ForeignKeyRawIdWidget.label_and_url_for_value = _raw_id_label
    AllValuesFieldListFilter.__init__ = _all_values_init
    AutocompleteJsonView.get_queryset = _autocomplete_queryset


@checks.register(checks.Tags.admin)
def check_admins_of_scoped_models(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """A plain ModelAdmin of a scoped model whose default manager is not a
    TenantManager would list every tenant's rows (``tenantry.E303``)."""
    errors = []
    for site in all_sites:
        for model, model_admin in site._registry.items():
            if isinstance(model_admin, TenantAdminMixin) or scope_of(model) is None:
                continue
            if isinstance(model._default_manager, TenantManager):
                continue
            errors.append(
                checks.Error(
                    f"{type(model_admin).__name__} ({model._meta.label}) shows a tenant-scoped "
                    f"model whose default manager ({model._default_manager.name!r}) is not a "
                    "TenantManager: its change list would list every tenant's rows.",
                    hint="Put TenantAdminMixin first in its bases (tenantry.admin).",
                    obj=type(model_admin),
                    id="tenantry.E303",
                )
            )
    return errors


# -- the stored audit trail: read-only, the bound tenant's own chain -------------------------


class AuditEventAdmin(ModelAdmin):
    """``tenantry.AuditEvent`` in the admin (docs/operations.md#audit-trail):
    read-only, for active staff with ``tenantry.view_auditevent`` who pass
    admission for the bound tenant (``TENANT_MEMBERSHIP_CHECK``), showing
    that tenant's current incarnation only. With no tenant bound nobody
    sees rows (an operator uses ``manage.py tenantry audit export``)."""

    list_display = ["seq", "event", "created_at", "hash"]
    list_filter = ["event"]
    ordering = ["-seq"]
    readonly_fields = [
        "tenant_id",
        "incarnation",
        "seq",
        "event",
        "created_at",
        "data",
        "prev",
        "hash",
    ]
    actions = None

    def get_queryset(self, request: Any) -> Any:
        tenant = get_current_tenant()
        if tenant is None or not self._may_view(request):
            return AuditEvent.objects.none()
        return AuditEvent.objects.filter(chain=audit_trail.current_chain(tenant).key)

    @staticmethod
    def _may_view(request: Any) -> bool:
        tenant = get_current_tenant()
        user = getattr(request, "user", None)
        if tenant is None or user is None or not (user.is_active and user.is_staff):
            return False
        if not user.has_perm("tenantry.view_auditevent"):
            return False
        try:
            access.admit(tenant, request=request, source="admin", registered=True, by_address=False)
        except Http404:
            return False
        return True

    def has_module_permission(self, request: Any) -> bool:
        return self._may_view(request)

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        if not self._may_view(request):
            return False
        if obj is None:
            return True
        return obj.chain == audit_trail.current_chain(get_current_tenant()).key

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


def register_audit_admin(site: Any = None) -> None:
    """Show the trail on ``site`` (Django's default site, when the admin is
    installed: this module is what ``admin.autodiscover()`` imports)."""
    if site is None:
        if not django_apps.is_installed("django.contrib.admin"):
            return
        site = default_admin_site
    if not site.is_registered(AuditEvent):
        site.register(AuditEvent, AuditEventAdmin)


register_audit_admin()
