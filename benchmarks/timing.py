"""The one timing helper every benchmark uses: best of several repeats, in
ns per operation, and a Markdown table of side-by-side ratios."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable


def load_average() -> str:
    """The machine's load average now (1, 5, 15 minutes), for the line
    printed beside each table: a table measured on a busy machine says so."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # not available on this platform
        return "load average unavailable"
    return (
        f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min), "
        f"{os.cpu_count()} cores"
    )


def ns_per_op(fn: Callable[[], object], *, number: int = 20_000, repeat: int = 5) -> float:
    """Best-of-``repeat`` time of ``number`` calls, in ns per call."""
    fn()  # warm caches (compiled config, imports)
    best = float("inf")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter_ns()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter_ns() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def fmt_ns(ns: float) -> str:
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:,.2f} ms"
    if ns >= 10_000:
        return f"{ns / 1000:,.1f} µs"
    return f"{ns:,.0f} ns"


def ratio_table(
    title: str,
    rows: list[tuple],
    *,
    goal: float | None,
    ours: str = "tenantry",
    theirs: str = "djust.tenants",
) -> str:
    """Markdown table: row label, their time, our time, ratio, goal met.

    A row is ``(label, theirs_ns, ours_ns)`` or ``(label, theirs_ns, ours_ns,
    row_goal)``; rows without a goal (none given for the row or the table)
    show "—" in the goal column.
    """
    lines = [
        f"### {title}",
        "",
        f"| case | {theirs} | {ours} | speed-up | goal |",
        "|---|---:|---:|---:|:---:|",
    ]
    for label, theirs_ns, ours_ns, *row_goal in rows:
        ratio = theirs_ns / ours_ns if ours_ns else float("inf")
        wanted = row_goal[0] if row_goal else goal
        met = "—" if wanted is None else f"≥ {wanted:g}×: {'yes' if ratio >= wanted else 'NO'}"
        lines.append(
            f"| {label} | {fmt_ns(theirs_ns)} | {fmt_ns(ours_ns)} | {ratio:,.1f}× | {met} |"
        )
    lines += ["", f"_Measured at {time.strftime('%H:%M UTC', time.gmtime())}, {load_average()}._"]
    return "\n".join(lines) + "\n"


def ns_per_item(
    prepare: Callable[[], object],
    op: Callable[[object], object],
    items: list,
    *,
    repeat: int = 5,
) -> float:
    """Best-of-``repeat`` time of ``op(item)`` over ``items``, in ns per item,
    after an untimed ``prepare()`` before each repeat (for operations that
    consume their state, like leaving a room that ``prepare`` filled)."""
    best = float("inf")
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(repeat):
            prepare()
            gc.disable()
            start = time.perf_counter_ns()
            for item in items:
                op(item)
            best = min(best, (time.perf_counter_ns() - start) / len(items))
            if gc_was_enabled:
                gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def in_child(module: str) -> str:
    """Run ``python -m <module>`` and return what it printed: the sections
    that configure Django for PostgreSQL do it in a child process of their
    own, without the runner's DJANGO_SETTINGS_MODULE (importing tenantry
    reads the settings, which would configure them from it first)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, check=False, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{result.stdout}{result.stderr}")
    return result.stdout
