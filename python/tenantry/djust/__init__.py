"""The one seam between tenantry and djust.

Every import of djust, every djust attribute tenantry replaces or wraps, and
every djust private name it reads lives in this package (inside it,
``import djust`` is the top-level djust):

* :mod:`.context` — the tenant variable tenantry shares with djust;
* :mod:`.live` — the live plane's gates inside djust's consumer and runtime;
* :mod:`.broadcasts` — djust's channels groups, scoped by tenant;
* :mod:`.presence`, :mod:`.state` — tenantry as djust's presence and state
  backend;
* :mod:`.live_presence` — ``TenantPresenceMixin`` (djust's ``PresenceMixin``
  by connections and diffs);
* :mod:`.view_hooks` — the hooks and markers djust reads on ``TenantMixin``;
* :mod:`.auth` — what djust's checks are told about tenantry's mixins;
* :mod:`.names` — the list of djust private names all of the above rely on,
  checked against the installed djust (``tenantry.W112``,
  ``scripts/djust_compat.py --names``);
* :mod:`.installation` — :func:`install`, called once by the app's
  ``ready()``.

The public modules (``tenantry.live``, ``tenantry.live_presence``,
``tenantry.channels``, ``tenantry.djust_state``, ``tenantry.presence``,
``tenantry.state``) re-export what the docs show. The names below are
loaded on first use, so ``tenantry.context`` can take djust's variable from
:mod:`.context` without loading the rest. See docs/architecture.md#the-djust-seam.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "install": ".installation",
    "PRIVATE_NAMES": ".names",
    "PrivateName": ".names",
    "problems": ".names",
    "install_djust_broadcasts": ".broadcasts",
    "uninstall_djust_broadcasts": ".broadcasts",
    "install_djust_presence_backend": "tenantry.presence",
    "uninstall_djust_presence_backend": "tenantry.presence",
    "install_djust_state_backend": "tenantry.state",
    "uninstall_djust_state_backend": "tenantry.state",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tenantry.djust' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
