"""The exceptions tenantry raises (defined in the Rust core)."""

from ._core import (
    BackendUnavailable,
    ConfigError,
    InvalidKey,
    InvalidTenantId,
    TenantNotSetError,
)

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "InvalidKey",
    "InvalidTenantId",
    "TenantNotSetError",
]
