"""Signals of a tenant's life (docs/operations.md#signals).

Each is sent with ``sender`` the module or model that caused it and the
keyword argument ``tenant_id`` (a str):

- ``tenant_created``: a row of ``TENANT_MODEL`` was inserted (``save()``,
  ``create()``, ``bulk_create()``, the admin, ``manage.py tenantry create``),
  sent once the INSERT went through, inside its transaction;
- ``tenant_deleted``: a tenant was deleted (``tenantry.lifecycle.delete_tenant``,
  ``manage.py tenantry delete``, or its registry row deleted through the
  ORM), sent once its rows, files and keys are gone; also ``incarnation``;
- ``tenant_suspended`` / ``tenant_resumed``: ``tenantry.suspension.suspend``
  / ``resume`` (and their commands); ``tenant_suspended`` also has
  ``reason``;
- ``tenant_imported``: ``manage.py tenantry import`` restored an archive
  into the tenant;
- ``tenant_moved``: ``manage.py tenantry move`` put the tenant on another
  database (``source``, ``target``, ``rows``), sent after the switch committed.

Receivers run in the sender's thread; an exception in one propagates (as
Django's ``post_save`` does): use ``send_robust`` semantics in the receiver
itself if it must never fail the operation.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "tenant_created",
    "tenant_deleted",
    "tenant_imported",
    "tenant_moved",
    "tenant_resumed",
    "tenant_suspended",
]

tenant_created = Signal()
tenant_deleted = Signal()
tenant_suspended = Signal()
tenant_resumed = Signal()
tenant_imported = Signal()
#: ``manage.py tenantry move`` put a tenant on another database: ``tenant_id``,
#: ``source`` and ``target`` (aliases), ``rows`` (``{label: count}``).
tenant_moved = Signal()
