"""PostgreSQL row-level security as the second wall (docs/postgresql.md).

``EnableTenantRLS``  the migration operation that puts a table behind it;
``UpgradeTenantRLS`` adds the grant policies to a table put there before grants existed;
``rls_bypass``       a block whose queries see every tenant's rows (audited);
``rls_mode``         ``"off"``, ``"session"`` or ``"transaction"`` (``TENANT_RLS``);
``TenantDatabaseRouter`` a database per tenant, ``database_for`` a tenant's alias.
"""

from .operations import EnableTenantRLS, UpgradeTenantRLS
from .rls import rls_mode
from .router import TenantDatabaseRouter, database_for
from .scope import BYPASS_SETTING, POLICY, TENANT_SETTING, rls_bypass

__all__ = [
    "BYPASS_SETTING",
    "POLICY",
    "TENANT_SETTING",
    "EnableTenantRLS",
    "TenantDatabaseRouter",
    "UpgradeTenantRLS",
    "database_for",
    "rls_bypass",
    "rls_mode",
]
