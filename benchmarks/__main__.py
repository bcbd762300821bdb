"""Runs every benchmark in one process and prints one Markdown report.

scripts/bench.sh            # sets up .bench-venv and runs this
python -m benchmarks        # inside an environment that has both libraries
"""

from __future__ import annotations

import platform
import sys
import time
import traceback

from benchmarks import setup
from benchmarks.timing import load_average


def main() -> int:
    setup()
    import django
    import djust

    import tenantry
    from benchmarks import (
        bench_cache,
        bench_dedicated,
        bench_fleet,
        bench_grants,
        bench_jobs,
        bench_lifecycle,
        bench_links,
        bench_liveview,
        bench_metrics,
        bench_presence,
        bench_presence_frames,
        bench_ratelimit,
        bench_registry,
        bench_request_path,
        bench_resolvers,
        bench_rls,
        bench_state,
        bench_writes,
    )

    print("# tenantry benchmarks\n")
    print(
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"djust {djust.__version__}, tenantry {tenantry.__version__}.\n"
        "Times are the best of 5 repeats; ratios compare numbers from this one run.\n"
        f"At the start: {load_average()}. A load above the core count means other work "
        "shared the cores: compare ratios, not absolute times, and regenerate on a quiet "
        "machine for the record.\n"
    )
    failed: list[str] = []
    for module in (
        bench_resolvers,
        bench_request_path,
        bench_registry,
        bench_presence,
        bench_presence_frames,
        bench_state,
        bench_writes,
        bench_lifecycle,
        bench_cache,
        bench_liveview,
        bench_metrics,
        bench_rls,
        bench_grants,
        bench_links,
        bench_fleet,
        bench_dedicated,
        bench_jobs,
        bench_ratelimit,
    ):
        started = time.strftime("%H:%M UTC", time.gmtime())
        try:
            print(module.run())
        except Exception as exc:  # one failed section must not cost the others
            # Named in the report, the run goes on, and its exit status says so.
            failed.append(module.__name__)
            print(f"**{module.__name__} failed: {type(exc).__name__}: {exc}**\n")
            traceback.print_exc()
        # Beside every table, whichever helper drew it: the section's load.
        print(f"_Section run from {started}; at its end: {load_average()}._\n")
        sys.stdout.flush()
    if failed:
        print(f"**Sections that failed: {', '.join(failed)}.**")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
