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

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import PermissionDenied

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
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "DeletionIncomplete",
    "InvalidKey",
    "InvalidTenantId",
    "QuotaExceeded",
    "RegistryRowProtected",
    "TenantError",
    "TenantMismatchError",
    "TenantNotFound",
    "TenantNotSetError",
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


class TransactionPoolingError(BackendUnavailable):
    """``TENANT_RLS = True`` (session settings) on a connection whose server
    session is shared with other clients between transactions (a
    transaction-pooling proxy, pgbouncer ``pool_mode = transaction``): a
    tenant's setting would be read by another client's queries, so the
    connection is closed and refused. Also ``BackendUnavailable``: views
    answer 503. Use ``TENANT_RLS = "transaction"`` behind such a proxy
    (docs/postgresql.md#session-settings-behind-transaction-pooling-refused)."""

    __module__ = "tenantry"
