"""``install()``: every djust touchpoint, put in place once (called by the
app's ``ready()``; safe to call again)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from ..mixins import TenantMixin, TenantScopedMixin
from ..presence import install_djust_presence_backend
from ..state import install_djust_state_backend
from . import live
from .auth import declare_non_access_mixins
from .broadcasts import install_djust_broadcasts

__all__ = ["install"]


def install() -> bool:
    """Put tenantry into djust: the live plane's gates (``tenantry.djust.live``),
    tenantry as djust's presence and state backends (as ``PRESENCE_BACKEND``
    and ``STATE_BACKEND`` ask), djust's channels groups scoped by tenant
    (``tenantry.djust.broadcasts``), and tenantry's mixins declared to
    djust's auth checks (``tenantry.djust.auth``). Returns whether djust is
    installed. What the installed djust no longer has of the private names
    this relies on is reported by ``manage.py check`` (``tenantry.W112``)."""
    installed = live.install()
    for install_backend in (install_djust_presence_backend, install_djust_state_backend):
        try:
            install_backend()
        except ImproperlyConfigured:
            pass  # reported by the system checks (manage.py check), with its key
    install_djust_broadcasts()
    declare_non_access_mixins(TenantMixin, TenantScopedMixin)
    return installed
