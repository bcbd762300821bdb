#!/usr/bin/env python
"""Runs djust's own tenant tests against tenantry, with only the imports changed.

The djust wheel ships its tenant tests inside the package
(``djust/tests/test_tenant*.py`` and two more). This copies them out of the
installed djust into a temporary directory, twice: once as they are (run
against ``djust.tenants``) and once with every ``djust.tenants`` import and
patch target rewritten to tenantry's name for it (run against tenantry, with
``"tenantry"`` in ``INSTALLED_APPS``). Names that are not tenancy stay
imported from djust: the audit API (``djust.tenants.audit``) and
``SecurityHeadersMiddleware`` (``djust.tenants.security``). Then it prints the
pass counts of both runs and every tenantry failure, each with the row of
docs/migrating-from-djust.md that explains it (``KNOWN_DIFFERENCES``).

No network: the files come from the installed djust. More files (djust's
``tests/unit/test_tenants.py`` from a checkout of djust's repository, which
the wheel does not ship) are added with ``--tests PATH``.

    python scripts/djust_compat.py                     # both libraries, a table
    python scripts/djust_compat.py --library tenantry --json
    python scripts/djust_compat.py --tests ~/djust/tests/unit/test_tenants.py
    python scripts/djust_compat.py --names             # the upgrade guard, below

Exit status: 0 when every tenantry failure is a known, documented difference,
1 otherwise (and 2 when a run could not start).

``--names`` is the upgrade guard for a new djust: it checks, in the installed
djust, every djust private name tenantry relies on
(``tenantry.djust.names.PRIVATE_NAMES``, the list ``manage.py check`` reports
as ``tenantry.W112``) and prints one row per name; exit status 1 when one is
missing or changed. Run it (and the tests above) against a new djust before
raising tenantry's djust pin (docs/architecture.md#the-djust-seam).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

#: The test files the djust 1.2.6 wheel ships about tenancy.
WHEEL_TESTS = (
    "test_tenant_isolation_contextvar.py",
    "test_tenant_session_state_backport.py",
    "test_tenant_set_tenant.py",
    "test_tenant_state_keys_backport.py",
    "test_tenant_sticky_and_sse_backport.py",
    "test_tenants_audit.py",
    "test_tenants_middleware.py",
    "test_tenants_security.py",
    "test_snapshot_token_tenant_backport.py",
    "test_ws_host_tenant_f26.py",
)

#: ``djust.tenants`` modules → the tenantry module that has the same names.
MODULES = {
    "djust.tenants": "tenantry",
    "djust.tenants.resolvers": "tenantry.resolvers",
    "djust.tenants.mixin": "tenantry.mixins",
    "djust.tenants.middleware": "tenantry.middleware",
    "djust.tenants.managers": "tenantry.managers",
    "djust.tenants.backends": "tenantry.presence",
}

#: Modules that are not tenancy: they stay djust's.
KEEP = ("djust.tenants.audit", "djust.tenants.security")

#: Names found elsewhere (or under another name) in tenantry.
RENAMED = {
    # The ContextVar itself: tenantry binds djust's own variable.
    ("djust.tenants.middleware", "_current_tenant"): ("tenantry.context", "_current"),
}

_NO_TENANT = "Querysets: no tenant bound raises TenantNotSetError (never every tenant's rows)"
_STATE = (
    "Saved view state: a tenantry tenant's saved views live in its own space "
    "(tenantry's router), not in djust's InMemoryStateBackend dict"
)
_SHORT_CIRCUIT = "Middleware and views: no short-circuit when DJUST_CONFIG is empty"

#: djust's tenant tests that fail against tenantry on purpose: test id → the
#: row of docs/migrating-from-djust.md that explains it.
KNOWN_DIFFERENCES: dict[str, str] = {
    # The tests the djust wheel ships.
    "test_tenant_isolation_contextvar.py::TestFailClosedNoTenant::"
    "test_no_tenant_strict_mode_returns_none_for_all_variants": _NO_TENANT,
    "test_tenant_isolation_contextvar.py::TestFailClosedNoTenant::"
    "test_no_tenant_lax_mode_returns_all_rows": _NO_TENANT,
    "test_tenant_isolation_contextvar.py::TestFailClosedNoTenant::"
    "test_strict_mode_defaults_to_true": _NO_TENANT,
    "test_tenant_session_state_backport.py::TestScopeHelpers::test_tenant_id_is_percent_encoded": (
        "Ids: a tenant id with ':' is refused (InvalidTenantId)"
    ),
    "test_tenant_state_keys_backport.py::TestTenantKeyedState::"
    "test_two_tenants_one_session_one_url_keep_separate_state": _STATE,
    "test_tenants_middleware.py::TestTenantMiddleware::test_middleware_raises_404_when_required": (
        "Middleware and views: the 404 is raised in process_view"
    ),
    "test_tenants_middleware.py::TestTenantMiddlewareShortCircuit::"
    "test_short_circuits_when_unconfigured": _SHORT_CIRCUIT,
    "test_tenants_middleware.py::TestTenantMiddlewareShortCircuit::"
    "test_does_not_short_circuit_with_djust_config": _SHORT_CIRCUIT,
    "test_tenants_middleware.py::TestTenantMiddlewareShortCircuit::"
    "test_does_not_short_circuit_with_djust_tenants": _SHORT_CIRCUIT,
    "test_tenants_middleware.py::TestTenantMiddlewareShortCircuit::"
    "test_short_circuit_does_not_set_thread_local": _SHORT_CIRCUIT,
    # djust's tests/unit/test_tenants.py (not in the wheel; run with --tests).
    "test_tenants.py::TestTenantScopedMixin::test_get_tenant_queryset_no_tenant": _NO_TENANT,
    "test_tenants.py::TestTenantAwareMemoryBackend::test_heartbeat_updates_timestamp": (
        "Presence: no class-level _presences/_heartbeats dicts"
    ),
    "test_tenants.py::TestTenantScopedMixin::test_create_for_tenant": (
        "Querysets: create_for_tenant() goes through the scoped queryset"
    ),
}

#: The least number of the wheel-shipped tests that must pass against
#: tenantry (117 in djust 1.2.6; every other one is in KNOWN_DIFFERENCES).
FLOOR = 107

SETTINGS = '''\
"""Django settings for running djust's tenant tests (written by djust_compat.py)."""

LIBRARY = {library!r}
SECRET_KEY = "djust-compat-not-secret"
DEBUG = False
ALLOWED_HOSTS = [".example.com", "testserver"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "channels",
    "djust",
] + (["tenantry"] if LIBRARY == "tenantry" else [])
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "compat_urls"
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}}
TEMPLATES = [
    {{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {{"context_processors": ["django.template.context_processors.request"]}},
    }}
]
CHANNEL_LAYERS = {{"default": {{"BACKEND": "channels.layers.InMemoryChannelLayer"}}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

PYTEST_INI = """\
[pytest]
DJANGO_SETTINGS_MODULE = compat_settings
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p no:cacheprovider -p no:randomly
markers =
    tenants: djust's tenant tests
    slow: slow
filterwarnings = ignore::DeprecationWarning
"""

_FROM_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from (?P<module>djust\.tenants(?:\.\w+)?) import "
    r"(?:\((?P<paren>[^)]*)\)|(?P<plain>[^\n]*))",
    re.MULTILINE,
)
_TARGET = re.compile(r"""(?P<q>["'])(?P<module>djust\.tenants(?:\.\w+)?)\.(?P<name>\w+)(?P=q)""")


def _tenantry_name(module: str, name: str) -> tuple[str, str] | None:
    """Where tenantry keeps ``module.name``; None when it stays djust's."""
    if (module, name) in RENAMED:
        return RENAMED[(module, name)]
    target = MODULES.get(module)
    return None if target is None else (target, name)


def rewrite(source: str) -> str:
    """``source`` with its ``djust.tenants`` imports and patch targets
    pointing at tenantry (audit and security stay djust's)."""

    def imports(match: re.Match[str]) -> str:
        indent, module = match["indent"], match["module"]
        names = match["paren"] if match["paren"] is not None else match["plain"]
        by_module: dict[str, list[str]] = {}
        for item in names.replace("\n", " ").split(","):
            item = item.split("#")[0].strip()
            if not item:
                continue
            name, _, alias = item.partition(" as ")
            name, alias = name.strip(), (alias.strip() or name.strip())
            where = _tenantry_name(module, name)
            target, real = where if where is not None else (module, name)
            by_module.setdefault(target, []).append(real if real == alias else f"{real} as {alias}")
        return "\n".join(
            f"{indent}from {target} import {', '.join(items)}"
            for target, items in by_module.items()
        )

    def targets(match: re.Match[str]) -> str:
        dotted = f"{match['module']}.{match['name']}"
        if dotted in KEEP:
            return match[0]
        if dotted in MODULES:  # a module named as a string (a logger, a patch target)
            return f"{match['q']}{MODULES[dotted]}{match['q']}"
        where = _tenantry_name(match["module"], match["name"])
        if where is None:
            return match[0]
        return f"{match['q']}{where[0]}.{where[1]}{match['q']}"

    return _TARGET.sub(targets, _FROM_IMPORT.sub(imports, source))


def wheel_tests_dir() -> Path:
    import djust

    return Path(djust.__file__).resolve().parent / "tests"


def prepare(library: str, files: list[Path], root: Path) -> None:
    """A pytest root in ``root`` with ``files`` (rewritten for tenantry)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(PYTEST_INI)
    (root / "compat_settings.py").write_text(SETTINGS.format(library=library))
    (root / "compat_urls.py").write_text("urlpatterns = []\n")
    # djust's tests build throwaway models under this app label.
    (root / "djust_tests").mkdir(exist_ok=True)
    (root / "djust_tests" / "__init__.py").write_text("")
    shutil.copy(wheel_tests_dir() / "conftest.py", root / "conftest.py")
    for path in files:
        source = path.read_text()
        if library == "tenantry":
            source = rewrite(source)
        (root / path.name).write_text(source)


def run(
    library: str, files: list[Path], *, verbose: bool = False, workdir: Path | None = None
) -> dict:
    """Runs ``files`` against ``library``; returns counts and failing test ids.
    With ``workdir``, the pytest root is kept there (to rerun one test by hand)."""
    with tempfile.TemporaryDirectory(prefix=f"djust-compat-{library}-") as tmp:
        root = Path(tmp) if workdir is None else workdir / library
        tmp = str(root)
        prepare(library, files, root)
        report = root / "report.xml"
        command = [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}"]
        command += [path.name for path in files]
        env = dict(os.environ)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH")]))
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if verbose:
            sys.stderr.write(done.stdout[-20000:] + done.stderr[-5000:])
        if not report.exists():
            raise RuntimeError(f"pytest did not run for {library}:\n{done.stdout}\n{done.stderr}")
        return _parse(report)


def _parse(report: Path) -> dict:
    passed, failed, skipped = [], [], []
    by_file: dict[str, list[int]] = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "").split(".")[0]
        classes = case.get("classname", "").split(".")[1:]
        test_id = "::".join([f"{module}.py", *classes, case.get("name", "")])
        counts = by_file.setdefault(f"{module}.py", [0, 0])
        counts[1] += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(test_id)
        elif case.find("skipped") is not None:
            skipped.append(test_id)
        else:
            passed.append(test_id)
            counts[0] += 1
    return {
        "passed": len(passed),
        "failed": sorted(failed),
        "skipped": sorted(skipped),
        "total": len(passed) + len(failed) + len(skipped),
        "by_file": {name: {"passed": p, "total": t} for name, (p, t) in sorted(by_file.items())},
    }


def _setup_django() -> None:
    """Django settings for importing djust's modules: the caller's
    ``DJANGO_SETTINGS_MODULE``, else the fewest djust imports with."""
    import django
    from django.conf import settings

    if not os.environ.get("DJANGO_SETTINGS_MODULE") and not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
    django.setup()


def check_names(*, as_json: bool = False) -> int:
    """The upgrade guard: every djust private name tenantry relies on, in the
    installed djust (see the module docstring). Returns the exit status."""
    _setup_django()
    from importlib.metadata import version

    from tenantry.djust.names import PRIVATE_NAMES, _problem

    rows = [(name, _problem(name)) for name in PRIVATE_NAMES]
    missing = [problem for _name, problem in rows if problem is not None]
    if as_json:
        print(
            json.dumps(
                {
                    "djust": version("djust"),
                    "names": [
                        {
                            "module": name.module,
                            "attribute": name.attribute,
                            "kind": name.kind,
                            "used_by": name.used_by,
                            "problem": problem,
                        }
                        for name, problem in rows
                    ],
                    "problems": missing,
                },
                indent=2,
            )
        )
    else:
        print(f"djust {version('djust')}: the private names tenantry relies on\n")
        print("| name | kind | used by | in this djust |")
        print("|---|---|---|---|")
        for name, problem in rows:
            print(f"| {name.path} | {name.kind} | {name.used_by} | {problem or 'yes'} |")
        print(f"\n{len(rows) - len(missing)}/{len(rows)} names as tenantry expects them.")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=("both", "tenantry", "djust"), default="both")
    parser.add_argument(
        "--tests",
        action="append",
        type=Path,
        default=[],
        help="another djust test file to run (e.g. tests/unit/test_tenants.py of djust's repo)",
    )
    parser.add_argument(
        "--no-wheel-tests",
        action="store_true",
        help="run only the --tests files, not the tests the djust wheel ships",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's output")
    parser.add_argument(
        "--workdir", type=Path, help="keep each library's pytest root under this directory"
    )
    parser.add_argument(
        "--rewrite", type=Path, help="print one file rewritten for tenantry and exit"
    )
    parser.add_argument(
        "--names",
        action="store_true",
        help="check the djust private names tenantry relies on, in the installed djust, and exit",
    )
    args = parser.parse_args(argv)
    if args.names:
        return check_names(as_json=args.json)
    if args.rewrite:
        sys.stdout.write(rewrite(args.rewrite.read_text()))
        return 0

    files = [] if args.no_wheel_tests else [wheel_tests_dir() / name for name in WHEEL_TESTS]
    files += [path.resolve() for path in args.tests]
    libraries = ("djust", "tenantry") if args.library == "both" else (args.library,)
    try:
        results = {
            library: run(library, files, verbose=args.verbose, workdir=args.workdir)
            for library in libraries
        }
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2

    unexplained = []
    if "tenantry" in results:
        unexplained = [t for t in results["tenantry"]["failed"] if t not in KNOWN_DIFFERENCES]
        results["tenantry"]["unexplained"] = unexplained
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"djust's tenant tests ({len(files)} files), imports rewritten for tenantry\n")
        print("| library | passed | failed | skipped | total |")
        print("|---|---:|---:|---:|---:|")
        for library, result in results.items():
            print(
                f"| {library} | {result['passed']} | {len(result['failed'])} "
                f"| {len(result['skipped'])} | {result['total']} |"
            )
        print("\n| file | " + " | ".join(results) + " |")
        print("|---|" + "---:|" * len(results))
        first = next(iter(results.values()))
        for name in first["by_file"]:
            cells = []
            for result in results.values():
                counts = result["by_file"].get(name, {"passed": 0, "total": 0})
                cells.append(f"{counts['passed']}/{counts['total']}")
            print(f"| {name} | " + " | ".join(cells) + " |")
        if "tenantry" in results and results["tenantry"]["failed"]:
            print("\nFailing against tenantry:")
            for test_id in results["tenantry"]["failed"]:
                why = KNOWN_DIFFERENCES.get(test_id, "NOT A DOCUMENTED DIFFERENCE")
                print(f"- {test_id}: {why}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
