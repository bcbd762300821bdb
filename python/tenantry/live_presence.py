"""Presence of live connections, delivered as diffs (the public path of
``tenantry.djust.live_presence``, where ``TenantPresenceMixin`` lives: see
that module's docstring and docs/presence.md)."""

from __future__ import annotations

from .djust.live_presence import DIFF_HANDLER, TenantPresenceMixin

__all__ = ["DIFF_HANDLER", "TenantPresenceMixin"]
