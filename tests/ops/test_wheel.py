"""scripts/wheel.sh (docs/testing.md): the abi3 manylinux wheel installs into a fresh
venv with plain pip (binaries only, no Rust on PATH) and works there: the
extension imports, and Django configured in-process resolves a tenant."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import django
import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[2]

SMOKE = """
import django
from django.conf import settings

settings.configure(
    ALLOWED_HOSTS=[".example.com"],
    INSTALLED_APPS=["tenantry"],
    DJUST_CONFIG={"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com"},
)
django.setup()
from django.test import RequestFactory

import tenantry
from tenantry import _core, resolve_tenant

print(_core.__file__)
print(resolve_tenant(RequestFactory().get("/", HTTP_HOST="acme.example.com")).id)
print(resolve_tenant(RequestFactory().get("/", HTTP_HOST="www.example.com")))
"""


def test_wheel_installs_and_runs_where_no_rust_exists(tmp_path):
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "wheel.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert built.returncode == 0, built.stderr
    wheels = sorted((ROOT / "dist").glob("tenantry-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert "-cp310-abi3-manylinux_" in wheel.name, wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        declared = archive.read(entry_points).decode().replace(" ", "")
        assert "[pytest11]\ntenantry.testing=tenantry.testing" in declared
    assert "tenantry/_core.abi3.so" in names and "tenantry/testing.py" in names
    assert not any(n.endswith((".rs", "Cargo.toml")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # No Rust here: only the venv and the system's own directories on PATH.
    path = os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"])
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    env = {"PATH": path, "HOME": os.environ.get("HOME", str(tmp_path))}
    for key in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_INDEX_URL", "PIP_CACHE_DIR", "SSL_CERT_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    installed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--only-binary",
            ":all:",  # nothing may be built from source
            str(wheel),
            f"Django=={django.__version__}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    smoke = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SMOKE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert smoke.returncode == 0, smoke.stderr
    core_file, found, www = smoke.stdout.split()
    assert core_file.startswith(str(venv)), core_file  # the wheel's extension, not a checkout's
    assert (found, www) == ("acme", "None")
