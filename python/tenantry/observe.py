"""Where what watches tenants (``tenantry.metrics``, ``tenantry.tracing``)
hooks into the request, live-event, job and refusal paths.

Each hook is a module attribute that is ``None`` while nothing watches: the
paths read it once and pay nothing else (no call, no crossing into the Rust
core). A watcher adds its function with :func:`watch` and takes it back with
:func:`unwatch`; several watchers of one path are called in turn.

``request(tenant, seconds)``  after ``TenantMiddleware`` answered a request
                               (``tenant`` None when none was bound)
``event(tenant)``              a live event or work-causing frame of ``tenant``
                               passed its gates
``job(tenant)``                a Celery task started with ``tenant`` bound
``refusal(why, tenant)``       ``tenantry.access.refuse`` counted a refusal
                               (``why``: one of ``REFUSAL_REASONS``)

A watcher must not raise (its errors are the watcher's to log) and should
cost a few microseconds at most: it runs on every request or event.
See docs/observability.md.

A hook is tenantry's to call: with a tenant bound, a call naming another
tenant is refused (``TenantMismatchError``) before any watcher sees it, so
a tenant's code cannot count requests, events, jobs or refusals against
another tenant's figures (docs/security.md#naming-another-tenant).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .naming import refuse_naming_another

__all__ = ["HOOKS", "event", "job", "refusal", "request", "unwatch", "watch", "watchers"]

HOOKS = ("request", "event", "job", "refusal")

request: Callable[[Any, float], None] | None = None
event: Callable[[Any], None] | None = None
job: Callable[[Any], None] | None = None
refusal: Callable[[str, Any], None] | None = None

_watchers: dict[str, list[Callable[..., None]]] = {hook: [] for hook in HOOKS}
_lock = threading.Lock()


#: Where each hook's tenant is among its arguments.
_TENANT_ARGUMENT = {"request": 0, "event": 0, "job": 0, "refusal": 1}


def _combined(hook: str, functions: list[Callable[..., None]]) -> Callable[..., None] | None:
    if not functions:
        return None
    chain = tuple(functions)
    index = _TENANT_ARGUMENT[hook]
    what = f"tenantry.observe.{hook}"

    def each(*args: Any) -> None:
        refuse_naming_another(args[index] if len(args) > index else None, what)
        for function in chain:
            function(*args)

    return each


def watch(hook: str, function: Callable[..., None]) -> None:
    """Call ``function`` on ``hook`` (one of :data:`HOOKS`); idempotent."""
    if hook not in _watchers:
        raise ValueError(f"unknown hook {hook!r}; one of {HOOKS}")
    with _lock:
        if function not in _watchers[hook]:
            _watchers[hook].append(function)
        globals()[hook] = _combined(hook, _watchers[hook])


def watchers(hook: str) -> tuple[Callable[..., None], ...]:
    """The functions watching ``hook`` now."""
    return tuple(_watchers[hook])


def unwatch(hook: str, function: Callable[..., None]) -> None:
    """Stop calling ``function`` on ``hook`` (no error when it was not)."""
    if hook not in _watchers:
        raise ValueError(f"unknown hook {hook!r}; one of {HOOKS}")
    with _lock:
        if function in _watchers[hook]:
            _watchers[hook].remove(function)
        globals()[hook] = _combined(hook, _watchers[hook])
