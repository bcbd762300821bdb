"""The exceptions tenantry raises (defined in the Rust core)."""

from ._core import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    InvalidKey,
    InvalidTenantId,
    QuotaExceeded,
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
    "TenantMismatchError",
    "TenantNotFound",
    "TenantNotSetError",
]
