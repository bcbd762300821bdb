#!/usr/bin/env python
"""Runs djust's own shipped test suite twice, without and with ``"tenantry"``
in ``INSTALLED_APPS``, and compares the outcome of every test.

Installing tenantry must not change how an app's views *without* tenancy
behave (docs/migrating-from-djust.md#installing-tenantry-next-to-plain-views):
djust's suite is the widest set of such views there is. The installed djust
wheel ships its tests (``djust/tests/``); both runs use the same minimal
Django settings (written to a temporary folder), differing only in
``INSTALLED_APPS``, and each test's outcome (passed, failed, error, skipped)
is read from pytest's JUnit XML. Tests that fail in both runs are djust's own
business (they need settings of djust's own repository); only a *difference*
is tenantry's.

    python scripts/djust_suite.py                   # every shipped test file
    python scripts/djust_suite.py -k presence        # a subset, by pytest -k
    python scripts/djust_suite.py --files test_presence.py test_realtime_v121_6.py

Exit status: 0 when no test's outcome differs, 1 when some do (listed), 2
when a run could not start. No network: everything comes from the installed
packages. Slow (minutes per run): not part of scripts/test.sh.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

SETTINGS = '''\
import os
LIBRARY = os.environ["DJUST_SUITE_LIBRARY"]
SECRET_KEY = "djust-suite-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
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
ROOT_URLCONF = "djust_suite_urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
  "OPTIONS": {"context_processors": ["django.template.context_processors.request"]}}]
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
'''

PYTEST_INI = """\
[pytest]
DJANGO_SETTINGS_MODULE = djust_suite_settings
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p no:cacheprovider -p no:randomly -q
filterwarnings = ignore::DeprecationWarning
"""


def djust_tests() -> Path:
    import djust

    return Path(djust.__file__).parent / "tests"


def run(library: str, work: Path, targets: list[str], keyword: str | None) -> dict[str, str]:
    """``{test id: outcome}`` of one run."""
    report = work / f"{library}.xml"
    command = [sys.executable, "-m", "pytest", "-c", str(work / "pytest.ini")]
    # A file that imports djust's repository-only helpers (``tests.conftest``)
    # fails to collect in both runs; the rest must still run.
    command += ["--rootdir", str(work), f"--junitxml={report}", "--continue-on-collection-errors"]
    command += targets
    if keyword:
        command += ["-k", keyword]
    env = {
        **os.environ,
        # The suite's own settings, even when started from another Django
        # project's process (pytest-django prefers the variable to the ini).
        "DJANGO_SETTINGS_MODULE": "djust_suite_settings",
        "DJUST_SUITE_LIBRARY": library,
        "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")]),
    }
    print(f"==> djust's suite, {library}: {' '.join(command[3:])}", file=sys.stderr)
    subprocess.run(command, env=env, cwd=work, check=False)
    if not report.exists():
        raise SystemExit(f"the {library} run wrote no report ({report}); see its output above")
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcome = next(
            (kind for kind in ("failure", "error", "skipped") if kind in kinds), "passed"
        )
        outcomes[name] = outcome
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="keyword", help="pytest -k expression (a subset)")
    parser.add_argument("--files", nargs="*", help="shipped test files by name (default: all)")
    options = parser.parse_args()
    tests = djust_tests()
    if not tests.is_dir():
        print(f"the installed djust ships no tests ({tests})", file=sys.stderr)
        return 2
    targets = [str(tests / name) for name in options.files] if options.files else [str(tests)]
    with tempfile.TemporaryDirectory(prefix="djust-suite-") as folder:
        work = Path(folder)
        (work / "djust_suite_settings.py").write_text(SETTINGS)
        (work / "djust_suite_urls.py").write_text("urlpatterns = []\n")
        (work / "pytest.ini").write_text(PYTEST_INI)
        without = run("djust", work, targets, options.keyword)
        with_tenantry = run("tenantry", work, targets, options.keyword)
    if not without or not with_tenantry:
        print("a run collected no test: nothing to compare", file=sys.stderr)
        return 2
    differ = sorted(
        name
        for name in without.keys() | with_tenantry.keys()
        if without.get(name) != with_tenantry.get(name)
    )
    for label, outcomes in (("without tenantry", without), ("with tenantry", with_tenantry)):
        counts = {kind: 0 for kind in ("passed", "failure", "error", "skipped")}
        for outcome in outcomes.values():
            counts[outcome] += 1
        tally = ", ".join(f"{n} {k}" for k, n in counts.items())
        print(f"{label}: {len(outcomes)} tests, {tally}")
    if not differ:
        print("no test's outcome differs")
        return 0
    print(f"{len(differ)} tests differ (without → with tenantry):")
    for name in differ:
        print(f"  {name}: {without.get(name, 'absent')} → {with_tenantry.get(name, 'absent')}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
