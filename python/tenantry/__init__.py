"""tenantry: multi-tenancy for Django and djust LiveView apps, with a Rust core.

The names match ``djust.tenants``, so switching is an import change::

    from tenantry import TenantMixin, resolve_tenant, TenantInfo

Names that need Django's ORM or HTTP layer are imported on first use, so
``import tenantry`` works before Django is set up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._core import __version__
from .exceptions import (
    ArchiveRefused,
    AuditTrailProtected,
    BackendError,
    BackendUnavailable,
    ConfigError,
    DeletionIncomplete,
    FeatureDisabled,
    GrantProtected,
    GrantRefused,
    InvalidKey,
    InvalidTenantId,
    QuotaExceeded,
    RegistryRowProtected,
    TenantError,
    TenantMismatchError,
    TenantNotFound,
    TenantNotSetError,
    TenantSuspended,
    TransactionPoolingError,
)
from .resolvers import (
    RESOLVER_REGISTRY,
    CallableResolver,
    ChainedResolver,
    CustomResolver,
    DomainResolver,
    HeaderResolver,
    PathResolver,
    SessionResolver,
    SubdomainResolver,
    TenantInfo,
    TenantResolver,
    get_tenant_resolver,
    resolve_tenant,
)

_LAZY: dict[str, str] = {
    "get_current_tenant": ".context",
    "set_current_tenant": ".context",
    "reset_current_tenant": ".context",
    "tenant_context": ".context",
    "run_in_tenant": ".context",
    "TenantMiddleware": ".middleware",
    "TenantMixin": ".mixins",
    "TenantScopedMixin": ".mixins",
    "TenantContextProcessor": ".mixins",
    "context_processor": ".mixins",
    "TenantManager": ".managers",
    "TenantQuerySet": ".managers",
    "invalidate_tenant": ".registry",
    "delete_tenant": ".lifecycle",
    "Grant": ".models",
    "expire_live_admissions": ".access",
    "TenantAwareBackendMixin": ".presence",
    "TenantAwareMemoryBackend": ".presence",
    "TenantAwareRedisBackend": ".presence",
    "TenantPresenceManager": ".presence",
    "TenantPresenceRouter": ".presence",
    "get_tenant_presence_backend": ".presence",
    "TenantPresenceMixin": ".live_presence",
    "SharedRoomMixin": ".live_presence",
    "TenantStateMemoryBackend": ".state",
    "TenantStateRedisBackend": ".state",
    "TenantStateManager": ".state",
    "TenantStateRouter": ".state",
    "get_tenant_state_backend": ".state",
}

__all__ = [
    "__version__",
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
    "TenantError",
    "TenantMismatchError",
    "TenantNotFound",
    "TenantNotSetError",
    "TenantSuspended",
    "TransactionPoolingError",
    "RESOLVER_REGISTRY",
    "CallableResolver",
    "ChainedResolver",
    "CustomResolver",
    "DomainResolver",
    "HeaderResolver",
    "PathResolver",
    "SessionResolver",
    "SubdomainResolver",
    "TenantInfo",
    "TenantResolver",
    "get_tenant_resolver",
    "resolve_tenant",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tenantry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    pass
