"""The exceptions tenantry raises (defined in the Rust core).

Every one is a :class:`TenantError`; most keep a standard base as well
(``InvalidTenantId`` is a ``ValueError``, ``BackendUnavailable`` a
``ConnectionError``, ...). ``TenantMismatchError`` (an isolation refusal)
has no other base: it is deliberately not an ``OSError``, so an
``except OSError`` around file I/O never swallows it. See docs/api.md#exceptions.
"""

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
    "InvalidKey",
    "InvalidTenantId",
    "QuotaExceeded",
    "TenantError",
    "TenantMismatchError",
    "TenantNotFound",
    "TenantNotSetError",
]
