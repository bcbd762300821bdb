"""Which scope the running code's queries ask for, and the names PostgreSQL reads it by.

The bottom of the database layer (docs/architecture.md#layers-of-the-python-package):
the connection wrapper (:mod:`tenantry.db.rls`), the migration operation
(:mod:`tenantry.db.operations`), the querysets (:mod:`tenantry.db.querysets`)
and the ORM rules (:mod:`tenantry.isolation`, :mod:`tenantry.managers`) all
read it; it imports none of them.

``TENANT_SETTING``, ``BYPASS_SETTING``  the two settings each policy reads
``POLICY``                              the name of the policy ``EnableTenantRLS`` creates
``scoped_as(scope)``                    a queryset's own scope while its queries run
``rls_bypass(reason)``                  a block whose queries see every tenant's rows
``bypassing()``                         whether the running code is inside either bypass
"""

from __future__ import annotations

import gc
import inspect
import logging
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .. import audit
from ..context import get_current_tenant

__all__ = [
    "BYPASS",
    "BYPASS_SETTING",
    "POLICY",
    "TENANT_SETTING",
    "Scope",
    "bypassing",
    "queryset_scope",
    "rls_bypass",
    "scoped_as",
]

TENANT_SETTING = "tenantry.tenant_id"
BYPASS_SETTING = "tenantry.bypass"

#: What the database sees: (tenant id or "", "on" or "").
Scope = tuple[str, str]
BYPASS: Scope = ("", "on")

#: The policy every table behind the wall carries (``EnableTenantRLS``).
POLICY = "tenantry_isolation"

#: The scope a queryset asked for while it runs its queries (unscoped():
#: BYPASS; for_tenant(t): t), else None: the bound tenant.
_override: ContextVar[Scope | None] = ContextVar("tenantry_rls_scope", default=None)


@contextmanager
def scoped_as(scope: Scope | None) -> Iterator[None]:
    """Run the block's queries with ``scope`` (None: the bound tenant)."""
    token = _override.set(scope)
    try:
        yield
    finally:
        _override.reset(token)


class rls_bypass:  # lower case: a context manager used like a function, as before
    """The block's queries ignore the tenant policies (``tenantry.bypass``).

    For work that must see or write every tenant's rows with RLS on, such as
    a data migration or a maintenance command. Audited as ``rls.bypass``
    with ``reason``. ``unscoped(reason=...)`` querysets already bypass for
    their own queries.

    It covers exactly its own block. A generator (or async generator) that
    opens it has its own queries bypass while it runs, never its consumer's
    between two ``yield``: the bypass lives in a context variable, which a
    generator shares with whoever iterates it, so the block remembers the
    generator that opened it and counts only while that generator is
    running.
    """

    __slots__ = ("_block", "_token", "reason")

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def __enter__(self) -> None:
        audit.emit(
            "rls.bypass",
            tenant=get_current_tenant(),
            level=logging.WARNING,
            reason=self.reason or "(no reason given)",
        )
        self._block = _Block(_opener(sys._getframe(1)), _blocks.get())
        self._token = _blocks.set(self._block)

    def __exit__(self, *exc_info: Any) -> None:
        try:
            _blocks.reset(self._token)
        except ValueError:
            # Closed in another context (a generator finalized elsewhere):
            # the block at least stops counting.
            self._block.ended = True


class _Block:
    """One open ``rls_bypass()`` block and the block it is nested in.
    ``opener``: None for ordinary code (a function or coroutine, whose
    context variables nobody else sees while the block is open); the frame
    of a generator that opened it; or the async generator object that did."""

    __slots__ = ("ended", "opener", "outer")

    def __init__(self, opener: Any, outer: _Block | None) -> None:
        self.opener, self.outer, self.ended = opener, outer, False

    def covers(self) -> bool:
        """Whether a query sent now is inside this block's own code."""
        if self.ended:
            return False
        opener = self.opener
        if opener is None:
            return True
        if isinstance(opener, types.FrameType):
            # A generator runs on the stack of whoever resumes it: its
            # frame is on this thread's stack exactly while it runs.
            frame = sys._getframe(1)
            while frame is not None:
                if frame is opener:
                    return True
                frame = frame.f_back
            return False
        return bool(opener.ag_running)


def _opener(frame: Any) -> Any:
    """What a block opened in ``frame`` counts on (see ``_Block``)."""
    flags = frame.f_code.co_flags
    if flags & inspect.CO_GENERATOR:
        return frame
    if not flags & inspect.CO_ASYNC_GENERATOR:
        return None
    # Its queries run on worker threads (sync_to_async), away from its
    # frame: only the async generator's own ag_running tells. Finding the
    # object scans the heap once (milliseconds): open the block once around
    # the generator's work, not once per row.
    for referrer in gc.get_referrers(frame):
        if getattr(referrer, "ag_frame", None) is frame:
            return referrer
    return _NeverRunning()


class _NeverRunning:
    """An async generator that could not be found: its block never covers
    (fail closed: the queries run with the bound tenant)."""

    ag_running = False


#: The innermost open ``rls_bypass()`` block of this context.
_blocks: ContextVar[_Block | None] = ContextVar("tenantry_rls_bypass", default=None)


def _bypassing() -> bool:
    block = _blocks.get()
    while block is not None:
        if block.covers():
            return True
        block = block.outer
    return False


def _asked() -> Scope | None:
    """The scope the running code asked for (a queryset's own, or an
    ``rls_bypass()`` block that covers it), or None: the bound tenant."""
    scope = _override.get()
    if scope is None and _blocks.get() is not None and _bypassing():
        return BYPASS
    return scope


def queryset_scope() -> Scope | None:
    """The scope a queryset set for its own query (``unscoped()``,
    ``for_tenant()``) around the running code, if any."""
    return _override.get()


def bypassing() -> bool:
    """Whether the running code is inside :class:`rls_bypass` (a block that
    covers it) or an ``unscoped()`` queryset's own query: the ORM's first
    wall lifts its write rules there too (docs/querysets.md#escape-hatches)."""
    return _asked() == BYPASS
