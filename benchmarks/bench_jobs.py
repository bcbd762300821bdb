"""Celery propagation's cost: publishing a task to a real Redis broker, and
starting a task the way the worker does (Celery's own tracer: prerun, the
task, postrun), with tenantry's handlers installed and a tenant bound,
against the same Celery with tenantry uninstalled, in the same run
(alternating rounds). Also counts the Redis commands one publish sends:
the tenant header rides on the publish, so the count is the same.

The Redis part starts its own redis-server on a free loopback port."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import Celery, signals
from celery.app.trace import build_tracer
from django.core.management import call_command
from django.test import override_settings

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
ROUNDS = 9


def rotated_rounds(timers: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Best ns per op of each timer over ``ROUNDS`` rounds; each round starts
    with the next timer, so none always runs first (or last) in a burst of
    machine load."""
    names = list(timers)
    best: dict[str, float] = {}
    for round_ in range(ROUNDS):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            ns = timers[name]()
            best[name] = min(best.get(name, ns), ns)
    return best


def make_app(redis_url: str, label: str) -> tuple[Celery, object]:
    app = Celery(f"bench_jobs_{label}", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue="bench-jobs",
    )

    @app.task(name=f"bench.{label}.noop", ignore_result=True)
    def noop() -> None:
        seen[0] = get_current_tenant()

    return app, app.tasks[noop.name]  # the task itself, as the worker has it (not a proxy)


def redis_commands(client) -> int:
    stats = client.info("commandstats")
    return sum(entry["calls"] for entry in stats.values())


def signed_ns(ns: float) -> str:
    """A difference: end-to-end rows over loopback can come out negative (noise)."""
    return ("−" if ns < 0 else "+") + fmt_ns(abs(ns))


@contextmanager
def tenantry_installed(installed: bool) -> Iterator[None]:
    """tenantry's Celery handlers connected (the default) or not, for a block."""
    if not installed:
        tenantry_celery.uninstall()
    try:
        yield
    finally:
        tenantry_celery.install()


def publish_table(server) -> str:
    app, noop = make_app(server.url, "publish")
    number = 1_000
    signal_number = 50_000

    def publisher(installed: bool) -> Callable[[], float]:
        def run() -> float:
            with tenantry_installed(installed), tenant_context("acme", must_exist=False):
                ns = ns_per_op(noop.delay, number=number, repeat=1)
            server.client.delete("bench-jobs")
            return ns

        return run

    def signal(installed: bool) -> Callable[[], float]:
        """The publish signal alone, as Celery sends it before each publish."""

        def send() -> None:
            signals.before_task_publish.send(
                sender=noop.name, body=None, exchange="", routing_key="bench-jobs",
                declare=[], headers={"id": "x", "task": noop.name}, properties={},
                retry_policy=None,
            )  # fmt: skip

        def run() -> float:
            with tenantry_installed(installed), tenant_context("acme", must_exist=False):
                return ns_per_op(send, number=signal_number, repeat=1)

        return run

    def commands_per_publish(installed: bool) -> float:
        with tenantry_installed(installed), tenant_context("acme", must_exist=False):
            noop.delay()  # connection and queue declared
            before = redis_commands(server.client)
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

    best = rotated_rounds(
        {
            "plain": publisher(False),
            "tenantry": publisher(True),
            "plain signal": signal(False),
            "tenantry signal": signal(True),
        }
    )
    plain_commands, ours_commands = commands_per_publish(False), commands_per_publish(True)
    app.close()
    rows = [
        ("`delay()` to Redis, end to end", best["plain"], best["tenantry"]),
        ("the publish signal alone (in process)", best["plain signal"], best["tenantry signal"]),
    ]
    lines = [
        "### Celery: publishing a task (Redis broker)",
        "",
        "One `delay()` of a no-op task (`ignore_result`) with a tenant bound, Celery alone "
        "(tenantry's handlers disconnected) against tenantry (the header added), best of "
        f"{ROUNDS} rotating rounds of {number:,} publishes; and the `before_task_publish` "
        f"signal alone ({signal_number:,} sends), which is all tenantry adds to a publish. "
        f"Redis commands per publish: {plain_commands:g} without tenantry, "
        f"{ours_commands:g} with it — the header rides on the publish, no extra round trip.",
        "",
        "| case | Celery | tenantry | added per publish | ratio |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {label} | {fmt_ns(plain)} | {fmt_ns(ours)} | {signed_ns(ours - plain)} | "
            f"{ours / plain:.2f}× |"
            for label, plain, ours in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def start_table() -> str:
    """The worker's per-task path, in process: Celery's tracer (as built by
    the worker) running the task from a message's request."""
    from celery.fixups.django import DjangoWorkerFixup

    app, noop = make_app("memory://", "start")
    number = 5_000
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
            with tenantry_installed(tenantry):
                if django:
                    for signal, hook in hooks:
                        signal.connect(hook, weak=False)
                try:
                    trace = build_tracer(noop.name, noop, app=app, eager=False, propagate=True)
                    message = request(tenant)
                    return ns_per_op(
                        lambda: trace(message["id"], (), {}, message), number=number, repeat=1
                    )
                finally:
                    for signal, hook in hooks:
                        signal.disconnect(hook)

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
        best = rotated_rounds(
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
        "(`task_prerun`, the task, `task_postrun`; no result stored), best of "
        f"{ROUNDS} rotating rounds of {number:,}. A Django project's worker runs Celery's "
        "Django fix-up, whose `task_prerun`/`task_postrun` handlers (closing stale database "
        "connections) already make Celery send those signals; tenantry's rows run with it. "
        "The registry is "
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
