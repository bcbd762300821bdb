"""Cache keys: ``tenantry.cache.make_key`` against Django's default key
function, as Django calls them (``cache.make_key``, which every cache
operation runs), with a tenant bound; and a whole ``cache.get`` on the
local-memory cache. Goal: a key costs at most 1.2× Django's default."""

from __future__ import annotations

from functools import partial

from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

import tenantry.cache
from benchmarks.timing import ns_per_op, ratio_table
from tenantry import tenant_context

#: The cost goal (≤ 1.2× Django's) as the table's speed-up goal, rounded up
#: (0.84 is a cost of ≤ 1.19×).
GOAL = 0.84


def _caches() -> tuple[LocMemCache, LocMemCache]:
    """Two local-memory caches, Django's key function and tenantry's (the
    ``default`` alias of benchmarks/settings.py, which holds the generations)."""
    return LocMemCache("bench-default", {}), caches["default"]


def _after_a_tick(ours: LocMemCache) -> str:
    tenantry.cache._head = tenantry.cache._NOTHING  # what the ticker does every TICK s
    return ours.make_key("user:42:profile")


def run() -> str:
    theirs, ours = _caches()
    rows = []
    with tenant_context("acme"):
        ours.set("user:42:profile", b"x")  # reads the generation once
        theirs.set("user:42:profile", b"x")
        rows.append(
            (
                "`cache.make_key(key)`",
                ns_per_op(partial(theirs.make_key, "user:42:profile"), number=100_000, repeat=15),
                ns_per_op(partial(ours.make_key, "user:42:profile"), number=100_000, repeat=15),
                GOAL,
            )
        )
        rows.append(
            (
                "`cache.make_key(key)` after a tick or a tenant switch (slow path)",
                ns_per_op(partial(theirs.make_key, "user:42:profile"), number=50_000),
                ns_per_op(partial(_after_a_tick, ours), number=50_000),
                None,
            )
        )
        rows.append(
            (
                "`cache.get(key)` hit, local memory",
                ns_per_op(partial(theirs.get, "user:42:profile"), number=50_000),
                ns_per_op(partial(ours.get, "user:42:profile"), number=50_000),
                None,
            )
        )
    return ratio_table(
        "Cache keys per tenant (goal: a key costs ≤ 1.2× Django's default, "
        "i.e. speed-up ≥ 0.84×)",
        rows,
        goal=None,
        theirs="Django default",
    )


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
