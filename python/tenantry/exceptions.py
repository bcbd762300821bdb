"""The exceptions tenantry raises.

Every one is a :class:`TenantError`; most keep a standard base as well
(``InvalidTenantId`` is a ``ValueError``, ``BackendUnavailable`` a
``ConnectionError``, ...). ``TenantMismatchError`` (an isolation refusal)
has no other base: it is deliberately not an ``OSError``, so an
``except OSError`` around file I/O never swallows it. See docs/api.md#exceptions.

The core's exceptions are defined in Rust (``src/bindings/errors.rs``); the
three below belong to the Django layer (one has a Django base) and are
defined here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404

from ._core import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    InvalidKey,
    InvalidTenantId,
    QuotaExceeded,
    TenantError,
    TenantMismatchError,
    TenantNotFound,
    TenantNotSetError,
)

__all__ = [
    "ArchiveRefused",
    "AuditTrailProtected",
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "DeletionIncomplete",
    "FeatureDisabled",
    "GrantProtected",
    "GrantRefused",
    "InvalidKey",
    "InvalidTenantId",
    "QuotaExceeded",
    "RegistryRowProtected",
    "TenantDatabaseMissing",
    "TenantError",
    "TenantMismatchError",
    "TenantNotFound",
    "TenantNotSetError",
    "TenantSuspended",
    "TransactionPoolingError",
]


class RegistryRowProtected(TenantError, PermissionDenied):
    """A change to a saved registry row that would free a tenant's id with
    its data still attached (a new id, a new incarnation) was refused. Also
    Django's ``PermissionDenied``: the admin and views answer 403."""

    __module__ = "tenantry"


class DeletionIncomplete(TenantError):
    """A tenant's rows were deleted but a store (files, cache, Redis) failed:
    ``certificate`` says what went and what did not (``certificates``: one
    per tenant, when one ``QuerySet.delete()`` deleted several). Run the
    deletion again with ``leftovers=True`` (``manage.py tenantry delete ID
    --leftovers``)."""

    __module__ = "tenantry"

    def __init__(
        self, message: str, certificate: Any = None, certificates: Sequence[Any] = ()
    ) -> None:
        super().__init__(message)
        self.certificate = certificate
        self.certificates = list(certificates) or ([certificate] if certificate else [])


class AuditTrailProtected(TenantError, PermissionDenied):
    """A stored audit event (``tenantry.AuditEvent``) would have been changed
    or removed: the trail is append-only; only the retention pruning removes
    rows, from the oldest end (docs/operations.md#audit-trail)."""

    __module__ = "tenantry"


class GrantProtected(TenantError, PermissionDenied):
    """A cross-tenant grant (``tenantry.Grant``) would have been made,
    changed or removed outside ``tenantry.sharing.grant``/``revoke``: no ORM
    route may forge, widen or move one (docs/collaboration.md#the-grant-table)."""

    __module__ = "tenantry"


class GrantRefused(TenantError, ValueError):
    """``tenantry.sharing.grant()`` refused: the message names what was
    wrong (not the bound owner, the same tenant, an unknown, inactive or
    suspended tenant, a model no tenant owns, an expiry in the past)."""

    __module__ = "tenantry"


class ArchiveRefused(TenantError, ValueError):
    """``manage.py tenantry import`` refused an archive: a file whose hash or
    count is not the manifest's (the message names the file and the
    mismatch), a target tenant that is not empty, or an archive that is not
    one (docs/operations.md#export-and-import). Nothing was written."""

    __module__ = "tenantry"


class TenantSuspended(TenantError, Http404):
    """The tenant is suspended (``manage.py tenantry suspend``): admission
    refuses it. ``TenantMiddleware`` answers a page 503 saying so, an open
    live view gets an error frame with this message, a job does not run.
    Also Django's ``Http404`` (every admission refusal is one), so code that
    handles a refused tenant handles this one too
    (docs/operations.md#suspending-a-tenant)."""

    __module__ = "tenantry"

    #: The message of every refusal of a suspended tenant (the page, the
    #: error frame): the reason stays with the operator.
    MESSAGE = "This tenant is suspended"
    #: A suspension whose reason starts with this is ``manage.py tenantry
    #: move`` switching the tenant's database (tenantry.moving): refused the
    #: same way, for seconds, saying so.
    MOVING_REASON = "tenantry:moving"
    MOVING_MESSAGE = "This tenant is being moved; try again in a few seconds"

    def __init__(
        self, message: str = MESSAGE, tenant_id: str | None = None, moving: bool = False
    ) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.moving = moving

    @classmethod
    def of(cls, tenant_id: str, reason: str) -> TenantSuspended:
        """The refusal of ``tenant_id`` suspended for ``reason``."""
        if reason.startswith(cls.MOVING_REASON):
            return cls(cls.MOVING_MESSAGE, tenant_id=tenant_id, moving=True)
        return cls(tenant_id=tenant_id)


class TenantDatabaseMissing(BackendUnavailable):
    """The registry puts a tenant on a database alias that is not in
    ``settings.DATABASES`` (docs/postgresql.md#a-database-per-tenant): its
    requests answer 503 and its queries are refused, never served from
    ``default`` instead. Also ``BackendUnavailable``, so every path that
    answers an unreachable backend (503 pages, error frames) answers this."""

    __module__ = "tenantry"

    def __init__(self, message: str, tenant_id: str | None = None, alias: str | None = None):
        super().__init__(message)
        self.tenant_id = tenant_id
        self.alias = alias


class FeatureDisabled(TenantError, Http404):
    """A view or live-view handler behind ``tenantry.flags.tenant_flag(NAME)``
    was called while the flag is off for the bound tenant (or no tenant is
    bound): a view answers 404; a live handler is refused with an error
    frame before it runs (docs/operations.md#feature-flags)."""

    __module__ = "tenantry"

    def __init__(self, flag: str) -> None:
        super().__init__(f"Feature {flag!r} is not enabled for this tenant")
        self.flag = flag


class TransactionPoolingError(BackendUnavailable):
    """``TENANT_RLS = True`` (session settings) on a connection whose server
    session is shared with other clients between transactions (a
    transaction-pooling proxy, pgbouncer ``pool_mode = transaction``): a
    tenant's setting would be read by another client's queries, so the
    connection is closed and refused. Also ``BackendUnavailable``: views
    answer 503. Use ``TENANT_RLS = "transaction"`` behind such a proxy
    (docs/postgresql.md#session-settings-behind-transaction-pooling-refused)."""

    __module__ = "tenantry"
