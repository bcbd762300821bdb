"""Celery: the tenant travels with the task (docs/jobs.md).

Active once this module is imported, which the app's ``ready()`` does when
Celery is installed and ``"tenantry"`` is in ``INSTALLED_APPS`` (the worker
imports it too: Celery's Django fix-up runs ``django.setup()``).

- Publishing (``delay``, ``apply_async``, ``send_task``, canvas) while a
  tenant is bound puts its id in the message headers (``tenantry_tenant``):
  no extra broker round trip, the header rides on the publish.
- The worker binds that tenant for the task's run, from before the task
  starts until after its callbacks, chain step or chord callback are
  published and its result is stored (so those carry it too), and restores
  the previous binding afterwards: after success, failure and retry. The id
  goes through the registry like ``tenant_context(id)``: an invalid id
  (``InvalidTenantId``) or one the registry does not know (a deleted tenant:
  ``TenantNotFound``) fails the task before its body runs; it never runs
  unscoped.
- A message without the header runs with no tenant bound (scoped managers
  then raise ``TenantNotSetError``), unless the task is declared a tenant
  task (:func:`tenant_task`, ``base=TenantTask``, or the task option
  ``tenant_required=True``): then it fails with ``TenantNotSetError``.
- A task executed eagerly (``apply()``, ``delay()`` / ``apply_async()``
  under ``task_always_eager``, eager chains, groups and chords) goes through
  the same rule as a published one, applied where it runs, in the caller's
  context: the caller's bound tenant is what a publish would stamp, an
  explicit header naming another tenant is the same conflict (refused with
  ``TenantMismatchError``), and the tenant it runs in is looked up in the
  registry the same way. Without a tenant bound and without the header it
  runs with none, as the caller does.
- tenantry never changes the ``headers`` dict a caller passes: a publish
  stamps Celery's own copy (the message's headers), and an eager run reads
  the caller's.

Refusals are raised from ``Task.before_start`` (Celery's signal handlers
cannot fail a task, and its worker replaces the base ``Task.__call__``):
:func:`install` wraps the ``before_start`` of Celery's base task class, which
Celery detects and calls (``task_has_custom``) just before the task's body.
A task class that overrides ``before_start`` must call ``super()`` to keep
the refusal (without it, a refused task still runs with no tenant bound).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from celery import Task, current_app, shared_task
from celery import signals as celery_signals
from celery.app import task as celery_task_module
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from . import _core, audit, conf, observe
from ._core import (
    InvalidTenantId,
    TenantInfo,
    TenantMismatchError,
    TenantNotFound,
    TenantNotSetError,
)
from .access import refuse
from .context import (
    _registered,
    get_current_tenant,
    reset_current_tenant,
    set_current_tenant,
    tenant_context,
)
from .exceptions import TenantSuspended
from .registry import SUSPENSION_MODEL, active_field

__all__ = [
    "HEADER",
    "TenantTask",
    "for_each_tenant",
    "install",
    "tenant_task",
    "uninstall",
]

#: The message header that carries the publisher's tenant id.
HEADER = "tenantry_tenant"
#: Set by the publisher when a tenant was bound and the caller also passed
#: a different ``tenantry_tenant`` header: the worker refuses the message.
CONFLICT_HEADER = "tenantry_conflict"
#: Where the worker keeps a run's binding: an attribute of ``task.request``.
_BINDING = "tenantry_binding"
#: True for the rest of a refused task's run. Its own error callbacks are
#: dropped, and every job sent from there (a chord body's errbacks, what a
#: failure handler sends) is refused where it runs, with a tenant header or
#: without: whoever attached them was refused, and with no tenant bound a
#: job would run as trusted code.
_refused_run: ContextVar[bool] = ContextVar("tenantry_refused_run", default=False)
#: The conflict a job sent from a refused run carries when it names no tenant.
_FROM_REFUSED = "-"


# -- publishing ------------------------------------------------------------------


def _stamped(bound: TenantInfo | None, explicit: Any) -> tuple[Any, str | None]:
    """``(header, conflict)`` of a task sent while ``bound`` is bound with
    ``explicit`` as its ``tenantry_tenant`` header: the one rule for
    published and eager runs. ``conflict`` is the other tenant an explicit
    header named, which the run refuses. From a refused task's run (no tenant
    bound) every job is a conflict: it never runs, as a tenant or unbound."""
    if bound is None:
        if _refused_run.get():
            return None, _FROM_REFUSED if explicit is None else str(explicit)
        return explicit, None  # an explicit header (if any) is checked where it runs
    if explicit is None or str(explicit) == bound.id:
        return bound.id, None
    return bound.id, str(explicit)


def _audit_conflict(task: Any, bound: TenantInfo | None, conflict: str) -> None:
    refuse(
        "admission",
        "task.conflict",
        bound,
        level=logging.ERROR,
        task=task,
        header=conflict,
        reason="sent with another tenant's header while a tenant was bound"
        if bound is not None
        else "sent from the run of a refused task",
    )


def _on_before_publish(sender: Any = None, headers: dict | None = None, **kwargs: Any) -> None:
    # ``headers`` is the message's own dict (Celery copies the caller's
    # ``headers=`` into it), so stamping it changes nothing of the caller's.
    if headers is None:
        return
    bound = get_current_tenant()
    if bound is None and not _refused_run.get():
        return
    value, conflict = _stamped(bound, headers.get(HEADER))
    if value is None:
        headers.pop(HEADER, None)
    else:
        headers[HEADER] = value
    if conflict is not None:
        # Celery swallows a publish handler's exception, so the message goes
        # out marked, and the worker refuses it (fail closed, with both ids).
        headers[CONFLICT_HEADER] = conflict
        _audit_conflict(sender, bound, conflict)


# -- running ---------------------------------------------------------------------


@dataclass
class _Binding:
    token: Any = None
    refusal: Exception | None = None
    refused_token: Any = None


def _header(request: Any, name: str) -> Any:
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def _task_label(task: Any) -> str:
    return f"task {task.name}[{task.request.id}]"


def _tenant_of(task: Any, value: Any) -> TenantInfo:
    """The registry's tenant for a header value, or the refusal."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidTenantId(
            f"{_task_label(task)}: header {HEADER} must be a tenant id string, got "
            f"{type(value).__name__}; the task did not run"
        )
    try:
        tenant = _registered(value)
    except InvalidTenantId as exc:
        raise InvalidTenantId(
            f"{_task_label(task)}: header {HEADER}={value!r} is not a valid tenant id "
            f"({exc}); the task did not run"
        ) from None
    except TenantNotFound:
        raise TenantNotFound(
            f"{_task_label(task)} was published for tenant {value!r}, which the registry "
            "(TENANT_MODEL / TENANT_VALIDATOR) does not know (deleted?); the task did not run"
        ) from None
    if tenant is not None and tenant.suspended is not None:
        if TenantSuspended.of(tenant.id, tenant.suspended).moving:
            # A move's hold lasts seconds: the job is refused, not lost (retry it).
            raise TenantSuspended(
                f"{_task_label(task)} was published for tenant {tenant.id!r}, which is being "
                "moved to another database (manage.py tenantry move); the task did not run",
                tenant_id=tenant.id,
                moving=True,
            )
        raise TenantSuspended(
            f"{_task_label(task)} was published for tenant {tenant.id!r}, which is suspended "
            "(manage.py tenantry resume to lift it); the task did not run",
            tenant_id=tenant.id,
        )
    return tenant


def _on_prerun(sender: Any = None, task: Any = None, **kwargs: Any) -> None:
    if task is None:
        return
    request = task.request
    binding = _Binding()
    setattr(request, _BINDING, binding)
    value = _header(request, HEADER)
    conflict = _header(request, CONFLICT_HEADER)
    if request.is_eager and conflict is None:
        # Run where it was sent: what publishing it now would have stamped.
        bound = get_current_tenant()
        value, conflict = _stamped(bound, value)
        if conflict is not None:
            _audit_conflict(task.name, bound, conflict)
    try:
        if conflict is not None and value is None:
            named = "no tenant" if conflict == _FROM_REFUSED else f"tenant {conflict!r}"
            raise TenantMismatchError(
                f"{_task_label(task)} was sent from the run of a refused task (no tenant "
                f"bound), its {HEADER} header naming {named}: what a refused task's run "
                "sends never runs, as a tenant or unbound. The task did not run"
            )
        if conflict is not None:
            raise TenantMismatchError(
                f"{_task_label(task)} was sent while tenant {value!r} was bound, with a "
                f"{HEADER} header naming tenant {conflict!r}; send it inside "
                f"tenant_context({conflict!r}) instead. The task did not run"
            )
        if value is None and request.is_eager:
            return  # no tenant, like the caller
        tenant = None if value is None else _tenant_of(task, value)
    except (InvalidTenantId, TenantNotFound, TenantMismatchError, TenantSuspended) as exc:
        # Whoever attached its error callbacks was refused: they are dropped
        # (with none bound they would run as trusted code).
        dropped = len(getattr(request, "errbacks", None) or ())
        request.errbacks = None
        refuse(
            "admission",
            "task.refused",
            # A forged value is only in the reason, as its repr (no log injection).
            value if isinstance(value, str) and _core.is_valid_tenant_id(value) else None,
            task=task.name,
            task_id=request.id,
            reason=str(exc),
            callbacks_dropped=dropped,
        )
        binding.refusal = exc
        # Its errbacks run with no tenant, and what they send names none.
        binding.refused_token = _refused_run.set(True)
        tenant = None
    binding.token = set_current_tenant(tenant)
    if tenant is not None and observe.job is not None:
        observe.job(tenant)


def _on_postrun(sender: Any = None, task: Any = None, **kwargs: Any) -> None:
    binding = getattr(getattr(task, "request", None), _BINDING, None)
    if binding is not None and binding.token is not None:
        token, binding.token = binding.token, None
        reset_current_tenant(token)
    if binding is not None and binding.refused_token is not None:
        token, binding.refused_token = binding.refused_token, None
        _refused_run.reset(token)


def check_may_run(task: Any) -> None:
    """Raise the refusal of this run, or ``TenantNotSetError`` for a tenant
    task with no tenant bound (the wrapped ``Task.before_start``, and
    ``TenantTask.__call__`` for direct calls)."""
    binding = getattr(task.request, _BINDING, None)
    if binding is not None and binding.refusal is not None:
        raise binding.refusal
    if getattr(task, "tenant_required", False) and get_current_tenant() is None:
        raise TenantNotSetError(
            f"{_task_label(task)} is a tenant task (@tenant_task / TenantTask) and arrived "
            f"without a tenant (no {HEADER} header): publish it while a tenant is bound "
            "(inside its request, or tenant_context(<id>)), or fan it out with "
            "for_each_tenant(). The task did not run"
        )


def _guarded(before_start: Any) -> Any:
    def guarded_before_start(self: Any, task_id: str, args: Any, kwargs: Any) -> Any:
        check_may_run(self)
        return before_start(self, task_id, args, kwargs)

    guarded_before_start.__wrapped__ = before_start  # type: ignore[attr-defined]
    guarded_before_start.__name__ = "before_start"
    return guarded_before_start


class TenantTask(Task):
    """Base class of tasks that must run in a tenant: a message without one
    fails with ``TenantNotSetError`` instead of running.
    ``@app.task(base=TenantTask)`` or ``@tenant_task``."""

    tenant_required = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        check_may_run(self)  # a direct call (``task()``) skips before_start
        return super().__call__(*args, **kwargs)


def tenant_task(*args: Any, **options: Any) -> Any:
    """``@shared_task`` for tenant tasks (``base=TenantTask`` unless another
    base is given; then the option ``tenant_required=True`` does the same)::

        @tenant_task
        def rebuild_index(): ...

        @tenant_task(bind=True, max_retries=3)
        def sync_invoices(self, since): ...
    """
    options.setdefault("base", TenantTask)
    options["tenant_required"] = True
    return shared_task(*args, **options)


# -- fan-out ---------------------------------------------------------------------


def active_tenant_ids() -> Iterator[str]:
    """The ids of ``TENANT_MODEL``'s rows, active ones only when the model
    has an active flag (``tenantry.registry.active_field``: the registry
    does not know an inactive row either), suspended ones left out, in id
    order."""
    config = conf.current()
    label = config.tenant_model_label
    if not label:
        raise ImproperlyConfigured(
            "for_each_tenant() needs DJUST_CONFIG['TENANT_MODEL'] (the tenant rows to fan "
            "out to); a TENANT_VALIDATOR cannot list tenants"
        )
    model = apps.get_model(label)
    id_field = config.tenant_id_field
    rows = model._base_manager.all()
    flag = active_field(model)
    if flag is not None:
        rows = rows.filter(**{flag: True})
    # A suspended tenant's jobs are refused when they run: not sent at all.
    suspended = set(
        apps.get_model(SUSPENSION_MODEL)._base_manager.values_list("suspended_tenant", flat=True)
    )
    ids = rows.order_by(id_field).values_list(id_field, flat=True).iterator()
    return (tenant_id for tenant_id in ids if str(tenant_id) not in suspended)


def for_each_tenant(task: Any, *args: Any, jitter: float = 0, **kwargs: Any) -> list[Any]:
    """Publish ``task(*args, **kwargs)`` once per active tenant, each message
    carrying its tenant, spread over ``jitter`` seconds (a random countdown
    per message) so a beat schedule does not start every tenant's run at
    once. ``task`` is a task, a signature or a task name. Returns the
    ``AsyncResult`` of each message.

    A row whose id is not a valid tenant id is skipped and audited
    (``task.fanout_skipped``), not published.
    """
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not jitter >= 0:
        raise ValueError(f"for_each_tenant(jitter=...) must be seconds >= 0, got {jitter!r}")
    if isinstance(task, str):
        task = current_app.signature(task)
    if not callable(getattr(task, "apply_async", None)):
        raise TypeError(f"for_each_tenant() needs a task, a signature or a task name, got {task!r}")
    results = []
    for tenant_id in active_tenant_ids():
        if not _core.is_valid_tenant_id(tenant_id):
            audit.emit(
                "task.fanout_skipped",
                level=logging.ERROR,
                task=getattr(task, "name", repr(task)),
                row_id=repr(tenant_id),
                reason="not a valid tenant id",
            )
            continue
        countdown = random.uniform(0, jitter) if jitter else None
        # Just read from the registry: no second lookup per tenant.
        with tenant_context(tenant_id, must_exist=False):
            results.append(task.apply_async(args, kwargs, countdown=countdown))
    return results


# -- installation ----------------------------------------------------------------

_install_lock = threading.Lock()
_installed = False
_SIGNALS = (
    (celery_signals.before_task_publish, _on_before_publish, "tenantry.celery.publish"),
    (celery_signals.task_prerun, _on_prerun, "tenantry.celery.prerun"),
    (celery_signals.task_postrun, _on_postrun, "tenantry.celery.postrun"),
)


def install() -> None:
    """Connect the publish/run signal handlers and wrap
    ``Task.before_start`` (idempotent; done when this module is imported)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        for signal, handler, uid in _SIGNALS:
            signal.connect(handler, weak=False, dispatch_uid=uid)
        base = celery_task_module.Task
        base.before_start = _guarded(base.__dict__["before_start"])
        _installed = True


def uninstall() -> None:
    """Undo :func:`install` (the benchmarks compare with and without)."""
    global _installed
    with _install_lock:
        if not _installed:
            return
        for signal, _handler, uid in _SIGNALS:
            signal.disconnect(dispatch_uid=uid)
        base = celery_task_module.Task
        base.before_start = base.__dict__["before_start"].__wrapped__
        _installed = False


install()
