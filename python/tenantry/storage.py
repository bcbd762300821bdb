"""File storage that keeps each tenant's files under ``tenants/<id>/``.

    STORAGES = {
        "default": {"BACKEND": "tenantry.storage.TenantFileSystemStorage"},
        ...
    }

    class Logo(models.Model):
        tenant_id = models.CharField(max_length=128)
        image = models.FileField(upload_to="logos/")   # default storage

Names are relative to the bound tenant's folder: ``storage.save("logos/a.png",
f)`` writes ``<location>/tenants/acme/logos/a.png`` while acme is bound and
returns ``"logos/a.png"``, which is what a ``FileField`` stores. Every method
that takes a name (``open``, ``save``, ``delete``, ``exists``, ``listdir``,
``size``, ``url``, ``path``, the ``get_*_time`` methods and
``get_available_name``) maps it into the folder of the tenant bound *now*;
with no tenant bound they raise ``TenantNotSetError``. A name that would leave
the folder (``..``, an absolute or drive path, a backslash, a control
character, a percent-encoded or Unicode look-alike dot or slash) raises
Django's ``SuspiciousFileOperation`` (a 400 in a view), and on the file system
so does any path whose real location, symlinks resolved, is outside the folder.

``TenantStorageMixin`` gives any storage class the same behaviour (mix it in
first): ``class TenantS3Storage(TenantStorageMixin, S3Storage): ...``.

Deleting a tenant (``tenantry.lifecycle``) removes its folder from every
storage :func:`tenant_storages` finds: every instance of a class that mixes
this one in that the process built — ``STORAGES`` entries, ``FileField``
storages, and storages built in code (``logos = TenantFileSystemStorage()``)
— after loading the URLconf, so storages built when views are imported
exist in a command or a worker too.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import unicodedata
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, InMemoryStorage, storages
from django.db.models import FileField
from django.urls import get_resolver
from django.utils.module_loading import import_string

from ._core import TenantInfo, TenantNotSetError
from .context import get_current_tenant

__all__ = ["TenantFileSystemStorage", "TenantStorageMixin", "forget_storages", "tenant_storages"]

#: The storage instance whose public method is running: the calls it makes to
#: its own methods (``save`` → ``get_available_name`` → ``exists``) already
#: carry the tenant's folder and must not get it twice.
_inside: ContextVar[Any] = ContextVar("tenantry_storage_inside", default=None)

# Percent-encoded ".", "/", "\" and "%" (double encoding), any case.
_ENCODED = re.compile(r"%(2e|2f|5c|25)", re.IGNORECASE)


def _refuse(name: Any, tenant: TenantInfo, why: str) -> SuspiciousFileOperation:
    return SuspiciousFileOperation(
        f"file name {name!r} for tenant {tenant.id!r} is refused: {why}; names are relative "
        "to the tenant's folder and may not leave it"
    )


def check_name(name: Any, tenant: TenantInfo) -> str:
    """``name`` as a relative path inside the tenant's folder ("" for the
    folder itself), or ``SuspiciousFileOperation``."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise _refuse(name, tenant, f"it is a {type(name).__name__}, not a str")
    for candidate in {name, unicodedata.normalize("NFKC", name)}:
        if any(ord(c) < 32 or ord(c) == 127 for c in candidate):
            raise _refuse(name, tenant, "it contains a control character")
        if "\\" in candidate:
            raise _refuse(name, tenant, "it contains a backslash")
        if _ENCODED.search(candidate):
            raise _refuse(name, tenant, "it contains a percent-encoded '.', '/' or '\\'")
        if candidate.startswith("/") or re.match(r"[A-Za-z]:", candidate):
            raise _refuse(name, tenant, "it is an absolute path")
        if ".." in candidate.split("/"):
            raise _refuse(name, tenant, "it contains a '..' segment")
    return "/".join(part for part in name.split("/") if part not in ("", "."))


class TenantStorageMixin:
    """Mix into any Django storage class (first in the bases): every name is
    relative to ``tenants/<id>/`` of the bound tenant (see the module docs)."""

    #: The folder (relative to the storage's root) that holds one folder per tenant.
    tenant_directory = "tenants"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Some storages call their own methods while they are built (the
        # in-memory one resolves its root): that is not a tenant's access.
        token = _inside.set(self)
        try:
            super().__init__(*args, **kwargs)
        finally:
            _inside.reset(token)
        _built(self, args, kwargs)

    def tenant_files_key(self) -> Any:
        """Where this storage keeps its files: two storages with the same
        key hold the same files, and a tenant's deletion visits one of them.
        By default the class and the arguments it was built with; the file
        system's is its real location; an in-memory storage's is itself."""
        if isinstance(self, InMemoryStorage):
            return id(self)
        return (type(self), self._tenantry_arguments)

    def bound_tenant(self) -> TenantInfo:
        """The bound tenant; ``TenantNotSetError`` when none."""
        tenant = get_current_tenant()
        if tenant is None:
            raise TenantNotSetError(
                f"{type(self).__name__} keeps files per tenant and no tenant is bound: use "
                "TenantMiddleware, a TenantMixin view or tenant_context(...)"
            )
        return tenant

    def tenant_root(self) -> str:
        """``tenants/<id>/`` of the bound tenant; ``TenantNotSetError`` when none."""
        return f"{self.tenant_directory}/{self.bound_tenant().id}/"

    def _in_tenant(self, method: str, name: Any, args: Any, kwargs: Any, *, named: bool) -> Any:
        call: Callable[..., Any] = getattr(super(), method)
        if _inside.get() is self:  # our own nested call: the name is already scoped
            return call(name, *args, **kwargs)
        tenant = self.bound_tenant()
        root = self.tenant_root()
        full = root + check_name(name, tenant)
        token = _inside.set(self)
        try:
            result = call(full, *args, **kwargs)
        finally:
            _inside.reset(token)
        if not named:
            return result
        if not isinstance(result, str) or not result.startswith(root):
            raise _refuse(result, tenant, f"the storage answered a name outside {root!r}")
        return result[len(root) :]

    def open(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._in_tenant("open", name, args, kwargs, named=False)

    def save(self, name: str | None, content: Any, *args: Any, **kwargs: Any) -> str:
        if name is None:  # Django's rule: the content's own name
            name = content.name
        return self._in_tenant("save", name, (content, *args), kwargs, named=True)

    def get_available_name(self, name: str, *args: Any, **kwargs: Any) -> str:
        return self._in_tenant("get_available_name", name, args, kwargs, named=True)

    def delete(self, name: str) -> None:
        return self._in_tenant("delete", name, (), {}, named=False)

    def exists(self, name: str) -> bool:
        return self._in_tenant("exists", name, (), {}, named=False)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        try:
            return self._in_tenant("listdir", path, (), {}, named=False)
        except FileNotFoundError:
            if _inside.get() is not self and check_name(path, self.bound_tenant()) == "":
                return [], []  # the tenant's folder, before its first file
            raise

    def size(self, name: str) -> int:
        return self._in_tenant("size", name, (), {}, named=False)

    def url(self, name: str, *args: Any, **kwargs: Any) -> str:
        return self._in_tenant("url", name, args, kwargs, named=False)

    def path(self, name: str) -> str:
        return self._in_tenant("path", name, (), {}, named=False)

    def get_accessed_time(self, name: str) -> Any:
        return self._in_tenant("get_accessed_time", name, (), {}, named=False)

    def get_created_time(self, name: str) -> Any:
        return self._in_tenant("get_created_time", name, (), {}, named=False)

    def get_modified_time(self, name: str) -> Any:
        return self._in_tenant("get_modified_time", name, (), {}, named=False)

    # -- the whole folder (tenantry.lifecycle) ----------------------------------

    def tenant_files(self) -> Iterator[str]:
        """Every file of the bound tenant, as names relative to its folder."""
        pending = [""]
        while pending:
            folder = pending.pop()
            try:
                dirs, files = self.listdir(folder)
            except FileNotFoundError:
                continue
            prefix = f"{folder}/" if folder else ""
            yield from (prefix + name for name in files)
            pending.extend(prefix + name for name in dirs)

    def delete_tenant_files(self, *, dry_run: bool = False) -> int:
        """Delete every file of the bound tenant (count them with
        ``dry_run``); returns how many."""
        names = list(self.tenant_files())
        if not dry_run:
            for name in names:
                self.delete(name)
        return len(names)


class TenantFileSystemStorage(TenantStorageMixin, FileSystemStorage):
    """``FileSystemStorage`` with one folder per tenant under ``<location>/tenants/``;
    a path whose real location (symlinks resolved) leaves the tenant's folder
    is refused."""

    def tenant_files_key(self) -> Any:
        return ("file system", os.path.realpath(self.location))

    def delete_tenant_files(self, *, dry_run: bool = False) -> int:
        """The folder goes whole (empty folders and files the storage API
        would not list included); returns how many files it held."""
        folder = self.path("")
        if not os.path.isdir(folder) or os.path.islink(folder):
            return 0
        count = sum(len(files) for _, _, files in os.walk(folder))
        if not dry_run:
            shutil.rmtree(folder)
        return count

    def path(self, name: str) -> str:
        # Every file system operation of FileSystemStorage goes through path().
        full = super().path(name)
        tenant = self.bound_tenant()
        folder = os.path.join(
            os.path.realpath(os.path.join(self.location, self.tenant_directory)), tenant.id
        )
        real = os.path.realpath(full)
        if real != folder and not real.startswith(folder + os.sep):
            raise _refuse(name, tenant, "its real location (symlinks resolved) is outside")
        return full


# -- every tenant storage of the process (tenantry.lifecycle) ---------------------

_lock = threading.Lock()
#: Every tenant storage instance alive, and one instance per class and
#: arguments ever built, kept: a storage a view builds per request and drops
#: still names a folder on disk (bounded by the distinct arguments).
_alive: weakref.WeakSet[Any] = weakref.WeakSet()
_kept: dict[Any, Any] = {}


def _built(storage: Any, args: Any, kwargs: Any) -> None:
    try:
        arguments: Any = (repr(args), repr(sorted(kwargs.items())))
    except Exception:  # arguments without a repr: the instance stands for itself
        arguments = id(storage)
    storage._tenantry_arguments = arguments
    with _lock:
        try:
            _alive.add(storage)
        except TypeError:  # unhashable (an __eq__ without __hash__): kept instead
            _kept[type(storage), id(storage)] = storage
        if not isinstance(arguments, int) and not isinstance(storage, InMemoryStorage):
            _kept.setdefault((type(storage), arguments), storage)


def forget_storages() -> None:
    """Forget the tenant storages this process built and dropped (the test
    kit, between tests: a test's storages point at its own folders). Those
    still referenced, the ``STORAGES`` entries and ``FileField`` storages
    stay known."""
    with _lock:
        _kept.clear()


def _import_views() -> None:
    """Load the URLconf (and so the views' modules): a storage a views
    module builds when imported exists in this process too (a management
    command, a Celery worker), before the storages are listed."""
    if getattr(settings, "ROOT_URLCONF", None):
        get_resolver().url_patterns  # noqa: B018 (imports the URLconf)


def tenant_storages() -> list[TenantStorageMixin]:
    """Every storage that keeps files per tenant, one per place
    (:meth:`TenantStorageMixin.tenant_files_key`): the ``STORAGES`` entries
    and the ``storage`` of every ``FileField`` of an installed model whose
    class mixes in :class:`TenantStorageMixin`, and every other instance of
    such a class this process built (after loading the URLconf)."""
    _import_views()
    candidates: list[Any] = []
    for alias, options in storages.backends.items():
        # Only the tenant storages are built: another may need settings this
        # process lacks (staticfiles' STATIC_URL).
        backend = options.get("BACKEND", "")
        try:
            cls = import_string(backend) if isinstance(backend, str) else backend
        except ImportError:
            continue  # Django reports it where the storage is used
        if isinstance(cls, type) and issubclass(cls, TenantStorageMixin):
            candidates.append(storages[alias])
    for model in apps.get_models():
        for field in model._meta.get_fields():
            storage = getattr(field, "storage", None) if isinstance(field, FileField) else None
            if isinstance(storage, TenantStorageMixin):
                candidates.append(storage)
    with _lock:
        candidates += list(_alive) + list(_kept.values())
    found: dict[Any, TenantStorageMixin] = {}
    for storage in candidates:
        found.setdefault(storage.tenant_files_key(), storage)
    return list(found.values())
