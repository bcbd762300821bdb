"""The live plane's gates inside djust (the public path of
``tenantry.djust.live``, where they live: see that module's docstring and
docs/security.md#the-live-plane-sockets-events-and-jobs)."""

from __future__ import annotations

from .djust.live import (
    FRAME_SCOPES,
    READMIT_CLOSE_CODE,
    UNCLASSIFIED_SCOPE,
    UPLOAD_CHUNK,
    consumer_handlers,
    frame_dispatch,
    install,
    problems,
    still_admitted,
)

__all__ = [
    "FRAME_SCOPES",
    "READMIT_CLOSE_CODE",
    "UNCLASSIFIED_SCOPE",
    "UPLOAD_CHUNK",
    "consumer_handlers",
    "frame_dispatch",
    "install",
    "problems",
    "still_admitted",
]
