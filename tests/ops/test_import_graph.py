"""The Python package has no import circle and keeps its layer order
(docs/architecture.md#layers-of-the-python-package), checked by
``scripts/import_graph.py``: no circle at module level, none hidden by a
function-local import, no module importing a higher layer, and every
function-local import that remains has its reason below."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "import_graph.py"
PACKAGE = ROOT / "python" / "tenantry"

#: Every function-local import of a tenantry module or of an optional
#: package (not the standard library, not Django: neither imports tenantry,
#: so neither can close a circle), as (importer, imported); each name also
#: covers the modules under it. The reason says why it cannot be at module
#: level.
ALLOWED: dict[tuple[str, str], str] = {
    # -- for good --------------------------------------------------------------
    ("tenantry.apps", "tenantry"): (
        "AppConfig.ready() is where Django lets an app import what needs every model "
        "loaded (the wall, the live plane's hooks, the checks); nothing imports "
        "tenantry.apps, so none of these can close a circle"
    ),
    ("tenantry.apps", "celery"): "optional dependency: Celery's signals only where it is installed",
    ("tenantry.wall", "tenantry.admin"): (
        "optional Django app: tenantry.admin imports django.contrib.admin, which needs "
        "the admin (and contenttypes) in INSTALLED_APPS; imported only when it is"
    ),
    ("tenantry.db.rls", "psycopg"): (
        "optional driver: psycopg 3's cursor classes are guarded when it is the driver; "
        "a psycopg2 project does not have it"
    ),
    ("tenantry.testing", "tenantry.cache"): (
        "the pytest plugin loads in every pytest run where tenantry is installed, before "
        "Django is configured; importing tenantry.cache patches Django's CacheHandler, "
        "which only a project that installs the app should get"
    ),
    ("tenantry.testing", "channels"): "optional dependency: LiveView test client needs channels",
    ("tenantry.channels", "channels"): (
        "optional dependency: Django Channels, needed only when a WebSocket is refused"
    ),
    ("tenantry.groups", "channels"): "optional dependency: Django Channels' layers",
}

#: Function-local imports that still close a circle, until their owner lands.
PENDING_CIRCLES: set[tuple[str, str]] = set()


def _report(package: Path = PACKAGE) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--package", str(package)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _checked(local: dict) -> bool:
    """A tenantry module, or an optional package (not stdlib, not Django)."""
    top = local["target"].split(".")[0]
    return local["internal"] or (top not in sys.stdlib_module_names and top != "django")


def _allowed(local: dict) -> tuple[str, str] | None:
    for importer, imported in ALLOWED:
        if _under(local["module"], importer) and _under(local["target"], imported):
            return importer, imported
    return None


def test_no_import_circle_and_every_import_keeps_the_layer_order():
    status, report = _report()
    assert report["cycles"] == [], f"import circles at module level: {report['cycles']}"
    assert report["layer_problems"] == [], "\n".join(report["layer_problems"])
    hidden = {(h["module"], h["target"]): h["back"] for h in report["hidden_circles"]}
    unexpected = {k: v for k, v in hidden.items() if k not in PENDING_CIRCLES}
    assert not unexpected, f"function-local imports hiding a circle: {unexpected}"
    assert status == (1 if hidden else 0)


def test_every_function_local_import_left_is_allowed_with_its_reason():
    _, report = _report()
    checked = [local for local in report["function_local"] if _checked(local)]
    unexplained = [
        f"{local['module']}:{local['line']} in {local['function']}(): {local['target']}"
        for local in checked
        if _allowed(local) is None
    ]
    assert not unexplained, (
        "function-local imports with no reason in ALLOWED (move the shared piece to a "
        "lower module, or import at module level):\n" + "\n".join(unexplained)
    )
    used = {_allowed(local) for local in checked}
    modules = {local["module"] for local in report["function_local"]} | set(_modules_of(PACKAGE))
    stale = [
        key
        for key in ALLOWED
        if key not in used and any(_under(module, key[0]) for module in modules)
    ]
    assert not stale, f"ALLOWED entries no import needs any more (remove them): {stale}"
    assert all(reason.strip() for reason in ALLOWED.values())


def _modules_of(package: Path) -> list[str]:
    names = []
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / "tenantry"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package


def test_the_checker_finds_circles_hidden_ones_and_upward_imports(tmp_path):
    """The checker itself: a package with the circles this step removed
    (``db.rls`` importing ``isolation`` inside a function, ``rls`` <->
    ``operations``), a module-level circle, an upward import and a module in
    no layer is refused on each count."""
    package = _write(
        tmp_path,
        {
            "__init__.py": "",
            "context.py": "from .managers import TenantManager\n",  # upward: context -> managers
            "managers.py": "from . import isolation\nTenantManager = None\n",
            "isolation.py": "from .db.rls import BYPASS\nfrom . import graph\n",
            "graph.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from . import managers\nfrom . import ownership\n",
            "ownership.py": "from . import graph\n",  # module-level circle graph <-> ownership
            "db/__init__.py": "from .operations import EnableTenantRLS\n",
            "db/operations.py": "from .rls import BYPASS\nEnableTenantRLS = None\n",
            "db/rls.py": """\
                BYPASS = ("", "on")

                def scoped_models():
                    from ..isolation import scope_of  # hides isolation -> db.rls

                def table_problems():
                    from .operations import POLICY  # hides operations -> rls
            """,
            "stray.py": "",
        },
    )
    status, report = _report(package)
    assert status == 1
    assert report["cycles"] == [["tenantry.graph", "tenantry.ownership", "tenantry.graph"]]
    hidden = {(h["module"], h["target"]) for h in report["hidden_circles"]}
    assert hidden == {
        ("tenantry.db.rls", "tenantry.isolation"),
        ("tenantry.db.rls", "tenantry.db.operations"),
    }
    problems = "\n".join(report["layer_problems"])
    assert "tenantry.context (layer 'context') imports tenantry.managers" in problems
    assert "tenantry.stray is in no layer" in problems
    # A TYPE_CHECKING import never runs: graph -> managers is no edge.
    assert "tenantry.graph (layer 'graph') imports tenantry.managers" not in problems
    locals_ = {(i["module"], i["function"], i["target"]) for i in report["function_local"]}
    assert locals_ == {
        ("tenantry.db.rls", "scoped_models", "tenantry.isolation"),
        ("tenantry.db.rls", "table_problems", "tenantry.db.operations"),
    }
