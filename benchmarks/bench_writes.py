"""The cost of the ORM isolation rules (SPEC §9, ``tenantry.isolation``) on
writes and reads of 1,000 rows: a scoped model (``TenantManager``, a tenant
bound, every guard on) against the same tables with Django's plain manager
and no guard, in the same run, on in-memory SQLite.

The goal (SPEC §17): no extra query on a read, at most one per relation
field on a write. Times are the best of 5 alternating rounds; the query
counts are exact.
"""

from __future__ import annotations

from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from benchmarks.timing import fmt_ns, ns_per_item
from tenantry import tenant_context

N = 1_000


def _clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM benchapp_doc")
        cursor.execute("DELETE FROM benchapp_baredoc")


def _queries(prepare, op) -> int:
    prepare()
    connection.queries_log.clear()  # a full log (9,000 queries) would count nothing
    with CaptureQueriesContext(connection) as ctx:
        op()
    return len(ctx.captured_queries)


def _pair(prepare, before, after, rounds: int = 5) -> tuple[float, float, int, int]:
    """Best-of-``rounds`` ns of each whole operation, the two alternating so
    both see the same machine load, and the queries each sends."""
    best = [float("inf"), float("inf")]
    with tenant_context("acme"):
        for _ in range(rounds):
            for index, op in enumerate((before, after)):
                ns = ns_per_item(prepare, lambda _, op=op: op(), [None], repeat=1)
                best[index] = min(best[index], ns)
        return best[0], best[1], _queries(prepare, before), _queries(prepare, after)


def run() -> str:
    from benchmarks.benchapp.models import BareDoc, BareFolder, Doc, Folder

    call_command("migrate", run_syncdb=True, verbosity=0)
    _clear()
    folder, other = (Folder.objects.for_tenant("acme").create(name=n) for n in ("a", "b"))
    plain, plain_other = (BareFolder.objects.create(owner_key="acme", name=n) for n in "ab")
    with tenant_context("acme"):
        folder, other = Folder.objects.get(pk=folder.pk), Folder.objects.get(pk=other.pk)
    titles = [f"doc{i}" for i in range(N)]

    def fill() -> None:
        _clear()
        BareDoc.objects.bulk_create(
            BareDoc(owner_key="acme", title=t, folder=plain) for t in titles
        )
        Doc.objects.for_tenant("acme").bulk_create(Doc(title=t, folder=folder) for t in titles)

    loaded: dict[str, list] = {}

    def load() -> None:
        fill()
        loaded["plain"] = list(BareDoc.objects.filter(owner_key="acme"))
        loaded["scoped"] = list(Doc.objects.all())
        for a, b in zip(loaded["plain"], loaded["scoped"], strict=True):
            a.title = b.title = "changed"
            a.folder, b.folder = plain_other, other

    def load_fresh() -> None:
        fill()
        loaded["plain"] = list(BareDoc.objects.filter(owner_key="acme"))
        loaded["scoped"] = list(Doc.objects.all())

    cases = [
        (
            "`create()` × 1,000, FK as a loaded instance",
            _clear,
            lambda: [
                BareDoc.objects.create(owner_key="acme", title=t, folder=plain) for t in titles
            ],
            lambda: [Doc.objects.create(title=t, folder=folder) for t in titles],
        ),
        (
            "`create()` × 1,000, FK as a bare id (`folder_id=`)",
            _clear,
            lambda: [
                BareDoc.objects.create(owner_key="acme", title=t, folder_id=plain.pk)
                for t in titles
            ],
            lambda: [Doc.objects.create(title=t, folder_id=folder.pk) for t in titles],
        ),
        (
            "`save()` × 1,000 loaded rows (title and FK changed)",
            load,
            lambda: [d.save() for d in loaded["plain"]],
            lambda: [d.save() for d in loaded["scoped"]],
        ),
        (
            "`update(title=...)` of 1,000 rows",
            fill,
            lambda: BareDoc.objects.filter(owner_key="acme").update(title="x"),
            lambda: Doc.objects.update(title="x"),
        ),
        (
            "`update(folder=...)` of 1,000 rows",
            fill,
            lambda: BareDoc.objects.filter(owner_key="acme").update(folder=plain_other),
            lambda: Doc.objects.update(folder=other),
        ),
        (
            "`bulk_create()` of 1,000 rows, FK as a bare id",
            _clear,
            lambda: BareDoc.objects.bulk_create(
                [BareDoc(owner_key="acme", title=t, folder_id=plain.pk) for t in titles]
            ),
            lambda: Doc.objects.bulk_create([Doc(title=t, folder_id=folder.pk) for t in titles]),
        ),
        (
            "`bulk_update()` of 1,000 loaded rows, `[title, folder]`",
            load,
            lambda: BareDoc.objects.bulk_update(loaded["plain"], ["title", "folder"]),
            lambda: Doc.objects.bulk_update(loaded["scoped"], ["title", "folder"]),
        ),
        (
            "read: `list()` of 1,000 rows",
            fill,
            lambda: list(BareDoc.objects.filter(owner_key="acme")),
            lambda: list(Doc.objects.all()),
        ),
        (
            "read: `doc.folder` of 1,000 loaded rows (lazy load, base manager)",
            load_fresh,
            lambda: [d.folder for d in loaded["plain"]],
            lambda: [d.folder for d in loaded["scoped"]],
        ),
        (
            "read: `refresh_from_db()` of 1,000 rows",
            load_fresh,
            lambda: [d.refresh_from_db() for d in loaded["plain"]],
            lambda: [d.refresh_from_db() for d in loaded["scoped"]],
        ),
        (
            "read: `select_related('folder')` of 1,000 rows",
            fill,
            lambda: list(BareDoc.objects.filter(owner_key="acme").select_related("folder")),
            lambda: list(Doc.objects.select_related("folder")),
        ),
        (
            "read: 1,000 × `get(pk=...)` (a queryset made and compiled per row)",
            load_fresh,
            lambda: [
                BareDoc.objects.filter(owner_key="acme").get(pk=d.pk) for d in loaded["plain"]
            ],
            lambda: [Doc.objects.get(pk=d.pk) for d in loaded["scoped"]],
        ),
        (
            "read: `values_list('title', 'folder__name')` of 1,000 rows (a join)",
            fill,
            lambda: list(
                BareDoc.objects.filter(owner_key="acme").values_list("title", "folder__name")
            ),
            lambda: list(Doc.objects.values_list("title", "folder__name")),
        ),
        (
            "read: 100 × `Folder.objects.filter(doc__title=...)` (a reverse join)",
            fill,
            lambda: [
                list(BareFolder.objects.filter(owner_key="acme", baredoc__title=t))
                for t in titles[:100]
            ],
            lambda: [list(Folder.objects.filter(doc__title=t)) for t in titles[:100]],
        ),
        (
            "read: 100 × `exclude(doc__title=...)` (a subquery Django builds)",
            fill,
            lambda: [
                list(BareFolder.objects.filter(owner_key="acme").exclude(baredoc__title=t))
                for t in titles[:100]
            ],
            lambda: [list(Folder.objects.exclude(doc__title=t)) for t in titles[:100]],
        ),
    ]
    lines = [
        "### ORM isolation guards: scoped writes and reads of 1,000 rows",
        "",
        "Django's plain manager on a twin of the tables that is no tenant's (no guard) against "
        "`TenantManager` with a tenant bound and every isolation guard on; in-memory SQLite.",
        "",
        "| case | plain Django | tenantry scoped | ratio | queries (plain → scoped) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, prepare, before, after in cases:
        before_ns, after_ns, before_q, after_q = _pair(prepare, before, after)
        lines.append(
            f"| {label} | {fmt_ns(before_ns)} | {fmt_ns(after_ns)} | "
            f"{after_ns / before_ns:.2f}× | {before_q:,} → {after_q:,} |"
        )
    _clear()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from benchmarks import setup

    setup()
    print(run())
