"""The Celery app of the tests: the worker the tests start runs it
(``celery -A tests.celery_app worker``, settings tests.settings_celery), and
the test process publishes through it. Broker and result backend: the Redis
in ``TENANTRY_CELERY_REDIS`` (the test process sets them on ``app.conf``).

Each task reports what it saw: the bound tenant and the scoped rows."""

from __future__ import annotations

import os
import threading

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings_celery")
django.setup()

from tenantry import TenantNotSetError, get_current_tenant  # noqa: E402
from tenantry.celery import for_each_tenant, tenant_task  # noqa: E402

REDIS = os.environ.get("TENANTRY_CELERY_REDIS", "memory://")

app = Celery("tenantry_tests")
app.conf.update(
    broker_url=REDIS,
    result_backend=REDIS if REDIS.startswith("redis") else "cache+memory://",
    # JSON only: no pickle (and so no root warning when CI runs as root).
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="tenantry-tests",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=4,
    result_expires=600,
)


def bound_id() -> str | None:
    tenant = get_current_tenant()
    return None if tenant is None else tenant.id


def seen() -> dict:
    """The bound tenant and what the scoped manager shows of the notes."""
    from tests.jobs.models import Note

    executor = f"{os.getpid()}:{threading.get_ident()}"
    try:
        notes = list(Note.objects.all())
    except TenantNotSetError:
        return {"bound": bound_id(), "tenants": None, "count": None, "executor": executor}
    return {
        "bound": bound_id(),
        "tenants": sorted({note.tenant_id for note in notes}),
        "count": len(notes),
        "executor": executor,
    }


@app.task
def snapshot(label: str | None = None) -> dict:
    return {**seen(), "label": label}


@app.task(bind=True)
def timed(self) -> dict:
    """What an ETA / countdown task saw, and that it was one."""
    return {**seen(), "eta": self.request.eta}


@app.task(bind=True, max_retries=3)
def flaky(self, failures: int, rows: bool = True) -> dict:
    """Fails ``failures`` times, retried with a countdown each time."""
    if self.request.retries < failures:
        raise self.retry(countdown=0.2)
    report = seen() if rows else {"bound": bound_id()}
    return {**report, "retries": self.request.retries}


@app.task
def boom(label: str) -> None:
    raise ValueError(f"{label} failed in tenant {bound_id()}")


@app.task
def collect(results: list) -> dict:
    """A chord's callback (the worker publishes it)."""
    return {**seen(), "parts": [part["bound"] for part in results]}


@app.task
def step(trail: list) -> list:
    """A chain's step: the trail of tenants each step saw."""
    return [*trail, bound_id()]


@app.task
def whoami() -> str | None:
    return bound_id()


#: The tenant each run of :func:`errback_seen` in this process saw (eager runs).
ERRBACKS_SEEN: list = []


@app.task
def errback_seen(failed_task_id: str | None = None) -> str | None:
    """An error callback: the tenant it ran in."""
    ERRBACKS_SEEN.append(bound_id())
    return bound_id()


@tenant_task
def tenant_only() -> str | None:
    return bound_id()


@app.task
def fan_out(jitter: float) -> list:
    """A beat entry's body: one snapshot per active tenant."""
    return [result.id for result in for_each_tenant(timed, jitter=jitter)]


@app.task
def delete_tenant(slug: str) -> int:
    from tests.jobs.models import Tenant

    return Tenant.objects.filter(slug=slug).delete()[0]
