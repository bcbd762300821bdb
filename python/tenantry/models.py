"""Abstract models for the tenant registry; subclass them in your app and
point ``TENANT_MODEL`` / ``TENANT_DOMAIN_MODEL`` at the subclasses."""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import FullResultSet, ValidationError
from django.db import models
from django.db.models import F, Lookup
from django.utils import timezone

from . import conf
from ._core import is_valid_tenant_id, normalize_domain
from .context import get_current_tenant
from .exceptions import AuditTrailProtected, GrantProtected
from .registry import (
    domain_tenant_id_problem,
    invalid_tenant_id_message,
    new_tenant_id_problem,
    validate_custom_domain,
)


def new_incarnation() -> str:
    """A new incarnation: the UTC creation time (incarnations sort by age)
    and 48 random bits, e.g. ``20261130T101500123456Z-3f9a1c2b7d4e``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(6)}"


def validate_tenant_slug(value: str) -> None:
    if not is_valid_tenant_id(value):
        raise ValidationError(invalid_tenant_id_message(value), code="invalid_tenant_id")


def _is_registry(model: type[models.Model]) -> str | None:
    """The id field of ``model`` when it is ``TENANT_MODEL``, else None."""
    found = conf.current().tenant_model
    if found is None or model._meta.label_lower != found[0].lower():
        return None
    return found[1]


class AbstractTenant(models.Model):
    """``slug`` is the tenant id; ``settings`` becomes ``tenant.settings``;
    ``incarnation`` is set once, when the row is created: a tenant deleted
    and created again under the same id is a new incarnation
    (docs/registry.md#incarnations). Neither ``slug`` nor ``incarnation`` of
    a saved row may change (``tenantry.lifecycle``)."""

    slug = models.CharField(max_length=128, unique=True, validators=[validate_tenant_slug])
    name = models.CharField(max_length=200)
    settings = models.JSONField(default=dict, blank=True)
    incarnation = models.CharField(max_length=40, default=new_incarnation, editable=False)

    class Meta:
        abstract = True

    def clean(self) -> None:
        """A new tenant's id must be one a request can carry
        (``tenantry.registry.new_tenant_id_problem``, the rule of ``manage.py
        tenantry create``); every INSERT is held to it too
        (``tenantry.lifecycle.on_insert``). A saved row's id never changes."""
        super().clean()
        id_field = _is_registry(type(self))
        if id_field is None or not self._state.adding:
            return
        value = getattr(self, id_field)
        if value in (None, "") or not is_valid_tenant_id(str(value)):
            return  # the field's own validators say it
        problem = new_tenant_id_problem(value, using=self._state.db, exclude_pk=self.pk)
        if problem:
            raise ValidationError({id_field: problem}, code="unusable_tenant_id")

    def __str__(self) -> str:
        return self.name or self.slug


class AbstractTenantDomain(models.Model):
    """A custom domain (``shop.acme-corp.com``) served as a tenant."""

    domain = models.CharField(max_length=253, unique=True)
    tenant_id = models.CharField(max_length=128, validators=[validate_tenant_slug])

    class Meta:
        abstract = True

    def clean(self) -> None:
        super().clean()
        self.domain = normalize_domain(self.domain)
        validate_custom_domain(self.domain, self.tenant_id)
        if self.tenant_id and is_valid_tenant_id(str(self.tenant_id)):
            problem = domain_tenant_id_problem(self.tenant_id, using=self._state.db)
            if problem:
                raise ValidationError({"tenant_id": problem}, code="tenant_id_case_twin")

    def save(self, *args, **kwargs):
        # Lookups use the host as Django validates it: lowercase, no port,
        # no trailing dot. (tenantry.registry refuses platform hosts on save.)
        self.domain = normalize_domain(self.domain)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.domain} → {self.tenant_id}"


# -- the stored audit trail (tenantry.audit_trail) ---------------------------------------

#: Rows may be removed only while this is set: the retention pruning
#: (``tenantry.audit_trail.prune``), from the oldest end of a chain.
_pruning: ContextVar[bool] = ContextVar("tenantry_audit_pruning", default=False)
#: True while the trail's own writer appends or prunes
#: (``tenantry.audit_trail``): the only code whose ORM writes reach
#: ``AuditEvent`` and ``AuditHead`` (see :func:`refuse_trail_write`).
_trail_writer: ContextVar[bool] = ContextVar("tenantry_audit_trail_writer", default=False)
#: The trail's models (set below their classes; a proxy's concrete model is one).
_TRAIL_MODELS: frozenset[type] = frozenset()


def refuse_trail_write(query: Any, kind: str) -> None:
    """Every ORM INSERT, UPDATE and DELETE (``tenantry.wall``'s compilers):
    one into the trail's tables outside its own writer is refused
    (``AuditTrailProtected``). A row planted through the ORM (``create()``,
    ``bulk_create()``, a head moved) would otherwise join a chain, another
    tenant's too, and take the seq its next event needs."""
    model = getattr(query, "model", None)
    if model is None or model._meta.concrete_model not in _TRAIL_MODELS or _trail_writer.get():
        return
    raise AuditTrailProtected(
        f"{model._meta.label} is written only by the audit trail (tenantry.audit.emit): "
        f"an ORM {kind} is refused (docs/operations.md#audit-trail)"
    )


class _GuardedRows(models.QuerySet):
    """The queryset of a table only tenantry writes: the updates no caller
    may make, refused with the subclass's own error (``_refuse``) before any
    SQL (the wall's compilers refuse every other route too)."""

    def _refuse(self, what: str) -> None:
        raise NotImplementedError

    def update(self, **kwargs: Any) -> int:
        self._refuse("update()")
        return 0

    def bulk_update(self, objs: Any, fields: Any, batch_size: Any = None) -> int:
        self._refuse("bulk_update()")
        return 0

    async def aupdate(self, **kwargs: Any) -> int:
        self._refuse("aupdate()")
        return 0

    async def abulk_update(self, objs: Any, fields: Any, batch_size: Any = None) -> int:
        self._refuse("abulk_update()")
        return 0

    update.alters_data = True  # type: ignore[attr-defined]


class AppendOnly(_GuardedRows):
    """Audit rows are appended, never changed; only the retention pruning
    removes them (docs/operations.md#audit-trail). Every ORM route that
    changes or removes rows ends here or in :class:`AuditEvent`'s own
    ``save()``/``delete()``; a change by another route (raw SQL) is what
    ``manage.py tenantry audit verify`` finds."""

    def _refuse(self, what: str) -> None:
        raise AuditTrailProtected(
            f"tenantry.AuditEvent is append-only: {what} is refused (rows are removed only by "
            "the retention pruning, manage.py tenantry audit prune)"
        )

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("update_conflicts") or kwargs.get("ignore_conflicts"):
            self._refuse("bulk_create() with conflicts")
        return super().bulk_create(objs, *args, **kwargs)

    def delete(self) -> Any:
        if not _pruning.get():
            self._refuse("delete()")
        return super().delete()

    async def adelete(self) -> Any:
        if not _pruning.get():
            self._refuse("adelete()")
        return await super().adelete()

    delete.alters_data = True  # type: ignore[attr-defined]


class BoundTrail(models.Manager):
    """The default manager of the trail's tables: with a tenant bound, its
    current incarnation's rows only (never another tenant's trail, nor the
    trail of an earlier tenant of the same id); with none bound (commands,
    trusted code), no filter of its own (row-level security, when on, still
    asks for ``rls_bypass``). tenantry's own code reads through ``trail``
    (a chain named explicitly, old incarnations too)."""

    def get_queryset(self) -> Any:
        rows = super().get_queryset()
        tenant = get_current_tenant()
        if tenant is None:
            return rows
        return rows.filter(tenant_id=tenant.id, incarnation=_incarnation_of(tenant))


def _incarnation_of(tenant: Any) -> str:
    """The bound tenant's incarnation as its chain is keyed ("" when the
    registry keeps none): ``tenantry.lifecycle.incarnation``'s rule."""
    value = getattr(tenant.raw, "incarnation", None) if tenant.raw is not None else None
    if not value:
        value = (tenant.metadata or {}).get("incarnation")
    return str(value) if value else ""


class AuditEvent(models.Model):
    """One stored ``tenantry.audit`` event (``TENANT_AUDIT_STORE =
    "database"``): a link of the chain of one tenant incarnation (``chain``;
    events that name no known tenant form the platform chain, whose
    ``tenant_id`` is NULL). ``hash`` covers the row and ``prev``, the hash of
    the row before it in the chain (docs/operations.md#audit-trail)."""

    chain = models.CharField(max_length=200, editable=False)
    tenant_id = models.CharField(max_length=128, null=True, editable=False)
    incarnation = models.CharField(max_length=40, blank=True, default="", editable=False)
    seq = models.PositiveBigIntegerField(editable=False)
    event = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(editable=False)
    data = models.JSONField(default=dict, editable=False)
    prev = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    objects = BoundTrail.from_queryset(AppendOnly)()
    #: Every row (tenantry.audit_trail, the commands): chains named explicitly.
    trail = AppendOnly.as_manager()

    class Meta:
        app_label = "tenantry"
        base_manager_name = "trail"
        default_permissions = ("view",)
        ordering = ["chain", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="tenantry_audit_chain_seq")
        ]
        indexes = [models.Index(fields=["tenant_id", "incarnation", "seq"])]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            AppendOnly._refuse(None, "save() of a stored row")  # type: ignore[arg-type]
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if not _pruning.get():
            AppendOnly._refuse(None, "delete()")  # type: ignore[arg-type]
        return super().delete(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.event} #{self.seq} ({self.tenant_id or 'platform'})"


class AuditHead(models.Model):
    """The head of one chain: its last ``seq`` and ``hash``, and the anchor
    the retention pruning left (the ``seq`` and ``hash`` of the last pruned
    row). Every append locks it first (an UPDATE), so the database orders
    the chain across threads and processes."""

    chain = models.CharField(max_length=200, unique=True, editable=False)
    tenant_id = models.CharField(max_length=128, null=True, editable=False)
    incarnation = models.CharField(max_length=40, blank=True, default="", editable=False)
    seq = models.PositiveBigIntegerField(default=0, editable=False)
    hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    anchor_seq = models.PositiveBigIntegerField(default=0, editable=False)
    anchor_hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    objects = BoundTrail()
    #: Every head (tenantry.audit_trail).
    trail = models.Manager()

    class Meta:
        app_label = "tenantry"
        base_manager_name = "trail"
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.chain} @ {self.seq}"


_TRAIL_MODELS = frozenset({AuditEvent, AuditHead})


class TenantSuspension(models.Model):
    """A suspended tenant (``manage.py tenantry suspend``,
    ``tenantry.suspension.suspend``): admission refuses it until the row
    goes (``resume``). Keyed by the tenant id, not a foreign key, so it works
    with a ``TENANT_VALIDATOR`` as with a ``TENANT_MODEL``; the registry's
    lookup reads it with the tenant (cached for ``TENANT_CACHE_TTL``).
    The column is not named ``tenant_id`` on purpose: the row is the
    operator's, not the tenant's (a tenant's export and write rules do not
    cover it); deleting or creating the tenant removes it.

    Its Meta also carries tenantry's ``impersonate`` permission
    (``tenantry.impersonate``, docs/operations.md#impersonation)."""

    suspended_tenant = models.CharField(max_length=128, unique=True)
    reason = models.TextField(blank=True, default="")
    suspended_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "tenantry"
        db_table = "tenantry_suspension"
        permissions = [("impersonate", "Can act as a member of a tenant (impersonation)")]

    def __str__(self) -> str:
        return f"{self.suspended_tenant} (suspended)"


class EndedImpersonation(models.Model):
    """An impersonation that ended before its time bound (``stop()``,
    logout, a new sign-in, the staff user's permission gone): an open live
    view of it in any process sees it at its next check
    (``TENANT_READMIT_INTERVAL``, docs/operations.md#impersonation). Keyed
    by a digest of who, as whom, where and when it started; kept until the
    bound (the bound refuses it then), pruned as new ones are written."""

    identity = models.CharField(max_length=64, unique=True)
    until = models.FloatField(db_index=True)

    class Meta:
        app_label = "tenantry"
        db_table = "tenantry_ended_impersonation"
        default_permissions = ()

    def __str__(self) -> str:
        return f"impersonation {self.identity[:12]} ended"


# -- cross-tenant grants (tenantry.sharing) ------------------------------------------

#: Grants are made and removed only while this is set: inside
#: ``tenantry.sharing`` (grant, revoke, a tenant's deletion).
_granting: ContextVar[bool] = ContextVar("tenantry_granting", default=False)


class GrantRows(_GuardedRows):
    """No ORM route makes, changes or removes a grant but
    ``tenantry.sharing`` (docs/collaboration.md#the-grant-table): a tenant
    holding a read grant must not widen it, extend it, or point it at
    another row; its owner changes it by revoking and granting again."""

    def _refuse(self, what: str) -> None:
        raise GrantProtected(
            f"tenantry.Grant: {what} is refused; grants are made and removed only by "
            "tenantry.sharing.grant() and tenantry.sharing.revoke()"
        )

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        if not _granting.get():
            self._refuse("bulk_create()")
        return super().bulk_create(objs, *args, **kwargs)

    def create(self, **kwargs: Any) -> Any:
        if not _granting.get():
            self._refuse("create()")
        return super().create(**kwargs)

    def get_or_create(self, defaults: Any = None, **kwargs: Any) -> Any:
        self._refuse("get_or_create()")

    def update_or_create(self, defaults: Any = None, **kwargs: Any) -> Any:
        self._refuse("update_or_create()")

    def delete(self) -> Any:
        if not _granting.get():
            self._refuse("delete()")
        return super().delete()

    def raw(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse("raw()")

    async def adelete(self) -> Any:
        self._refuse("adelete()")

    async def aget_or_create(self, defaults: Any = None, **kwargs: Any) -> Any:
        self._refuse("aget_or_create()")

    async def aupdate_or_create(self, defaults: Any = None, **kwargs: Any) -> Any:
        self._refuse("aupdate_or_create()")

    delete.alters_data = True  # type: ignore[attr-defined]


class _GrantParties(Lookup):
    """``owner_tenant = <bound> OR grantee_tenant = <bound>``, read when the
    query runs: a bound tenant sees only the grants it gave or received,
    on every database (the PostgreSQL policy ``tenantry_grant_parties`` says
    the same); trusted code (none bound) and ``tenantry.sharing``'s own
    writes see them all (docs/collaboration.md#the-grant-table)."""

    lookup_name = "tenantry_grant_parties"
    prepare_rhs = False

    def __init__(self) -> None:
        super().__init__(F("owner_tenant"), None)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        tenant = get_current_tenant()
        if tenant is None or _granting.get():
            raise FullResultSet
        owner_sql, owner_params = compiler.compile(self.lhs)
        grantee = self.lhs.target.model._meta.get_field("grantee_tenant").get_col(self.lhs.alias)
        grantee_sql, grantee_params = compiler.compile(grantee)
        return (
            f"({owner_sql} = %s OR {grantee_sql} = %s)",
            [*owner_params, tenant.id, *grantee_params, tenant.id],
        )


class GrantManager(models.Manager.from_queryset(GrantRows)):  # type: ignore[misc]
    """Every grant query keeps to the bound tenant's grants (:class:`_GrantParties`)."""

    def get_queryset(self) -> GrantRows:
        return super().get_queryset().filter(_GrantParties())


class Grant(models.Model):
    """Tenant ``owner_tenant`` lets ``grantee_tenant`` read (``can_write``:
    also update) one row: ``object_pk`` of ``target_table``
    (``target_model``), whose tenant column held ``owner_key`` when it was
    granted. Live while it exists and ``expires_at`` has not passed
    (revoking deletes it). Made only by ``tenantry.sharing``
    (docs/collaboration.md). The columns are not named ``tenant_id`` on
    purpose: a grant is both tenants' business, and a tenant's deletion
    removes every grant it gave or received (``tenantry.sharing.clear``)."""

    owner_tenant = models.CharField(max_length=128, editable=False)
    grantee_tenant = models.CharField(max_length=128, editable=False)
    target_model = models.CharField(max_length=200, editable=False)
    target_table = models.CharField(max_length=200, editable=False)
    object_pk = models.CharField(max_length=255, editable=False)
    owner_key = models.CharField(max_length=255, editable=False)
    can_write = models.BooleanField(default=False, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(editable=False)

    objects = GrantManager()

    class Meta:
        app_label = "tenantry"
        db_table = "tenantry_grant"
        base_manager_name = "objects"
        default_permissions = ("view",)
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["grantee_tenant", "target_table", "object_pk"],
                name="tenantry_grant_one_per_row",
            )
        ]
        indexes = [models.Index(fields=["owner_tenant"], name="tenantry_grant_owner")]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not (_granting.get() and self._state.adding):
            GrantRows._refuse(None, "save()")  # type: ignore[arg-type]
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if not _granting.get():
            GrantRows._refuse(None, "delete()")  # type: ignore[arg-type]
        return super().delete(*args, **kwargs)

    @property
    def live(self) -> bool:
        return self.expires_at is None or self.expires_at > timezone.now()

    def __str__(self) -> str:
        access = "read+write" if self.can_write else "read"
        return (
            f"{self.owner_tenant} → {self.grantee_tenant}: {self.target_model} "
            f"pk={self.object_pk} ({access})"
        )
