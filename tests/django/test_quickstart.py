"""docs/quickstart.md, run as written: its marked blocks are
assembled into a project in a temporary folder, its commands are run there
(``django-admin startproject``, ``makemigrations``, ``migrate``, ``tenantry
create``), and the project is driven over HTTP (Django's test client) and
WebSocket (channels' WebsocketCommunicator, through tenantry.testing's
LiveView) in a process of its own. A page that drifts from the code fails."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import tenantry

PAGE = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
BLOCK = re.compile(
    r"^<!-- quickstart-(?:file: (?P<path>\S+)|(?P<run>run)) -->\n```[a-z]*\n(?P<body>.*?)^```",
    flags=re.DOTALL | re.MULTILINE,
)

DRIVER = r'''
import asyncio, json, django
django.setup()
from django.test import Client
from board.models import Item
from tenantry import tenant_context
from tenantry.testing import LiveView

out = {}
from io import StringIO
from django.core.management import call_command
checked = StringIO()
call_command("check", stdout=checked, stderr=checked)
out["check"] = checked.getvalue()
http = Client()
with tenant_context("globex"):
    Item.objects.create(name="globe")
acme = http.get("/board/", HTTP_HOST="acme.localhost:8000")
out["acme"] = [acme.status_code, acme.content.decode()]
out["nobody"] = http.get("/board/", HTTP_HOST="nobody.localhost").status_code
landing = http.get("/", HTTP_HOST="localhost")
out["landing"] = [landing.status_code, landing.content.decode()]
out["admin"] = http.get("/admin/login/", HTTP_HOST="localhost").status_code
out["static"] = http.get("/static/djust/client.js", HTTP_HOST="acme.localhost").status_code


async def live():
    view = await LiveView("acme", "board.views.BoardView", "/board/").mount()
    out["ws_mount"] = view.html
    frame = await view.send_event("add_item", name="rocket")
    out["ws_event"] = [frame["type"], view.html]
    await view.close()
    # a page of globex may not open acme's live views
    from channels.testing import WebsocketCommunicator
    from mysite.asgi import application
    cross = WebsocketCommunicator(application, "/ws/live/", headers=[
        (b"host", b"acme.localhost"), (b"origin", b"http://globex.localhost")])
    out["ws_cross_origin"] = (await cross.connect())[0]


asyncio.run(live())
with tenant_context("acme"):
    out["acme_items"] = sorted(Item.objects.values_list("name", flat=True))
globex = http.get("/board/", HTTP_HOST="globex.localhost")
out["globex"] = [globex.status_code, globex.content.decode()]
print(json.dumps(out))
'''


def blocks() -> list[tuple[str | None, str]]:
    """``(path or None for commands, body)`` of every marked block, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return [(m["path"], m["body"]) for m in BLOCK.finditer(text)]


def run(argv: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_quickstart_runs_as_written(tmp_path):
    found = blocks()
    files = [path for path, _ in found if path]
    assert files == [
        "mysite/settings.py",
        "board/models.py",
        "board/views.py",
        "board/templates/board/board.html",
        "mysite/urls.py",
        "mysite/asgi.py",
    ]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(tenantry.__file__).parent.parent), str(tmp_path)])
    commands = []
    for path, body in found:
        if path:
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
            continue
        for line in body.splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:3] == ["python", "manage.py", "runserver"]:
                continue  # the page's last step: we drive the project instead
            commands.append(line)
            if argv[0] == "django-admin":
                argv = [sys.executable, "-m", "django", *argv[1:]]
            else:
                assert argv[0] == "python", line
                argv = [sys.executable, *argv[1:]]
            run(argv, tmp_path, env)
    assert commands[-1] == 'python manage.py tenantry create globex --name "Globex"'

    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    (tmp_path / "drive.py").write_text(DRIVER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "drive.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])

    # manage.py check: nothing from tenantry (e.g. no W010: the WebSocket route is
    # wrapped); djust's advice on admin brute-force protection may remain.
    assert "(tenantry." not in out["check"] and "(djust.Y" not in out["check"], out["check"]
    status, html = out["acme"]
    assert status == 200 and '<h1 id="tenant-name">Acme Corp</h1>' in html
    assert "globe" not in html and "djust" in html  # djust's client script is on the page
    assert out["nobody"] == 404  # no registry row
    assert out["landing"][0] == 200 and "Welcome" in out["landing"][1]
    assert out["admin"] == 200  # exempt on the main domain
    assert out["static"] == 200
    assert ">Acme Corp</h1>" in out["ws_mount"]
    frame_type, html = out["ws_event"]
    assert frame_type == "patch" and ">rocket</li>" in html and "globe" not in html
    assert out["ws_cross_origin"] is False
    assert out["acme_items"] == ["rocket"]
    status, html = out["globex"]
    assert status == 200 and "<li>globe</li>" in html and "rocket" not in html
