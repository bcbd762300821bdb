"""The two builds of the extension (docs/performance.md#the-demos-first-start):
the test command runs on the full build, every optional Cargo feature in; the
demo's light build (scripts/demo.sh, without the Redis TLS and Cluster
clients) serves the demo, and refuses a Redis URL it cannot connect to with a
message naming the missing feature instead of failing at the first call."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from tenantry import _core
from tests.demo_server import demo_server
from tests.soak import http_get, live_view, receive_until

ROOT = Path(__file__).resolve().parents[2]

#: The Cargo features every build but the demo's has.
OPTIONAL = {"redis-tls", "redis-cluster"}


def cargo_features() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["features"]


def build_args(kind: str) -> list[str]:
    """maturin's arguments for a build, from scripts/env.sh (the one place)."""
    printed = subprocess.run(
        ["bash", "-c", f'source "{ROOT}/scripts/env.sh"; extension_build_args {kind}'],
        capture_output=True,
        text=True,
        check=True,
    )
    return printed.stdout.split()


def test_the_test_suite_runs_on_the_full_build():
    # Fails when scripts/test.sh (or anyone) runs the suite on the demo's build.
    features = cargo_features()
    assert set(features["default"]) == OPTIONAL
    assert set(features) == {"default", "python", *OPTIONAL}, (
        "a new optional feature belongs in the default (full) build and in OPTIONAL here"
    )
    assert sorted(_core.BUILD_FEATURES) == sorted(OPTIONAL)
    assert build_args("full") == ["--profile", "release"]
    assert "--no-default-features" in build_args("demo")


@pytest.fixture(scope="module")
def light_build(tmp_path_factory) -> Path:
    """A directory to put first on PYTHONPATH: the package's Python sources
    with the extension built as scripts/demo.sh builds it (a wheel, so the
    test build in python/tenantry/ is left alone)."""
    out = tmp_path_factory.mktemp("demo-build")
    built = subprocess.run(
        [
            str(Path(sys.executable).parent / "maturin"),
            "build",
            *build_args("demo"),
            "--quiet",
            "--interpreter",
            sys.executable,
            "--out",
            str(out / "dist"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (out / "dist").glob("tenantry-*.whl")
    overlay = out / "site"
    shutil.copytree(
        ROOT / "python" / "tenantry",
        overlay / "tenantry",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [
            n for n in archive.namelist() if n.startswith("tenantry/_core.") and n.endswith(".so")
        ]
        (overlay / name).write_bytes(archive.read(name))
    return overlay


def run_light(overlay: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(overlay), **env}
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300
    )


def test_the_light_build_is_the_demo_build(light_build):
    shown = run_light(
        light_build, "from tenantry import _core; print(_core.__file__, _core.BUILD_FEATURES)"
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [str(light_build / "tenantry" / "_core.abi3.so"), "[]"]


CHECK = """
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["tenantry"],
    DJUST_CONFIG={
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "STATE_BACKEND": "tenant_redis",
        "PRESENCE_BACKEND": "tenant_redis",
        "REDIS_URL": %r,
    },
)
django.setup()
from django.core import checks
for message in checks.run_checks():
    print(message.id, message.msg)
"""


@pytest.mark.parametrize(
    ("url", "needs"),
    [
        ("rediss://:hunter2@redis.example.com:6380/0", "TLS support"),
        ("redis+cluster://:hunter2@a.example.com:7000,b.example.com:7001", "Cluster support"),
        ("rediss+cluster://a.example.com:7000", "TLS and Redis Cluster support"),
    ],
)
def test_the_light_build_refuses_a_redis_url_it_cannot_connect_to(light_build, url, needs):
    # manage.py check: an error naming the key, what is missing and the fix.
    checked = run_light(light_build, CHECK % url)
    assert checked.returncode == 0, checked.stderr
    errors = [line for line in checked.stdout.splitlines() if "REDIS_URL" in line]
    assert errors, checked.stdout
    for line in errors:
        assert needs in line and "this build of tenantry leaves out" in line, line
        assert "maturin develop --release" in line and "hunter2" not in line, line
    # Making a backend directly: the same refusal, as the configuration error.
    made = run_light(
        light_build,
        "from tenantry import TenantStateRedisBackend\n"
        f"TenantStateRedisBackend('acme', redis_url={url!r})",
    )
    assert made.returncode != 0
    assert needs in made.stderr and "this build of tenantry leaves out" in made.stderr
    assert "hunter2" not in made.stderr
    # The full build (this process) takes the same URL without connecting.
    from tenantry import TenantStateRedisBackend

    TenantStateRedisBackend("acme", redis_url=url)


def test_the_light_build_serves_the_demo(light_build, tmp_path):
    # The demo as scripts/demo.sh runs it, on the light build: both tenants'
    # pages, and a live event through presence and view state in memory.
    with demo_server(tmp_path, env={"PYTHONPATH": str(light_build)}) as port:

        async def visit() -> None:
            for tenant in ("acme", "globex"):
                status, body = await http_get(port, f"{tenant}.localhost:{port}", "/board/")
                assert status == 200, body[:500]
                assert tenant in body.lower()
            async with live_view(port, "acme") as (socket, frame):
                assert frame["type"] == "mount", frame
                await socket.send(
                    json.dumps(
                        {
                            "type": "event",
                            "event": "add_item",
                            "params": {"name": "light-build-item"},
                            "ref": 1,
                        }
                    )
                )
                update = await receive_until(socket, "patch", "html_update", "noop", "error")
                assert update["type"] != "error", update
                assert "light-build-item" in json.dumps(update)

        asyncio.run(visit())
    served = (tmp_path / "daphne.log").read_text()
    assert "Traceback" not in served, served
