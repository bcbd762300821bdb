"""The current tenant of this request, WebSocket event or job.

A ``contextvars.ContextVar``, never a thread-local: djust runs every
connection's sync code on one shared executor thread, and ``sync_to_async``
copies the caller's context into it, so each connection keeps its own value.

When djust is installed, tenantry uses djust's own variable
(``djust.tenants.middleware._current_tenant``, handed over by
``tenantry.djust.context``) instead of a second one: djust binds it around
every WebSocket event, and djust's managers and ours then always agree on
the tenant.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

from . import audit
from ._core import TenantInfo, TenantNotFound, lookup_tenant
from .djust.context import is_djust_tenant_info, shared_tenant_variable

__all__ = [
    "TenantContext",
    "get_current_tenant",
    "keep_bound",
    "reset_current_tenant",
    "run_in_tenant",
    "set_current_tenant",
    "tenant_context",
]


_current: ContextVar[TenantInfo | None] = shared_tenant_variable()
#: The member tenant a presence call into a space of shared rooms was
#: admitted for (``tenantry.shared_rooms`` sets it around the calls of a room
#: the bound tenant opened; the core refuses a bound tenant's call without
#: it: docs/collaboration.md#live-rooms).
_room_member: ContextVar[str | None] = ContextVar("tenantry_room_member", default=None)
T = TypeVar("T")


def as_tenant(tenant: TenantInfo | str | int | None) -> TenantInfo | None:
    """``None``, a ``TenantInfo``, or a validated id turned into one
    (``InvalidTenantId`` otherwise). djust.tenants' own ``TenantInfo`` (bound
    in the shared variable by views not yet switched to tenantry) becomes
    ours, its id validated like any other."""
    if tenant is None or isinstance(tenant, TenantInfo):
        return tenant
    if is_djust_tenant_info(tenant):
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


class TenantContext:
    """What :func:`tenant_context` returns: a context manager, and a
    decorator that binds the tenant around the *body* of what it decorates,
    whenever that body runs."""

    __slots__ = ("_must_exist", "_tenant", "_token")

    def __init__(self, tenant: TenantInfo | str | int | None, must_exist: bool) -> None:
        self._tenant = tenant
        self._must_exist = must_exist
        self._token: Token | None = None

    def resolve(self) -> TenantInfo | None:
        """The tenant to bind: checked against the registry now (unless
        ``must_exist=False``)."""
        return _registered(self._tenant) if self._must_exist else as_tenant(self._tenant)

    def __enter__(self) -> TenantInfo | None:
        if self._token is not None:
            raise RuntimeError(
                "this tenant_context(...) is already entered; use one per with block"
            )
        bound = self.resolve()
        self._token = _current.set(bound)
        return bound

    def __exit__(self, *exc_info: Any) -> None:
        token, self._token = self._token, None
        if token is not None:
            _current.reset(token)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return bind_body(func, self.resolve)


def tenant_context(
    tenant: TenantInfo | str | int | None, *, must_exist: bool = True
) -> TenantContext:
    """Bind ``tenant`` for the ``with`` block and restore the previous tenant
    afterwards, also on exceptions::

        with tenant_context("acme"):
            Item.objects.count()   # acme's items only

    As a decorator it binds the tenant around the decorated body each time
    it runs: a plain function's call, every resumption of a generator or an
    async generator (each ``next``/``send``/``throw``/``close``, restoring
    the consumer's tenant in between), the whole of a coroutine, and the
    body of a coroutine, generator or streaming response a plain function
    returns. A generator
    made inside a ``with`` block and consumed after it runs with whatever is
    bound where it is consumed: decorate the generator function instead.

    With a registry (``TENANT_MODEL`` / ``TENANT_VALIDATOR``) an id it does not
    know raises ``TenantNotFound`` (a ``LookupError``; a decorated body raises
    it when it starts), and the bound tenant carries the registry's name,
    settings and row. ``must_exist=False`` binds the id as given (for code
    that creates the tenant's row, or cleans up after a deleted one).
    """
    return TenantContext(tenant, must_exist)


def run_in_tenant(
    tenant: TenantInfo | str | int | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    """``fn(*args, **kwargs)`` with ``tenant`` bound (checked against the
    registry like :func:`tenant_context`, now), restoring the thread's previous
    binding afterwards. For threads, which do not inherit the caller's
    tenant::

        pool.submit(run_in_tenant, request.tenant, rebuild_thumbnails, album_id)

    When ``fn`` is a coroutine function (or returns a coroutine, a generator
    or an async generator), what it returns keeps ``tenant`` bound while its
    body runs: ``await run_in_tenant("acme", fetch_report)`` runs
    ``fetch_report`` as acme wherever it is awaited.
    """
    bound = tenant_context(tenant).resolve()
    return bind_body(fn, lambda: bound)(*args, **kwargs)


# -- binding around bodies that run later --------------------------------------


def bind_body(func: Callable[..., Any], resolve: Callable[[], TenantInfo | None]) -> Any:
    """``func`` wrapped so its body runs with ``resolve()``'s tenant bound
    (see :func:`tenant_context` as a decorator). ``resolve`` is called when
    the body starts (the registry check of each call)."""
    if not callable(func):
        raise TypeError(f"tenant_context(...) decorates a callable, not {func!r}")
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        def async_generator(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            return _bound_async_generator(lambda: func(*args, **kwargs), resolve)

        return async_generator
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            return (yield from _bound_generator(lambda: func(*args, **kwargs), resolve))

        return generator
    if iscoroutinefunction(func):

        @functools.wraps(func)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            token = _current.set(resolve())
            try:
                return await func(*args, **kwargs)
            finally:
                _current.reset(token)

        return coroutine

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        tenant = resolve()
        token = _current.set(tenant)
        try:
            result = func(*args, **kwargs)
        finally:
            _current.reset(token)
        return _bind_result(result, tenant, func)

    return call


def _bind_result(result: Any, tenant: TenantInfo | None, func: Any) -> Any:
    """A body ``func`` returned to run later (a coroutine, a generator, an
    async generator, a streaming response's content), wrapped to run with
    ``tenant`` bound; anything else as is. Another awaitable cannot be bound
    around: refused."""
    if inspect.iscoroutine(result):
        return _bound_coroutine(result, tenant)
    if inspect.isgenerator(result):
        return _bound_generator(lambda: result, lambda: tenant)
    if inspect.isasyncgen(result):
        return _bound_async_generator(lambda: result, lambda: tenant)
    if getattr(result, "streaming", False) is True and hasattr(result, "streaming_content"):
        return keep_bound(result, tenant)  # a streaming response's body
    if inspect.isawaitable(result) and not isinstance(result, asyncio.Future):
        # An asyncio Task (a Future) already carries the context it was
        # created in, the tenant included; another awaitable runs its body
        # where it is awaited, which cannot be bound from here.
        raise TypeError(
            f"{getattr(func, '__qualname__', func)!r} returned {type(result).__name__}, an "
            "awaitable tenantry cannot keep a tenant bound around; return a coroutine, "
            "or bind the tenant inside it (with tenant_context(...))"
        )
    return result


async def _bound_coroutine(coroutine: Any, tenant: TenantInfo | None) -> Any:
    token = _current.set(tenant)
    try:
        return await coroutine
    finally:
        _current.reset(token)


def _bound_generator(
    make: Callable[[], Generator[Any, Any, Any]], resolve: Callable[[], TenantInfo | None]
) -> Generator[Any, Any, Any]:
    """Drive the generator ``make()`` returns with the tenant bound at every
    resumption (first ``next``, each ``send``/``throw``, ``close``), and
    the consumer's own binding in between."""
    tenant = resolve()
    token = _current.set(tenant)
    try:
        inner = make()
    finally:
        _current.reset(token)
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        token = _current.set(tenant)
        try:
            if thrown is not None:
                value = inner.throw(thrown)
            else:
                value = inner.send(sent)
        except StopIteration as stop:
            return stop.value
        finally:
            thrown = None
            _current.reset(token)
        try:
            sent = yield value
        except GeneratorExit:
            token = _current.set(tenant)
            try:
                inner.close()
            finally:
                _current.reset(token)
            raise
        except BaseException as exc:  # thrown in: hand it to the body
            thrown, sent = exc, None


async def _bound_async_generator(
    make: Callable[[], AsyncGenerator[Any, Any]], resolve: Callable[[], TenantInfo | None]
) -> AsyncGenerator[Any, Any]:
    """:func:`_bound_generator` for an async generator: every ``asend``,
    ``athrow`` and ``aclose`` of it runs with the tenant bound."""
    tenant = resolve()
    token = _current.set(tenant)
    try:
        inner = make()
    finally:
        _current.reset(token)
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            token = _current.set(tenant)
            try:
                if thrown is not None:
                    value = await inner.athrow(thrown)
                else:
                    value = await inner.asend(sent)
            except StopAsyncIteration:
                return
            finally:
                thrown = None
                _current.reset(token)
            try:
                sent = yield value
            except GeneratorExit:
                raise
            except BaseException as exc:  # thrown in: hand it to the body
                thrown, sent = exc, None
    finally:
        token = _current.set(tenant)
        try:
            await inner.aclose()
        finally:
            _current.reset(token)


def _registered(tenant: TenantInfo | str | int | None) -> TenantInfo | None:
    if tenant is None:
        return None
    known = lookup_tenant(tenant)  # InvalidTenantId for a bad id
    if known is None:
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
