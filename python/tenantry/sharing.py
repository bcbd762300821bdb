"""Cross-tenant collaboration: explicit, audited, revocable grants, the
only door in the wall (docs/collaboration.md).

    from tenantry import sharing

    with tenant_context("acme"):
        g = sharing.grant(board, "globex", write=True, expires=timedelta(days=30))
        sharing.grant(Board.objects.filter(team="design"), "globex")  # one grant per row
        sharing.revoke(g)

    with tenant_context("globex"):
        Board.objects.with_shared()      # globex's boards and those granted to it

Only the tenant that owns a row, bound, grants it; to another tenant the
registry knows, active and not suspended; for a row of a scoped model (a
``TenantManager``); with an expiry in the future, if any. Every grant and
revoke is audited on both tenants' trails (``grant.given`` /
``grant.received``, ``grant.revoked``). Deleting either tenant deletes every
grant it gave or received (:func:`clear`, called by ``tenantry.lifecycle``).

The grant table itself is written only here: ``tenantry.Grant``'s manager
and ``save()``/``delete()`` refuse every other route (``GrantProtected``),
and on PostgreSQL its policy admits writes only under the bypass scope this
module uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.utils import timezone

from . import _core, access, audit, suspension
from ._core import TenantInfo
from .context import get_current_tenant, reset_current_tenant, set_current_tenant, tenant_context
from .db.router import database_for
from .db.scope import BYPASS, scoped_as
from .exceptions import GrantProtected, GrantRefused
from .graph import scope_of
from .isolation import column_value, tenant_field_value
from .models import Grant, _granting

__all__ = [
    "Grant",
    "clear",
    "detach_references",
    "forget_deleted_rows",
    "grant",
    "grants_given",
    "grants_received",
    "on_write",
    "revoke",
]


@contextmanager
def _writing_grants() -> Iterator[None]:
    """tenantry's own writes of the grant table: allowed by its manager,
    and by its row-level security policy (the bypass scope, quietly)."""
    token = _granting.set(True)
    try:
        with scoped_as(BYPASS):
            yield
    finally:
        _granting.reset(token)


def _same_database(owner: TenantInfo, grantee: TenantInfo) -> bool:
    """Whether a grant between the two can be enforced: the grant table, its
    policies and every query that reads it live on the default database
    (tenantry's own tables stay there, docs/postgresql.md#a-database-per-tenant),
    so both tenants' rows must be there too. A tenant with a database of its
    own neither gives nor receives grants; ``tenantry move`` refuses a tenant
    that holds any (docs/collaboration.md#grants-and-dedicated-databases)."""
    return database_for(owner.id) == DEFAULT_DB_ALIAS == database_for(grantee.id)


def _grantee(to_tenant: Any, owner: TenantInfo) -> TenantInfo:
    if isinstance(to_tenant, TenantInfo):
        to_tenant = to_tenant.id
    elif isinstance(to_tenant, models.Model):
        to_tenant = getattr(to_tenant, "slug", None) or to_tenant.pk
    try:
        tenant_id = _core.validate_tenant_id(str(to_tenant))
    except _core.InvalidTenantId as exc:
        raise GrantRefused(
            f"sharing.grant(): {to_tenant!r} is not a valid tenant id ({exc})"
        ) from None
    if tenant_id == owner.id:
        raise GrantRefused(
            f"sharing.grant(): tenant {owner.id!r} cannot grant to itself; name another tenant"
        )
    found = _core.lookup_tenant(tenant_id)
    if found is None:
        raise GrantRefused(
            f"sharing.grant(): tenant {tenant_id!r} is unknown or inactive; grant only to a "
            "tenant the registry knows and serves"
        )
    # From the database, not the registry's cache: a suspension this moment.
    if suspension.is_suspended(tenant_id) or not access.served(tenant_id):
        raise GrantRefused(f"sharing.grant(): tenant {tenant_id!r} is suspended; resume it first")
    if not _same_database(owner, found):
        raise GrantRefused(
            f"sharing.grant(): tenants {owner.id!r} and {tenant_id!r} must both keep their "
            "rows in the default database (a grant lives there; a tenant with a database "
            "of its own neither gives nor receives grants)"
        )
    return found


def _expiry(expires: Any) -> datetime | None:
    if expires is None:
        return None
    now = timezone.now()
    if isinstance(expires, timedelta):
        expires = now + expires
    if not isinstance(expires, datetime):
        raise GrantRefused(
            f"sharing.grant(expires=...) takes a datetime or a timedelta, got {expires!r}"
        )
    if timezone.is_naive(expires):
        raise GrantRefused(
            f"sharing.grant(expires={expires!r}): give an aware datetime (with a time zone)"
        )
    if expires <= now:
        raise GrantRefused(
            f"sharing.grant(expires={expires.isoformat()}): the expiry is in the past; "
            "give a time in the future, or None for no expiry"
        )
    return expires


def _shareable(model: Any) -> Any:
    """The scope of ``model`` if its rows can be granted, else GrantRefused."""
    label = getattr(getattr(model, "_meta", None), "label", repr(model))
    scope = None
    if isinstance(model, type) and issubclass(model, models.Model):
        if model._meta.app_label != "tenantry":
            scope = scope_of(model)
    if scope is None:
        raise GrantRefused(
            f"sharing.grant(): {label} is not a tenant-scoped model (no TenantManager); "
            "only rows a tenant owns through a TenantManager can be granted"
        )
    if scope.field.model._meta.concrete_model is not model._meta.concrete_model:
        raise GrantRefused(
            f"sharing.grant(): {label} keeps its tenant column on a parent table "
            f"({scope.field.model._meta.label}); grant the parent's row instead"
        )
    return scope


def _owner_key(scope: Any, connection: Any, value: Any) -> str:
    field = scope.field
    if isinstance(value, models.Model):
        value = getattr(value, field.target_field.attname)
    return str(field.get_db_prep_value(value, connection))


def _object_pk(model: Any, connection: Any, pk: Any) -> str:
    return str(model._meta.pk.get_db_prep_value(pk, connection))


def grant(
    obj: Any, to_tenant: Any, *, write: bool = False, expires: Any = None
) -> Grant | list[Grant]:
    """Let ``to_tenant`` read ``obj`` (``write=True``: also update it,
    never move or delete it) until ``expires`` (a datetime or a timedelta;
    None: until revoked). ``obj`` is a row, or a queryset of one model (one
    grant per row, all or none). The owning tenant must be bound. Returns
    the grant (a list for a queryset). ``GrantRefused`` names what was wrong."""
    owner = get_current_tenant()
    if owner is None:
        raise GrantRefused(
            "sharing.grant() needs the owning tenant bound (tenant_context(<owner>)); none is"
        )
    if isinstance(obj, models.QuerySet):
        if not issubclass(obj._iterable_class, models.query.ModelIterable):
            raise GrantRefused(
                f"sharing.grant() takes a queryset of {obj.model._meta.label} rows, not one of "
                "values()/values_list() (drop those calls)"
            )
        model, rows = obj.model, None
    elif isinstance(obj, models.Model):
        model, rows = type(obj), [obj]
    else:
        raise GrantRefused(f"sharing.grant() takes a model instance or a queryset, got {obj!r}")
    scope = _shareable(model)
    if rows is None:
        rows = list(obj)
    if not isinstance(write, bool):
        raise GrantRefused(f"sharing.grant(write=...) takes True or False, got {write!r}")
    grantee = _grantee(to_tenant, owner)
    expires_at = _expiry(expires)
    using = router.db_for_write(model)
    connection = connections[using]
    expected = str(scope.field.get_db_prep_value(column_value(scope.field, owner), connection))
    made = []
    with transaction.atomic(using=using):
        for row in rows:
            if row.pk is None or row._state.adding:
                raise GrantRefused(f"sharing.grant(): {row!r} is not saved; save it first")
            # The owner as the database has it now, not as the instance says.
            stored = (
                models.QuerySet(model=model)
                .using(using)
                .filter(pk=row.pk)
                .values_list(scope.field.attname, flat=True)
            )
            with scoped_as(BYPASS):
                found = list(stored)
            if not found or _owner_key(scope, connection, found[0]) != expected:
                raise GrantRefused(
                    f"sharing.grant(): {model._meta.label} pk={row.pk!r} is not a row of "
                    f"tenant {owner.id!r}; a tenant grants only its own rows"
                )
            table = model._meta.concrete_model._meta.db_table
            object_pk = _object_pk(model, connection, row.pk)
            with _writing_grants():
                same = Grant.objects.using(using).filter(
                    grantee_tenant=grantee.id, target_table=table, object_pk=object_pk
                )
                # An expired grant admits nothing: a new one takes its place.
                same.filter(expires_at__lte=timezone.now()).delete()
                if same.exists():
                    raise GrantRefused(
                        f"sharing.grant(): {model._meta.label} pk={row.pk!r} is already granted "
                        f"to {grantee.id!r}; revoke that grant first to change it"
                    )
                made.append(
                    Grant.objects.using(using).create(
                        owner_tenant=owner.id,
                        grantee_tenant=grantee.id,
                        target_model=model._meta.label,
                        target_table=table,
                        object_pk=object_pk,
                        owner_key=expected,
                        can_write=write,
                        expires_at=expires_at,
                        created_at=timezone.now(),
                    )
                )
    for given in made:
        _audit("grant.given", given, owner.id, to=given.grantee_tenant)
        _audit("grant.received", given, given.grantee_tenant, by=given.owner_tenant)
    return made if rows is not None and isinstance(obj, models.QuerySet) else made[0]


def _audit(event: str, given: Grant, tenant_id: str, **fields: Any) -> None:
    # A grant is an event of both tenants: each is filed in its own chain
    # with that tenant bound, since audit.emit refuses a bound tenant naming
    # another (docs/security.md#naming-another-tenant).
    token = set_current_tenant(tenant_id)
    try:
        audit.emit(
            event,
            tenant=tenant_id,
            level=logging.INFO,
            grant=given.pk,
            model=given.target_model,
            object_pk=given.object_pk,
            write=given.can_write,
            expires=None if given.expires_at is None else given.expires_at.isoformat(),
            **fields,
        )
    finally:
        reset_current_tenant(token)


def revoke(given: Grant | int) -> None:
    """Remove a grant: the grantee stops seeing the row at its next query.
    Only the owning tenant, bound, revokes (or trusted code with none bound)."""
    bound = get_current_tenant()
    pk = given.pk if isinstance(given, Grant) else given
    using = given._state.db if isinstance(given, Grant) and given._state.db else "default"
    with _writing_grants():
        found = list(Grant.objects.using(using).filter(pk=pk))
        if not found:
            raise GrantRefused(f"sharing.revoke(): no grant {pk!r} (already revoked?)")
        row = found[0]
        if bound is not None and bound.id != row.owner_tenant:
            raise GrantRefused(
                f"sharing.revoke(): grant {pk!r} was given by {row.owner_tenant!r}; only that "
                f"tenant revokes it (tenant {bound.id!r} is bound)"
            )
        Grant.objects.using(using).filter(pk=pk).delete()
    _audit("grant.revoked", row, row.owner_tenant, to=row.grantee_tenant)
    _audit("grant.revoked", row, row.grantee_tenant, by=row.owner_tenant)


def grants_given(tenant: TenantInfo | str | None = None) -> list[Grant]:
    """The live grants ``tenant`` (default: the bound one) gave."""
    return _grants("owner_tenant", tenant)


def grants_received(tenant: TenantInfo | str | None = None) -> list[Grant]:
    """The live grants ``tenant`` (default: the bound one) received."""
    return _grants("grantee_tenant", tenant)


def _grants(column: str, tenant: Any) -> list[Grant]:
    bound = get_current_tenant()
    tenant = bound if tenant is None else tenant
    if tenant is None:
        raise GrantRefused("no tenant given and none is bound")
    tenant_id = tenant.id if isinstance(tenant, TenantInfo) else str(tenant)
    if bound is not None and bound.id != tenant_id:
        # Who shares what with whom is the two parties' business only.
        raise GrantRefused(
            f"sharing.grants_given/grants_received({tenant_id!r}): tenant {bound.id!r} is "
            "bound; a tenant lists only its own grants (trusted code: bind none)"
        )
    now = timezone.now()
    with scoped_as(BYPASS):
        return [
            g
            for g in Grant.objects.filter(**{column: tenant_id})
            if g.expires_at is None or g.expires_at > now
        ]


def held_by(tenant_id: str) -> int:
    """How many grants ``tenant_id`` gave or received (live or not): what
    ``tenantry move`` refuses to strand, the grant table staying on the
    default database. Trusted code only (no tenant bound), like :func:`clear`."""
    bound = get_current_tenant()
    if bound is not None:
        raise GrantRefused(f"sharing.held_by({tenant_id!r}) is refused while a tenant is bound")
    with scoped_as(BYPASS):  # under row-level security no party is bound here
        return Grant.objects.filter(
            models.Q(owner_tenant=tenant_id) | models.Q(grantee_tenant=tenant_id)
        ).count()


def clear(tenant_id: str, using: str | None = None) -> int:
    """Remove every grant ``tenant_id`` gave or received (its deletion, or a
    new tenant taking its id); the number removed. Trusted code only: with a
    tenant bound (any, even ``tenant_id``: a grantee would drop grants
    without their owner's audit) it is refused; a tenant ends a grant with
    :func:`revoke`."""
    bound = get_current_tenant()
    if bound is not None:
        raise GrantRefused(
            f"sharing.clear({tenant_id!r}) is refused while tenant {bound.id!r} is bound: it "
            "removes a tenant's grants when the tenant is deleted (tenantry.lifecycle); end "
            "one grant with sharing.revoke() as its owner"
        )
    with _writing_grants():
        rows = Grant.objects.using(using).filter(
            models.Q(owner_tenant=tenant_id) | models.Q(grantee_tenant=tenant_id)
        )
        deleted, _ = rows.delete()
    return deleted


#: Primary keys per DELETE of the grants of deleted rows (SQLite allows 999
#: parameters a statement; two are the table's name and the batch's own).
_FORGET_BATCH = 500


def forget_deleted_rows(collector: Any) -> int:
    """Delete the grants of the rows ``collector`` (a Django ``Collector``,
    every ORM deletion: ``Model.delete()``, ``QuerySet.delete()``, their
    async forms, cascades, the admin) is about to delete, in its
    transaction (``tenantry.lifecycle`` calls it inside one, so a deletion
    refused or rolled back keeps them). A grant names a row by its primary
    key: left behind, it would admit whatever row takes that key next
    (SQLite reuses the highest key; any database takes an explicit one)
    (docs/collaboration.md#deleting-a-granted-row). One query per table
    and batch of keys; none for models no tenant owns. The number removed."""
    if collector.using != DEFAULT_DB_ALIAS:
        return 0  # grants exist on the default database only (_same_database)
    tables: dict[str, set[str]] = {}
    connection = connections[collector.using]

    def add(model: Any, pks: Iterable[Any]) -> None:
        if model._meta.app_label == "tenantry" or scope_of(model) is None:
            return
        concrete = model._meta.concrete_model
        keys = tables.setdefault(concrete._meta.db_table, set())
        keys.update(_object_pk(concrete, connection, pk) for pk in pks if pk is not None)

    tenant = get_current_tenant()
    for model, instances in collector.data.items():
        add(model, (obj.pk for obj in instances))
        detach_references(model, [obj.pk for obj in instances], tenant, collector.using)
    for queryset in collector.fast_deletes:  # none while a delete signal listens; kept whole
        if queryset.model._meta.app_label != "tenantry" and scope_of(queryset.model):
            with scoped_as(BYPASS):
                add(queryset.model, list(queryset.values_list("pk", flat=True)))
    removed = 0
    with _writing_grants():
        for table, keys in tables.items():
            ordered = sorted(keys)
            for start in range(0, len(ordered), _FORGET_BATCH):
                batch = ordered[start : start + _FORGET_BATCH]
                found = Grant.objects.using(collector.using).filter(
                    target_table=table, object_pk__in=batch
                )
                deleted, _ = found.delete()
                removed += deleted
    return removed


def on_write(query: Any, kind: str) -> None:
    """Every INSERT, UPDATE and DELETE the ORM sends (``tenantry.wall``'s
    compilers): one of the grant table outside this module's own writes
    raises ``GrantProtected``. The wall of the grant table on every
    database: ``save_base()`` (deserializers, ``loaddata``), ``_raw_delete()``
    and any other route to the compilers, not only the manager's methods
    (docs/collaboration.md#the-grant-table)."""
    model = getattr(query, "model", None)
    if model is None or model._meta.concrete_model is not Grant or _granting.get():
        return
    raise GrantProtected(
        f"tenantry.Grant: an {kind.upper()} of the grant table is refused; grants are made "
        "and removed only by tenantry.sharing.grant() and tenantry.sharing.revoke()"
    )


def detach_references(model: Any, pks: Iterable[Any], tenant: TenantInfo | None, using: str) -> int:
    """What other tenants' rows hold of ``pks`` (rows of ``model``) that
    ``tenant`` is deleting, made through write grants
    (``isolation._may_refer_across``): a nullable ForeignKey/OneToOne is set
    to NULL, a many-to-many link row is removed. So the grantee neither
    blocks the owner's deletion (an IntegrityError at commit, a refused
    tenant deletion) nor loses its row to it, and the owner writes nothing of
    the other tenant's row but the key to its own row, gone
    (docs/collaboration.md#when-the-owner-deletes-the-row). One statement
    per such relation and batch of keys; none with no tenant bound (trusted
    code: its collector sees every tenant's rows and applies ``on_delete``).
    The number of rows changed or removed."""
    if tenant is None or model._meta.app_label == "tenantry" or scope_of(model) is None:
        return 0
    if using != DEFAULT_DB_ALIAS:
        return 0  # references across tenants come through grants: default database only
    keys = list(pks)
    pk_name = model._meta.pk.attname
    # (table, its column naming the deleted rows, the path to the other
    # end's tenant column, that end's model, whether a link row)
    work = []
    for relation in model._meta.related_objects:
        field, referring = relation.field, relation.related_model
        if relation.many_to_many:  # a link through another model's field
            through = field.remote_field.through
            if through._meta.auto_created:
                work.append((through, field.m2m_reverse_name(), field.m2m_field_name(), referring))
            continue
        if referring._meta.auto_created or not field.concrete or not field.null:
            continue
        if field.target_field.attname == pk_name:
            work.append((referring, field.attname, None, referring))
    for field in model._meta.many_to_many:  # a link through this model's field
        through = field.remote_field.through
        if through._meta.auto_created:
            other = field.remote_field.model
            work.append((through, field.m2m_column_name(), field.m2m_reverse_field_name(), other))
    changed = 0
    for table, column, path, other in work:
        scope = scope_of(other)
        if scope is None:
            continue  # the other end is no tenant's: nothing of another tenant there
        name, value = tenant_field_value(other, scope.field.name, tenant)
        own = {f"{path}__{name}" if path else name: value}
        with tenant_context(None, must_exist=False), scoped_as(BYPASS):
            for start in range(0, len(keys), _FORGET_BATCH):
                rows = models.QuerySet(model=table).using(using)
                rows = rows.filter(**{f"{column}__in": keys[start : start + _FORGET_BATCH]})
                rows = rows.exclude(**own)  # the deleting tenant's own: Django's to handle
                if path:  # a link row goes with either end
                    changed += rows._raw_delete(using)
                else:
                    changed += rows.update(**{column: None})
    return changed
