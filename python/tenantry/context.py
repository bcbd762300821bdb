"""The current tenant of this request, WebSocket event or job.

A ``contextvars.ContextVar``, never a thread-local: djust runs every
connection's sync code on one shared executor thread, and ``sync_to_async``
copies the caller's context into it, so each connection keeps its own value.

When djust is installed, tenantry uses djust's own variable
(``djust.tenants.middleware._current_tenant``) instead of a second one: djust
binds it around every WebSocket event, and djust's managers and ours then
always agree on the tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from ._core import TenantInfo

__all__ = [
    "get_current_tenant",
    "reset_current_tenant",
    "set_current_tenant",
    "tenant_context",
]


def _shared_variable() -> ContextVar[TenantInfo | None]:
    try:
        from djust.tenants.middleware import _current_tenant
    except Exception:  # djust missing, or a version without the variable
        return ContextVar("tenantry_current_tenant", default=None)
    return _current_tenant


_current: ContextVar[TenantInfo | None] = _shared_variable()


def as_tenant(tenant: TenantInfo | str | int | None) -> TenantInfo | None:
    """``None``, a ``TenantInfo``, or a validated id turned into one
    (``InvalidTenantId`` otherwise)."""
    if tenant is None or isinstance(tenant, TenantInfo):
        return tenant
    return TenantInfo(tenant)


def get_current_tenant() -> TenantInfo | None:
    """The tenant bound to the running request, event or job, else None."""
    return _current.get()


def set_current_tenant(tenant: TenantInfo | str | int | None) -> Token:
    """Bind ``tenant`` and return the token that restores the previous one
    (``reset_current_tenant(token)``). Prefer :func:`tenant_context`."""
    return _current.set(as_tenant(tenant))


def reset_current_tenant(token: Token) -> None:
    _current.reset(token)


@contextmanager
def tenant_context(tenant: TenantInfo | str | int | None) -> Iterator[TenantInfo | None]:
    """Bind ``tenant`` for the ``with`` block (or a decorated function) and
    restore the previous tenant afterwards, also on exceptions::

        with tenant_context("acme"):
            Item.objects.count()   # acme's items only
    """
    bound = as_tenant(tenant)
    token = _current.set(bound)
    try:
        yield bound
    finally:
        _current.reset(token)
