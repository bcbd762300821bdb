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

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from ._core import TenantInfo, TenantNotFound, lookup_tenant

__all__ = [
    "get_current_tenant",
    "keep_bound",
    "reset_current_tenant",
    "run_in_tenant",
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
T = TypeVar("T")


def as_tenant(tenant: TenantInfo | str | int | None) -> TenantInfo | None:
    """``None``, a ``TenantInfo``, or a validated id turned into one
    (``InvalidTenantId`` otherwise). djust.tenants' own ``TenantInfo`` (bound
    in the shared variable by views not yet switched to tenantry) becomes
    ours, its id validated like any other."""
    if tenant is None or isinstance(tenant, TenantInfo):
        return tenant
    if type(tenant).__name__ == "TenantInfo" and type(tenant).__module__.startswith("djust."):
        return TenantInfo(
            tenant.id,
            name=getattr(tenant, "name", None),
            settings=getattr(tenant, "settings", None),
            metadata=getattr(tenant, "metadata", None),
            raw=getattr(tenant, "_raw", None),
        )
    return TenantInfo(tenant)


def get_current_tenant() -> TenantInfo | None:
    """The tenant bound to the running request, event or job, else None."""
    return _current.get()


def set_current_tenant(tenant: TenantInfo | str | int | None) -> Token:
    """Bind ``tenant`` and return the token that restores the previous one
    (``reset_current_tenant(token)``). Prefer :func:`tenant_context`."""
    if tenant is not None and type(tenant) is not TenantInfo:
        tenant = as_tenant(tenant)
    return _current.set(tenant)


def reset_current_tenant(token: Token) -> None:
    _current.reset(token)


@contextmanager
def tenant_context(
    tenant: TenantInfo | str | int | None, *, must_exist: bool = True
) -> Iterator[TenantInfo | None]:
    """Bind ``tenant`` for the ``with`` block (or a decorated function) and
    restore the previous tenant afterwards, also on exceptions::

        with tenant_context("acme"):
            Item.objects.count()   # acme's items only

    With a registry (``TENANT_MODEL`` / ``TENANT_VALIDATOR``) an id it does not
    know raises ``TenantNotFound`` (a ``LookupError``), and the bound tenant
    carries the registry's name, settings and row. ``must_exist=False`` binds
    the id as given (for code that creates the tenant's row, or cleans up
    after a deleted one).
    """
    bound = _registered(tenant) if must_exist else as_tenant(tenant)
    token = _current.set(bound)
    try:
        yield bound
    finally:
        _current.reset(token)


def run_in_tenant(
    tenant: TenantInfo | str | int | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """``fn(*args, **kwargs)`` with ``tenant`` bound (checked against the
    registry like :func:`tenant_context`), restoring the thread's previous
    binding afterwards. For threads, which do not inherit the caller's
    tenant::

        pool.submit(run_in_tenant, request.tenant, rebuild_thumbnails, album_id)
    """
    with tenant_context(tenant):
        return fn(*args, **kwargs)


def _registered(tenant: TenantInfo | str | int | None) -> TenantInfo | None:
    if tenant is None:
        return None
    known = lookup_tenant(tenant)  # InvalidTenantId for a bad id
    if known is None:
        from . import audit

        audit.emit("tenant.unknown", tenant=tenant, level=logging.WARNING, source="tenant_context")
        raise TenantNotFound(
            f"tenant_context({str(tenant)!r}): the registry (TENANT_MODEL / TENANT_VALIDATOR) "
            "does not know this tenant; create its row first, or pass must_exist=False"
        )
    return known


def keep_bound(response: Any, tenant: TenantInfo | None) -> Any:
    """Keep ``tenant`` bound while a streaming (or file) response's body is
    produced: the body runs after the view returned and the binding was
    restored, in the server's loop (WSGI) or the ASGI handler (sync bodies in
    a worker thread). Each chunk is produced with ``tenant`` bound."""
    if not getattr(response, "streaming", False):
        return response
    if response.is_async:
        response.streaming_content = _bound_async(response.streaming_content, tenant)
    else:
        response.streaming_content = _bound_sync(response.streaming_content, tenant)
    return response


def _bound_sync(chunks: Iterable[Any], tenant: TenantInfo | None) -> Iterator[Any]:
    iterator = iter(chunks)
    while True:
        token = _current.set(tenant)
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            _current.reset(token)
        yield chunk


async def _bound_async(chunks: AsyncIterable[Any], tenant: TenantInfo | None) -> AsyncIterator[Any]:
    iterator = aiter(chunks)
    while True:
        token = _current.set(tenant)
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        finally:
            _current.reset(token)
        yield chunk
