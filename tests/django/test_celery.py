"""The tenant travels with Celery tasks (docs/jobs.md), against a real Celery 5
worker (``celery -A tests.celery_app worker``, prefork and thread pools, 4
each) on a real Redis broker and result backend, with the worker's Django
on a SQLite file (tests/celery_worker.py). The test process publishes;
every task reports the tenant it ran in and the rows its scoped manager
showed. Eager runs (``apply()``) go through Celery's own tracer in this
process."""

from __future__ import annotations

import importlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import chain, chord, group
from celery.result import AsyncResult, ResultSet
from django.core.exceptions import ImproperlyConfigured

from tenantry import (
    InvalidTenantId,
    TenantMismatchError,
    TenantNotFound,
    TenantNotSetError,
    get_current_tenant,
    tenant_context,
)
from tenantry.celery import HEADER, for_each_tenant
from tests.celery_worker import (
    DOOMED,
    INACTIVE,
    TENANTS,
    CeleryWorker,
    notes_of,
    prepare_database,
)
from tests.redis_servers import RedisServer

WAIT = 180  # seconds a result may take on a loaded 2-core machine


@pytest.fixture(scope="module")
def celery_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("celery-redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tasks(celery_redis):
    """tests.celery_app, publishing to this module's Redis."""
    os.environ["TENANTRY_CELERY_REDIS"] = celery_redis.url
    try:
        module = sys.modules.get("tests.celery_app")
        # pytest-django runs the database tests first, which splits this
        # module's tests in two: its module fixtures then start again, on a
        # new Redis, and the app must follow it.
        if module is None:
            module = importlib.import_module("tests.celery_app")
        else:
            module = importlib.reload(module)
    finally:
        del os.environ["TENANTRY_CELERY_REDIS"]
    assert module.app.conf.broker_url == celery_redis.url, "tests.celery_app imported too early"
    return module


@pytest.fixture(scope="module")
def celery_db(celery_redis, tmp_path_factory):
    path = tmp_path_factory.mktemp("celery-db") / "jobs.sqlite3"
    prepare_database(celery_redis.url, path)
    return path


@pytest.fixture(scope="module", params=["prefork", "threads"])
def worker(request, tasks, celery_redis, celery_db, tmp_path_factory):
    tasks.app.control.purge()
    log = tmp_path_factory.mktemp("celery-log") / f"{request.param}.log"
    started = CeleryWorker(
        celery_redis.url, celery_db, log, pool=request.param, concurrency=4
    ).start()
    try:
        probe = tasks.whoami.delay()
        deadline = time.monotonic() + WAIT
        while not probe.ready():
            if started.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {request.param} worker did not start:\n{started.log()}")
            time.sleep(0.1)
        yield started
    finally:
        started.stop()


def results_of(published: list) -> list:
    return ResultSet([result for _, result in published]).get(timeout=WAIT)


def failure_of(result: AsyncResult) -> BaseException:
    with pytest.raises(Exception) as caught:
        result.get(timeout=WAIT)
    return caught.value


# --- a real worker ------------------------------------------------------------


def test_interleaved_tenants_never_leak(worker, tasks):
    """2,000 tasks of 50 tenants, interleaved, plus tasks published with no
    tenant: each sees exactly its tenant's notes, and no binding outlives
    its task (a no-tenant task after a tenant's, on the same process or
    thread, sees no tenant)."""
    published = []
    for i in range(2000):
        tenant = TENANTS[(i * 7) % len(TENANTS)]
        with tenant_context(tenant, must_exist=False):
            published.append((tenant, tasks.snapshot.delay(str(i))))
        if i % 20 == 0:
            published.append((None, tasks.snapshot.delay(f"none-{i}")))
    outcomes = results_of(published)
    leaks = []
    for (tenant, _), seen in zip(published, outcomes, strict=True):
        want = (
            {"bound": None, "tenants": None, "count": None}
            if tenant is None
            else {"bound": tenant, "tenants": [tenant], "count": notes_of(tenant)}
        )
        got = {key: seen[key] for key in want}
        if got != want:
            leaks.append((seen["label"], want, got))
    assert leaks == []
    assert sum(1 for tenant, _ in published if tenant is None) == 100
    # The pool really ran them side by side (processes or threads).
    assert len({seen["executor"] for seen in outcomes}) > 1


def test_retry_with_countdown_keeps_the_tenant(worker, tasks):
    with tenant_context("t07", must_exist=False):
        first = tasks.flaky.delay(2)
    with tenant_context("t08", must_exist=False):
        second = tasks.flaky.delay(1)
    assert first.get(timeout=WAIT) | {"executor": None} == {
        "bound": "t07", "tenants": ["t07"], "count": notes_of("t07"),
        "retries": 2, "executor": None,
    }  # fmt: skip
    seen = second.get(timeout=WAIT)
    assert (seen["bound"], seen["tenants"], seen["retries"]) == ("t08", ["t08"], 1)


def test_chains_groups_and_chords_keep_the_publishers_tenant(worker, tasks):
    runs = {}
    for tenant in ("t03", "t04"):
        with tenant_context(tenant, must_exist=False):
            runs[tenant] = (
                chain(tasks.step.s([]), tasks.step.s(), tasks.step.s()).delay(),
                group(tasks.snapshot.s(str(i)) for i in range(5)).delay(),
                # The callback is published by the worker that finishes the
                # last part, not by this process.
                chord((tasks.snapshot.s(str(i)) for i in range(4)), tasks.collect.s()).delay(),
            )
    for tenant, (chained, grouped, chorded) in runs.items():
        assert chained.get(timeout=WAIT) == [tenant] * 3
        assert [seen["bound"] for seen in grouped.get(timeout=WAIT)] == [tenant] * 5
        callback = chorded.get(timeout=WAIT)
        assert callback["parts"] == [tenant] * 4
        assert (callback["bound"], callback["tenants"]) == (tenant, [tenant])


def test_eta_and_countdown_tasks_keep_the_tenant(worker, tasks):
    with tenant_context("t11", must_exist=False):
        later = tasks.timed.apply_async(countdown=1)
        at = tasks.timed.apply_async(eta=datetime.now(UTC) + timedelta(seconds=1))
    for result in (later, at):
        seen = result.get(timeout=WAIT)
        assert (seen["bound"], seen["tenants"]) == ("t11", ["t11"])
        assert seen["eta"] is not None


def test_a_deleted_tenants_task_fails_and_does_not_run(worker, tasks):
    with tenant_context("gone", must_exist=False):
        refused = tasks.snapshot.delay("ghost")
    error = failure_of(refused)
    assert isinstance(error, TenantNotFound)
    assert "'gone'" in str(error) and "did not run" in str(error)
    assert refused.state == "FAILURE"
    # A deactivated tenant is not a tenant either.
    with tenant_context(INACTIVE[0], must_exist=False):
        assert isinstance(failure_of(tasks.snapshot.delay()), TenantNotFound)
    if worker.pool == "threads":
        # One process: the delete below drops its registry cache at once (a
        # prefork child sees it when its cached entry expires,
        # TENANT_CACHE_TTL).
        with tenant_context(DOOMED, must_exist=False):
            assert tasks.snapshot.delay().get(timeout=WAIT)["bound"] == DOOMED
        assert tasks.delete_tenant.delay(DOOMED).get(timeout=WAIT) >= 1
        with tenant_context(DOOMED, must_exist=False):
            after = tasks.snapshot.delay()
        assert isinstance(failure_of(after), TenantNotFound)
    with tenant_context("t01", must_exist=False):
        assert tasks.snapshot.delay().get(timeout=WAIT)["bound"] == "t01"


@pytest.mark.parametrize(
    "forged", ["t00:evil", "", ".t00", "x" * 129, "t00 ", "{t00}", "t00\n", 1.5, ["t00"], True]
)
def test_a_forged_header_with_an_invalid_id_is_refused(worker, tasks, forged):
    error = failure_of(tasks.snapshot.apply_async(headers={HEADER: forged}))
    assert isinstance(error, InvalidTenantId), error
    assert "did not run" in str(error)


def test_explicit_headers(worker, tasks):
    # Published with no tenant bound, an explicit header names the tenant.
    assert tasks.snapshot.apply_async(headers={HEADER: "t05"}).get(timeout=WAIT)["bound"] == "t05"
    assert isinstance(failure_of(tasks.snapshot.apply_async(headers={HEADER: 77})), TenantNotFound)
    # With a tenant bound, another tenant's header is a mistake: refused.
    with tenant_context("t01", must_exist=False):
        conflicted = tasks.snapshot.apply_async(headers={HEADER: "t02"})
    error = failure_of(conflicted)
    assert isinstance(error, TenantMismatchError)
    assert "'t01'" in str(error) and "'t02'" in str(error)


def test_tenant_tasks_need_a_tenant_and_others_run_with_none(worker, tasks):
    error = failure_of(tasks.tenant_only.delay())
    assert isinstance(error, TenantNotSetError)
    assert "tenant task" in str(error) and "did not run" in str(error)
    with tenant_context("t09", must_exist=False):
        assert tasks.tenant_only.delay().get(timeout=WAIT) == "t09"
    # Not a tenant task: runs with no tenant, and the scoped manager raises.
    seen = tasks.snapshot.delay().get(timeout=WAIT)
    assert (seen["bound"], seen["tenants"]) == (None, None)


def test_for_each_tenant_fans_out_to_active_tenants(worker, tasks):
    ids = tasks.fan_out.delay(1.0).get(timeout=WAIT)  # as a beat entry runs it
    outcomes = [AsyncResult(task_id, app=tasks.app).get(timeout=WAIT) for task_id in ids]
    bound = [seen["bound"] for seen in outcomes]
    assert len(bound) == len(set(bound))  # one message per tenant
    # Every active tenant (DOOMED until a test deletes it), no inactive one.
    assert set(TENANTS) <= set(bound) <= {*TENANTS, DOOMED}
    for seen in outcomes:
        assert (seen["tenants"], seen["count"]) == ([seen["bound"]], notes_of(seen["bound"]))
    # Spread over the jitter: each message has its own countdown.
    assert all(seen["eta"] for seen in outcomes)
    assert len({seen["eta"] for seen in outcomes}) > 1


# --- eager runs (Celery's tracer in this process) ---------------------------------


def test_eager_runs_bind_and_restore(tasks):
    assert tasks.whoami.apply(headers={HEADER: "inner"}).get() == "inner"
    assert get_current_tenant() is None
    with tenant_context("outer", must_exist=False):
        failed = tasks.boom.apply(args=("x",))
        assert failed.failed() and "tenant outer" in str(failed.result)
        assert get_current_tenant() == "outer"
        # An eager retry runs again at once, with the request's headers.
        retried = tasks.flaky.apply(args=(2, False), headers={HEADER: "outer"})
        assert retried.get() == {"bound": "outer", "retries": 2}
        assert get_current_tenant() == "outer"
        refused = tasks.whoami.apply(headers={HEADER: "bad:id"})
        assert isinstance(refused.result, TenantMismatchError)
        assert get_current_tenant() == "outer"
        # Run eagerly without the header (task_always_eager): the caller's tenant.
        assert tasks.whoami.apply().get() == "outer"
        assert tasks.tenant_only.apply().get() == "outer"
    assert get_current_tenant() is None
    assert isinstance(tasks.whoami.apply(headers={HEADER: "bad:id"}).result, InvalidTenantId)
    assert isinstance(tasks.tenant_only.apply().result, TenantNotSetError)
    assert tasks.whoami.apply().get() is None


# --- eager and published runs: one rule (docs/jobs.md#eager-runs) ------------------


@pytest.fixture
def always_eager(tasks):
    tasks.app.conf.task_always_eager = True
    try:
        yield tasks
    finally:
        tasks.app.conf.task_always_eager = False


def _result_of(outcome):
    """A run's value or its exception (EagerResult, chain, group or chord)."""
    try:
        return outcome.get(propagate=True, disable_sync_subtasks=False)
    except Exception as exc:  # the refusal
        return exc


#: Every way to send ``whoami`` with ``headers``: run eagerly under
#: ``task_always_eager`` (the fixture), published otherwise.
SENDS = {
    "apply": lambda t, h: t.whoami.apply(headers=h),
    "s().apply": lambda t, h: t.whoami.s().apply(headers=h),
    "apply_async": lambda t, h: t.whoami.apply_async(headers=h),
    "apply_async(**options)": lambda t, h: t.whoami.apply_async(**{"headers": h}),
    "s().set().delay": lambda t, h: t.whoami.s().set(headers=h).delay(),
    "signature(headers=)": lambda t, h: t.whoami.signature((), headers=h).apply_async(),
    "signature(options=)": lambda t, h: t.whoami.signature((), options={"headers": h}).delay(),
    "chain": lambda t, h: chain(t.whoami.si(), t.whoami.si().set(headers=h)).apply_async(),
    "group": lambda t, h: group(t.whoami.si().set(headers=h)).apply_async(),
    # The callback (step) returns the parts' results, then its own tenant.
    "chord": lambda t, h: chord([t.whoami.si().set(headers=h)], t.step.s()).apply_async(),
}
PUBLISHED = ["apply_async", "apply_async(**options)", "s().set().delay", "signature(headers=)",
             "signature(options=)", "chain", "group"]  # fmt: skip


def _value(form, tasks, headers):
    """What sending ``whoami`` the way ``form`` does returned (or raised:
    an eager chord raises its part's exception)."""
    try:
        value = _result_of(SENDS[form](tasks, headers))
    except Exception as exc:
        return exc
    if form == "chord" and isinstance(value, list):
        return value[0]  # the part that carried the header
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@pytest.mark.parametrize("form", SENDS)
def test_eager_runs_refuse_another_tenants_header(always_eager, form):
    """Bound to t01, a header naming t02 is refused, as published (below)."""
    headers = {HEADER: "t02", "x-trace": ["a"]}
    sent = {HEADER: "t02", "x-trace": ["a"]}
    with tenant_context("t01", must_exist=False):
        value = _value(form, always_eager, headers)
        assert get_current_tenant() == "t01"
    assert isinstance(value, TenantMismatchError), value
    assert "'t01'" in str(value) and "'t02'" in str(value) and "did not run" in str(value)
    assert headers == sent  # the caller's dict is not changed


@pytest.mark.parametrize("form", SENDS)
def test_eager_runs_take_the_tenant_a_publish_would(always_eager, form):
    tasks = always_eager
    with tenant_context("t01", must_exist=False):
        assert _value(form, tasks, {HEADER: "t01"}) == "t01"  # the same tenant
        assert _value(form, tasks, {}) == "t01"  # no header: the bound one
        assert _value(form, tasks, {"Tenantry_Tenant": "t02"}) == "t01"  # not our header
    # Nothing bound: the header names the tenant, like a beat entry's.
    assert _value(form, tasks, {HEADER: "t02"}) == "t02"
    assert _value(form, tasks, {}) is None


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["apply", "apply_async", "chain"])
async def test_async_callers_run_eagerly_under_the_same_rule(always_eager, form):
    from asgiref.sync import sync_to_async

    with tenant_context("t01", must_exist=False):
        refused = await sync_to_async(_value)(form, always_eager, {HEADER: "t02"})
        same = await sync_to_async(_value)(form, always_eager, {HEADER: "t01"})
    assert isinstance(refused, TenantMismatchError)
    assert same == "t01"


def known_tenants(tenant_id):
    """A ``TENANT_VALIDATOR`` knowing t00..t49."""
    return tenant_id in TENANTS


# The registry's lookups read the suspension table too (one query per refresh
# of this process's copy: docs/operations.md#suspending-a-tenant).
@pytest.mark.django_db
def test_eager_runs_go_through_the_registry(tasks, settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_VALIDATOR": "tests.django.test_celery.known_tenants",
    }
    assert tasks.whoami.apply(headers={HEADER: "t03"}).get() == "t03"
    assert isinstance(tasks.whoami.apply(headers={HEADER: "ghost"}).result, TenantNotFound)
    # Bound to a tenant the registry does not know (deleted meanwhile): as the
    # worker, the run refuses it.
    with tenant_context("ghost", must_exist=False):
        assert isinstance(tasks.whoami.apply().result, TenantNotFound)


@pytest.mark.parametrize("form", PUBLISHED)
def test_published_runs_refuse_another_tenants_header(worker, tasks, form):
    headers = {HEADER: "t02"}
    with tenant_context("t01", must_exist=False):
        outcome = SENDS[form](tasks, headers)
    value = outcome.get(timeout=WAIT, propagate=False)
    if isinstance(value, list):
        [value] = value
    if form == "chain":  # the step the header was on
        value = outcome.result
    assert isinstance(value, TenantMismatchError), value
    assert headers == {HEADER: "t02"}


# --- a refused task's error callbacks (docs/jobs.md#when-a-task-does-not-run) -----


@pytest.mark.parametrize("bound", ["t01", None])
def test_a_refused_tasks_errbacks_never_run_as_a_tenant(tasks, bound):
    """Refused (t01 bound and a header naming t02; or, with none bound, an
    invalid header), the task's error callbacks are dropped: none runs, as
    t02 (its own header) nor unbound (trusted code), and neither does a job
    sent from the refused run. So a callback a refused caller attached
    cannot reach another tenant."""
    tasks.ERRBACKS_SEEN.clear()
    callbacks = [tasks.errback_seen.s().set(headers={HEADER: "t02"}), tasks.errback_seen.s()]
    header = "t02" if bound else "bad:id"
    with tenant_context(bound, must_exist=False):
        refused = tasks.whoami.apply(headers={HEADER: header}, link_error=callbacks)
        assert get_current_tenant() == bound
    assert isinstance(refused.result, TenantMismatchError if bound else InvalidTenantId)
    assert tasks.ERRBACKS_SEEN == []
    with tenant_context(bound, must_exist=False):  # an ordinary failure still calls them
        failed = tasks.boom.apply(args=("x",), link_error=[tasks.errback_seen.s()])
    assert failed.failed() and tasks.ERRBACKS_SEEN == [bound]


def test_a_published_refused_tasks_errbacks_never_run_as_a_tenant(worker, tasks):
    errback_id = f"errback-{time.monotonic_ns()}"
    callback = tasks.errback_seen.s().set(headers={HEADER: "t02"}, task_id=errback_id)
    with tenant_context("t01", must_exist=False):
        refused = tasks.whoami.apply_async(headers={HEADER: "t02"}, link_error=callback)
    assert isinstance(failure_of(refused), TenantMismatchError)
    # The worker stores the failure, then sends the errbacks: dropped, none comes.
    errback = AsyncResult(errback_id, app=tasks.app)
    for _ in range(30):
        assert errback.state == "PENDING", errback.result
        time.sleep(0.1)


def test_for_each_tenant_refuses_bad_arguments(tasks, settings):
    for jitter in (-1, "5", None, float("nan"), True):
        with pytest.raises(ValueError, match="jitter"):
            for_each_tenant(tasks.whoami, jitter=jitter)
    with pytest.raises(TypeError, match="task"):
        for_each_tenant(object())
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"}
    with pytest.raises(ImproperlyConfigured, match="TENANT_MODEL"):
        for_each_tenant(tasks.whoami)
