"""Drives the demo project (examples/demo) with Django's test client in a
process of its own (the demo has its own settings): each tenant's logo
through tenantry.storage, its admin through TenantAdminMixin, and its log
lines through TenantFilter. Run once per test session; the tests of
test_storage.py, test_admin.py and test_logging.py read the results."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"

SCRIPT = r'''
import json
import django

django.setup()

from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

call_command("migrate", verbosity=0)
call_command("seed_demo")
results = {}

def client(host, user=None):
    c = Client(HTTP_HOST=host)
    if user is not None:
        c.force_login(user)
    return c

acme, globex = client("acme.localhost"), client("globex.localhost")
results["board_before"] = 'id="logo"' in acme.get("/board/").content.decode()
results["upload_acme"] = acme.post(
    "/logo/", {"logo": SimpleUploadedFile("a.png", b"acme-png", "image/png")}
).status_code
results["upload_globex"] = globex.post(
    "/logo/", {"logo": SimpleUploadedFile("g.gif", b"globex-gif", "image/gif")}
).status_code
results["upload_svg"] = "Choose a PNG" in acme.post(
    "/logo/", {"logo": SimpleUploadedFile("x.svg", b"<svg/>", "image/svg+xml")}
).content.decode()
for name, c in (("acme", acme), ("globex", globex)):
    response = c.get("/logo/file/")
    body = b"".join(response.streaming_content).decode()
    results[f"logo_{name}"] = [response.status_code, body, response["Content-Type"]]
results["board_after"] = 'id="logo"' in acme.get("/board/").content.decode()

staff = User.objects.create_user("acme_staff", password="x", is_staff=True)
staff.user_permissions.set(Permission.objects.filter(content_type__app_label="board"))
page = client("acme.localhost", staff).get("/admin/board/item/").content.decode()
results["admin_acme_rows"] = ["Anvil" in page, "Hammock" in page]
results["admin_forged"] = client("acme.localhost", staff).post(
    "/admin/board/item/add/", {"name": "forged", "tenant_id": "globex"}
).status_code
root = User.objects.create_superuser("root", password="x")
page = client("localhost", root).get("/admin/board/item/").content.decode()
results["admin_cross_tenant_rows"] = ["Anvil" in page, "Hammock" in page]
response = client("localhost", root).get("/admin/board/item/add/")
results["admin_cross_tenant_add"] = response.status_code
print("RESULTS " + json.dumps(results))
'''


@functools.lru_cache(maxsize=1)
def demo_results() -> tuple[dict, str, Path]:
    """(results, the demo's log output, its media folder)."""
    workdir = Path(tempfile.mkdtemp(prefix="tenantry-demo-pieces-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DEMO_DB": str(workdir / "db.sqlite3"),
        "DEMO_MEDIA": str(workdir / "media"),
        "PYTHONPATH": os.pathsep.join([str(DEMO), *sys.path]),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=DEMO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULTS "))
    return json.loads(line[len("RESULTS ") :]), done.stderr, workdir / "media"
