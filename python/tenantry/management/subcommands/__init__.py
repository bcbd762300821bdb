"""The subcommands of ``manage.py tenantry``, one module each.

Every module has ``NAME``,
``add_arguments(subparsers)`` (adds its parser) and
``handle(command, options)`` (``command`` is the running ``BaseCommand``,
for ``stdout``/``stderr``). The command
(``tenantry.management.commands.tenantry``) only builds the parsers and
dispatches; what several subcommands share is in :mod:`._common`.
"""

from __future__ import annotations

import importlib

from . import (
    adopt,
    audit,
    check,
    create,
    deactivate,
    delete,
    domain,
    export,
    migrate,
    move,
    resume,
    rls,
    suspend,
    usage,
)
from . import list as list_

#: ``import`` is a keyword: its module is loaded by name.
import_ = importlib.import_module(".import", __name__)

#: In the order ``manage.py tenantry --help`` lists them.
SUBCOMMANDS = (
    list_,
    create,
    delete,
    deactivate,
    suspend,
    resume,
    adopt,
    domain,
    check,
    rls,
    usage,
    audit,
    export,
    import_,
    migrate,
    move,
)

__all__ = ["SUBCOMMANDS"]
