"""``manage.py tenantry audit verify|export|prune``: the stored audit trail
(``TENANT_AUDIT_STORE = "database"``, docs/operations.md#audit-trail).

manage.py tenantry audit verify acme [--incarnation INC] [--platform]
manage.py tenantry audit export acme [-o PATH] [--incarnation INC] [--platform]
manage.py tenantry audit prune [--days N]
"""

from __future__ import annotations

from django.core.management.base import CommandError

from ... import audit_trail
from ..._core import InvalidTenantId

NAME = "audit"


def add_arguments(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help="verify, export or prune the stored audit trail")
    actions = parser.add_subparsers(dest="audit_action", required=True)
    for name, text in (
        ("verify", "walk a tenant's chain and name every changed or removed row"),
        ("export", "a tenant's chain as JSON lines (stdout unless -o)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("tenant_id", nargs="?", help="the tenant (omit with --platform)")
        action.add_argument("--incarnation", help="a deleted tenant's trail, by incarnation")
        action.add_argument(
            "--platform", action="store_true", help="the chain of events that name no tenant"
        )
        if name == "export":
            action.add_argument("-o", "--output", metavar="PATH", help="write to PATH")
    prune = actions.add_parser(
        "prune", help="remove events older than TENANT_AUDIT_RETENTION_DAYS, oldest first"
    )
    prune.add_argument("--days", type=int, help="instead of TENANT_AUDIT_RETENTION_DAYS")


def _chain(options) -> audit_trail.Chain:
    if options["platform"]:
        if options["tenant_id"]:
            raise CommandError("give a tenant id or --platform, not both")
        return audit_trail.select_chain(None)
    if not options["tenant_id"]:
        raise CommandError("give the tenant id (or --platform)")
    try:
        return audit_trail.select_chain(options["tenant_id"], options["incarnation"])
    except (LookupError, InvalidTenantId) as exc:
        raise CommandError(str(exc)) from exc


def handle(command, options) -> None:
    action = options["audit_action"]
    if action == "prune":
        if options["days"] is not None and options["days"] < 1:
            raise CommandError("--days is a number of days, at least 1")
        try:
            pruned = audit_trail.prune(days=options["days"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for chain, removed, anchor in pruned:
            command.stdout.write(f"{chain.key}: removed {removed} rows, anchor at seq {anchor}")
        command.stdout.write(f"pruned {len(pruned)} chains")
        return
    chain = _chain(options)
    if action == "export":
        out = command.stdout if not options["output"] else None
        if out is None:
            with open(options["output"], "w", encoding="utf-8") as handle_:
                for line in audit_trail.export(chain):
                    handle_.write(line + "\n")
        else:
            for line in audit_trail.export(chain):
                command.stdout.write(line)
        return
    report = audit_trail.verify(chain)
    where = f"{chain.key}: {report.rows} rows, head at seq {report.head_seq}"
    if report.anchor_seq:
        where += f", anchored at seq {report.anchor_seq}"
    if report.ok:
        command.stdout.write(f"OK {where}, head hash {report.head_hash}")
        return
    for problem in report.problems:
        command.stderr.write(f"TAMPERED {problem}")
    raise CommandError(f"{chain.key}: {len(report.problems)} problems ({where})")


__all__ = ["NAME", "add_arguments", "handle"]
