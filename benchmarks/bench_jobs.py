"""Celery propagation's cost: publishing a task to a real Redis broker, and
starting a task the way the worker does (Celery's own tracer: prerun, the
task, postrun), with tenantry's handlers installed and a tenant bound,
against the same Celery with tenantry uninstalled, in the same run
(alternating rounds). Also counts the Redis commands one publish sends:
the tenant header rides on the publish, so the count is the same.

The Redis part starts its own redis-server on a free loopback port."""

from __future__ import annotations

import uuid

from celery import Celery, signals
from celery.app.trace import build_tracer
from django.core.management import call_command
from django.test import override_settings

from benchmarks.bench_state import best_of_rounds
from benchmarks.timing import fmt_ns, ns_per_op
from tenantry import celery as tenantry_celery
from tenantry import get_current_tenant, tenant_context

REGISTRY = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_MODEL": "benchapp.Tenant",
}
#: What the benchmark task saw last (checked: the bound tenant is the header's).
seen: list = [None]


def make_app(redis_url: str) -> tuple[Celery, object]:
    app = Celery("bench_jobs", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue="bench-jobs",
    )

    @app.task(name="bench.noop", ignore_result=True)
    def noop() -> None:
        seen[0] = get_current_tenant()

    return app, app.tasks[noop.name]  # the task itself, as the worker has it (not a proxy)


def redis_commands(client) -> int:
    stats = client.info("commandstats")
    return sum(entry["calls"] for entry in stats.values())


def publish_table(server) -> str:
    app, noop = make_app(server.url)
    number = 2_000

    def publish_plain() -> float:
        tenantry_celery.uninstall()
        try:
            return ns_per_op(noop.delay, number=number, repeat=1)
        finally:
            tenantry_celery.install()
            server.client.delete("bench-jobs")

    def publish_tenantry() -> float:
        with tenant_context("acme", must_exist=False):
            ns = ns_per_op(noop.delay, number=number, repeat=1)
        server.client.delete("bench-jobs")
        return ns

    def commands_per_publish(bound: str | None) -> float:
        noop.delay()  # connection and queue declared
        before = redis_commands(server.client)
        with tenant_context(bound, must_exist=False):
            for _ in range(100):
                noop.delay()
        used = redis_commands(server.client) - before - 1  # the INFO call itself
        server.client.delete("bench-jobs")
        return used / 100

    with tenant_context("acme", must_exist=False):
        noop.delay()
    body = server.client.lindex("bench-jobs", 0)
    assert '"tenantry_tenant": "acme"' in body, body  # the header is on the message
    server.client.delete("bench-jobs")

    best = best_of_rounds({"plain": publish_plain, "tenantry": publish_tenantry})
    tenantry_celery.uninstall()
    try:
        plain_commands = commands_per_publish(None)
    finally:
        tenantry_celery.install()
    ours_commands = commands_per_publish("acme")
    app.close()
    rows = [
        ("`delay()` to Redis", best["plain"], best["tenantry"]),
    ]
    lines = [
        "### Celery: publishing a task (Redis broker)",
        "",
        "One `delay()` of a no-op task (`ignore_result`), Celery alone (tenantry's "
        "handlers disconnected) against tenantry with a tenant bound (the header added), "
        f"best of 5 alternating rounds of {number:,} publishes. Redis commands per publish: "
        f"{plain_commands:g} without tenantry, {ours_commands:g} with it — the header rides "
        "on the publish, no extra round trip.",
        "",
        "| case | Celery | tenantry | ratio |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {fmt_ns(plain)} | {fmt_ns(ours)} | {ours / plain:.2f}× |"
            for label, plain, ours in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def start_table() -> str:
    """The worker's per-task path, in process: Celery's tracer (as built by
    the worker) running the task from a message's request."""
    from celery.fixups.django import DjangoWorkerFixup

    app, noop = make_app("memory://")
    number = 10_000
    fixup = DjangoWorkerFixup(app)
    hooks = (
        (signals.task_prerun, fixup.on_task_prerun),
        (signals.task_postrun, fixup.on_task_postrun),
    )

    def request(tenant: str | None) -> dict:
        headers = {} if tenant is None else {tenantry_celery.HEADER: tenant}
        return {
            "id": str(uuid.uuid4()),
            "task": noop.name,
            "headers": headers,
            "delivery_info": {},
            **headers,
        }

    def timer(tenant: str | None, *, tenantry: bool = True, django: bool = True):
        def run() -> float:
            if not tenantry:
                tenantry_celery.uninstall()
            if django:
                for signal, hook in hooks:
                    signal.connect(hook, weak=False)
            try:
                trace = build_tracer(noop.name, noop, app=app, eager=False, propagate=True)
                message = request(tenant)
                ns = ns_per_op(
                    lambda: trace(message["id"], (), {}, message), number=number, repeat=1
                )
            finally:
                for signal, hook in hooks:
                    signal.disconnect(hook)
                tenantry_celery.install()
            return ns

        return run

    call_command("migrate", run_syncdb=True, verbosity=0)
    from benchmarks.benchapp.models import Tenant

    Tenant.objects.get_or_create(slug="acme", defaults={"name": "Acme"})
    with override_settings(DJUST_CONFIG=REGISTRY):
        trace = build_tracer(noop.name, noop, app=app, eager=False, propagate=True)
        message = request("acme")
        trace(message["id"], (), {}, message)
        assert seen[0] is not None and seen[0].name == "Acme", seen[0]
        assert get_current_tenant() is None  # restored after the run
        best = best_of_rounds(
            {
                "bare": timer(None, tenantry=False, django=False),
                "django": timer(None, tenantry=False),
                "no header": timer(None),
                "header, registry hit": timer("acme"),
            }
        )
    app.close()
    bare, django = best["bare"], best["django"]
    rows = [
        ("Celery, no task signal receivers", bare),
        ("Celery + Django's worker fix-up (baseline: a Django project's worker)", django),
        ("tenantry, message without a tenant", best["no header"]),
        ("tenantry, tenant header (registry cache hit)", best["header, registry hit"]),
    ]
    lines = [
        "### Celery: starting a task (the worker's tracer)",
        "",
        "Celery's tracer as the worker builds it, running a no-op task from a message "
        "(`task_prerun`, the task, `task_postrun`; no result stored), best of 5 alternating "
        f"rounds of {number:,}. A Django project's worker runs Celery's Django fix-up, whose "
        "`task_prerun`/`task_postrun` handlers (closing stale database connections) already "
        "make Celery send those signals; tenantry's rows run with it. The registry is "
        "`TENANT_MODEL` (the header's id is looked up in the core's cache, then bound and "
        "restored).",
        "",
        "| case | per task | vs. Django baseline | vs. no receivers |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {fmt_ns(ns)} | {ns / django:.2f}× | {ns / bare:.2f}× |"
            for label, ns in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def run() -> str:
    from benchmarks.bench_presence import RedisProcess

    server = RedisProcess()
    try:
        parts = [publish_table(server)]
    finally:
        server.stop()
    parts.append(start_table())
    return "\n".join(parts)


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
