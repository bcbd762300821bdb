"""Presence of live connections, delivered as diffs (the public path of
``tenantry.djust.live_presence``, where ``TenantPresenceMixin`` lives: see
that module's docstring and docs/presence.md; and of
``tenantry.djust.shared_rooms``: ``SharedRoomMixin``, the live room of a
granted row, docs/collaboration.md#live-rooms)."""

from __future__ import annotations

from .djust.live_presence import DIFF_HANDLER, TenantPresenceMixin
from .djust.shared_rooms import SharedRoomMixin

__all__ = ["DIFF_HANDLER", "SharedRoomMixin", "TenantPresenceMixin"]
