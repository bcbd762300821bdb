"""tenantry as djust's state backend (the public path of
``tenantry.djust.state``, where it lives: see docs/state.md)."""

from __future__ import annotations

from .djust.state import TenantDjustStateBackend

__all__ = ["TenantDjustStateBackend"]
