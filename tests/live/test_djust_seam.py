"""The one djust seam (docs/architecture.md#the-djust-seam): no module outside
``tenantry/djust/`` imports djust, the djust private names tenantry relies on
are listed once and checked against the installed djust at start-up
(``tenantry.W112``, docs/configuration.md) and by the upgrade
guard (``scripts/djust_compat.py --names``), and no import circle runs
through the seam or the responses."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from djust import runtime
from djust.auth import core as djust_auth
from djust.websocket import LiveViewConsumer

import tenantry
import tenantry.djust
from tenantry import checks as tenantry_checks
from tenantry.djust import names
from tenantry.djust.names import PRIVATE_NAMES, PrivateName

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "python" / "tenantry"
SCRIPTS = ROOT / "scripts"


# -- what imports what ---------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of the file at ``path`` (module level or inside a
    function): (absolute module, names imported from it)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names]))
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_djust(module: str) -> bool:
    return module == "djust" or module.startswith("djust.")


def test_no_module_outside_the_seam_imports_djust():
    """Every import of djust (at module level or in a function) is in
    tenantry/djust/: a djust upgrade is audited there only."""
    seam = PACKAGE / "djust"
    outside = [
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in _sources()
        if seam not in path.parents
        for module, _names in _imports(path)
        if _is_djust(module)
    ]
    assert outside == []
    inside = {
        reached
        for path in seam.rglob("*.py")
        for module, imported in _imports(path)
        if _is_djust(module)
        for reached in (module, *(f"{module}.{item}" for item in imported))
    }
    # The seam really is where djust is reached (the check above is not vacuous).
    assert {"djust.websocket", "djust.tenants.middleware._current_tenant", "djust.auth.core"} <= (
        inside
    )


def test_no_import_circle_runs_through_the_seam_or_the_responses():
    """No circle (counting function-local imports) reaches the djust seam,
    the live plane's modules, or middleware <-> ratelimit (their shared
    answers are tenantry.responses). The circles are found by the one
    checker, scripts/import_graph.py (docs/architecture.md#layers-of-the-python-package)."""
    imported_by = {
        name: {module for module, _ in _imports(PACKAGE / f"{name}.py")}
        for name in ("ratelimit", "middleware")
    }
    assert "tenantry.middleware" not in imported_by["ratelimit"]
    assert "tenantry.responses" in imported_by["ratelimit"]
    assert "tenantry.responses" in imported_by["middleware"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_graph.py"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(done.stdout)
    circles = [*report["cycles"], *report["hidden_circles"]]
    assert circles == [], circles


# -- the private names -----------------------------------------------------------------


def _w112(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.msg for m in messages if m.id == "tenantry.W112"]


def test_every_listed_name_is_in_the_installed_djust():
    """The djust this suite runs (the pinned one) has every name as listed:
    no tenantry.W112 at start-up."""
    assert names.problems() == []
    assert _w112(checks.run_checks(tags=["tenantry"])) == []


def test_a_name_djust_removed_is_a_warning_naming_it(monkeypatch):
    monkeypatch.delattr(LiveViewConsumer, "_reauth_legacy_server_turn")
    [warning] = _w112(checks.run_checks(tags=["tenantry"]))
    assert "djust.websocket.LiveViewConsumer._reauth_legacy_server_turn" in warning
    assert "tenantry.djust.live" in warning


def test_a_name_djust_changed_is_a_warning_naming_what_changed(monkeypatch):
    """A name still there but no longer what tenantry counts on: a set
    instead of a frozenset, a plain function instead of a coroutine."""
    monkeypatch.setattr(djust_auth, "_NON_ACCESS_MIXINS", set(djust_auth._NON_ACCESS_MIXINS))

    def check_auth(self, request):  # a sync _check_auth: the gate's await would fail
        return None

    monkeypatch.setattr(runtime.ViewRuntime, "_check_auth", check_auth)
    warnings = _w112(tenantry_checks.check_djust_private_names())
    assert len(warnings) == 2
    [container] = [w for w in warnings if "_NON_ACCESS_MIXINS" in w]
    assert "expects a frozenset, found set" in container
    assert "tenantry.djust.auth" in container
    [gate] = [w for w in warnings if "ViewRuntime._check_auth" in w]
    assert "expects a coroutine, found function" in gate


def test_a_name_djust_no_longer_uses_and_a_module_it_dropped_are_reported():
    """Names djust uses by string (hooks, attributes it sets) are looked for
    in the module's source; a module that is gone is named."""
    listed = (
        PrivateName("djust.runtime", "_tenantry_hook_djust_never_had", "source", "tenantry.x"),
        PrivateName("djust.runtime", "_ensure_tenant", "source", "tenantry.x"),
        PrivateName("djust.no_such_module", "thing", "function", "tenantry.y"),
        PrivateName("djust.runtime", "ViewRuntime.no_such_method", "coroutine", "tenantry.z"),
    )
    found = names.problems(listed)
    assert len(found) == 3
    assert "'_tenantry_hook_djust_never_had'" in found[0] and "tenantry.x" in found[0]
    assert "djust.no_such_module" in found[1] and "tenantry.y" in found[1]
    assert "djust.runtime.ViewRuntime.no_such_method" in found[2] and "tenantry.z" in found[2]


def test_the_list_names_what_the_seam_uses():
    """Each listed name is used by the seam module the list says, and every
    seam module that reaches djust is on the list: the list and the code
    move together."""
    seam = PACKAGE / "djust"
    for name in PRIVATE_NAMES:
        # The seam; or the mixin whose hook methods djust calls by name, and
        # the group names that keep djust's db_notify prefix (a string).
        assert name.used_by.startswith("tenantry.djust.") or name.used_by in {
            "tenantry.mixins",
            "tenantry.groups",
        }
        path = PACKAGE.parent.joinpath(*name.used_by.split(".")).with_suffix(".py")
        assert name.attribute.rsplit(".", 1)[-1] in path.read_text(encoding="utf-8"), name
    users = {name.used_by for name in PRIVATE_NAMES}
    reaching = {
        _module_name(path)
        for path in seam.glob("*.py")
        if any(_is_djust(module) for module, _ in _imports(path))
    }
    # live_presence subclasses djust's public PresenceMixin and event_handler
    # only; shared_rooms uses event_handler only.
    public_only = {"tenantry.djust.live_presence", "tenantry.djust.shared_rooms"}
    assert reaching - public_only <= users


def test_the_upgrade_guard_checks_the_same_list():
    """scripts/djust_compat.py --names reports every listed name (the same
    list as tenantry.W112) and succeeds on the pinned djust."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(  # as run by hand: no project settings
        [sys.executable, str(SCRIPTS / "djust_compat.py"), "--names", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["problems"] == []
    assert [(n["module"], n["attribute"]) for n in report["names"]] == [
        (n.module, n.attribute) for n in PRIVATE_NAMES
    ]


def test_the_upgrade_guard_fails_on_a_changed_djust(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import djust_compat

    monkeypatch.delattr(runtime.SSESessionTransport, "send")
    assert djust_compat.check_names() == 1
    out = capsys.readouterr().out
    assert "djust.runtime.SSESessionTransport.send" in out
    assert f"{len(PRIVATE_NAMES) - 1}/{len(PRIVATE_NAMES)} names" in out


# -- install() and the public paths -------------------------------------------------


def test_install_runs_once_declares_the_mixins_and_wraps_nothing_twice():
    from djust import websocket_utils

    from tenantry.mixins import TenantMixin, TenantScopedMixin

    gate = websocket_utils._validate_event_security
    assert tenantry.djust.install() is True  # again: ready() ran it first
    assert websocket_utils._validate_event_security is gate
    assert not getattr(gate.__wrapped__, "_tenantry_live_gate", False)
    for cls in (TenantMixin, TenantScopedMixin):
        assert (cls.__module__, cls.__name__) in djust_auth._NON_ACCESS_MIXINS
    # Told so, djust's V013 ("dispatch() access control live transports
    # skip") does not warn about tenant views.
    assert [m for m in checks.run_checks() if m.id == "djust.V013"] == []


def test_the_top_level_api_exports_no_install_plumbing():
    from tenantry import presence, state

    for name in ("install_djust_presence_backend", "install_djust_state_backend"):
        assert name not in tenantry.__all__
        with pytest.raises(AttributeError):
            getattr(tenantry, name)
    assert tenantry.djust.install_djust_presence_backend is presence.install_djust_presence_backend
    assert tenantry.djust.install_djust_state_backend is state.install_djust_state_backend
    assert presence.uninstall_djust_presence_backend is (
        tenantry.djust.uninstall_djust_presence_backend
    )


def test_the_documented_paths_still_work():
    from tenantry import (
        channels,
        djust_state,
        live,
        live_presence,
        middleware,
        ratelimit,
        responses,
    )
    from tenantry.djust import broadcasts
    from tenantry.djust import live as seam_live
    from tenantry.djust import live_presence as seam_presence
    from tenantry.djust import state as seam_state

    assert live.FRAME_SCOPES is seam_live.FRAME_SCOPES
    assert live.install is seam_live.install and live.problems is seam_live.problems
    assert live_presence.TenantPresenceMixin is seam_presence.TenantPresenceMixin
    assert tenantry.TenantPresenceMixin is seam_presence.TenantPresenceMixin
    assert djust_state.TenantDjustStateBackend is seam_state.TenantDjustStateBackend
    for name in (
        "install_djust_broadcasts",
        "uninstall_djust_broadcasts",
        "move_live_view",
        "scoped_presence_group_name",
        "djust_group_problems",
    ):
        assert getattr(channels, name) is getattr(broadcasts, name)
    assert callable(channels.TenantOriginValidator) and callable(channels.tenant_group)
    assert middleware.unavailable is responses.unavailable
    assert middleware.RETRY_AFTER == responses.RETRY_AFTER == 5
    assert ratelimit.too_many_requests is responses.too_many_requests
