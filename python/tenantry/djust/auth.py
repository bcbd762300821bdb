"""What djust's auth checks are told about tenantry's mixins.

djust's check V013 warns about a LiveView whose ``dispatch()`` holds access
control that live transports skip. ``TenantMixin.dispatch()`` holds none:
djust replays the tenant's resolution and admission through
``_ensure_tenant()`` on every live mount. djust keeps the list of such
mixins built outside djust (``djust.auth.core._NON_ACCESS_MIXINS``, pairs of
module and class name); :func:`declare_non_access_mixins` adds tenantry's.
"""

from __future__ import annotations

try:
    from djust.auth import core
except ImportError:  # djust not installed (names.problems() reports a missing module)
    core = None

__all__ = ["declare_non_access_mixins"]


def declare_non_access_mixins(*classes: type) -> bool:
    """Add ``classes`` to djust's ``_NON_ACCESS_MIXINS``. Returns whether
    djust has the list (as a ``frozenset``); safe to call again."""
    known = getattr(core, "_NON_ACCESS_MIXINS", None)
    if not isinstance(known, frozenset):
        return False
    core._NON_ACCESS_MIXINS = known | {(cls.__module__, cls.__name__) for cls in classes}
    return True
