"""``manage.py tenantry usage [--tenant ID] [--since HOURS] [--json]``:
per-tenant usage by day."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from django.core.management.base import CommandError

from ...usage import METRICS, get_usage, tenants_with_usage

NAME = "usage"


def add_arguments(subparsers) -> None:
    usage = subparsers.add_parser(NAME, help="per-tenant usage by day (requests, events, ...)")
    usage.add_argument("--tenant", action="append", metavar="ID", help="only these tenants")
    usage.add_argument("--since", type=int, default=24, metavar="HOURS", help="default 24")
    usage.add_argument("--json", action="store_true", help="machine-readable output")


def handle(command, options) -> None:
    if options["since"] < 1:
        raise CommandError("--since is a number of hours, at least 1")
    since = datetime.now(UTC) - timedelta(hours=options["since"] - 1)
    tenants = options["tenant"] or tenants_with_usage()
    reports = [get_usage(t, since=since) for t in tenants]
    if options["json"]:
        out = [
            {
                "tenant": r["tenant"],
                "total": r["total"],
                "days": [{**d, "day": d["day"].isoformat()} for d in r["days"]],
                "hours": [{**h, "hour": h["hour"].isoformat()} for h in r["hours"]],
            }
            for r in reports
        ]
        command.stdout.write(json.dumps(out, indent=2))
        return
    header = ["tenant", "day", *METRICS]
    rows = [
        [r["tenant"], d["day"].isoformat(), *(str(d[m]) for m in METRICS)]
        for r in reports
        for d in r["days"]
    ]
    if not rows:
        command.stdout.write("no usage recorded")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for line in [header, *rows]:
        command.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
