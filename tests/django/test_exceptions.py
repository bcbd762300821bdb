"""Every tenantry exception is a ``TenantError``; an isolation refusal is
never an ``OSError`` (docs/api.md#exceptions)."""

from __future__ import annotations

import pickle

import pytest

import tenantry
import tenantry.cache
import tenantry.exceptions
from tenantry import TenantError, TenantMismatchError, tenant_context
from tests.app.models import Item

BASES = {
    "InvalidTenantId": (ValueError,),
    "ConfigError": (ValueError,),
    "TenantNotSetError": (RuntimeError, ValueError),
    "TenantNotFound": (LookupError,),
    "InvalidKey": (ValueError,),
    "BackendUnavailable": (ConnectionError,),
    "BackendError": (RuntimeError,),
    "QuotaExceeded": (tenantry.BackendError,),
    "TenantMismatchError": (),
    "RegistryRowProtected": (),
    "DeletionIncomplete": (),
    "TransactionPoolingError": (tenantry.BackendUnavailable, ConnectionError),
}


@pytest.mark.parametrize("name", sorted(BASES))
def test_each_exception_is_a_tenant_error_with_its_standard_bases(name):
    cls = getattr(tenantry, name)
    assert cls is getattr(tenantry.exceptions, name)
    assert issubclass(cls, TenantError) and issubclass(TenantError, Exception)
    assert not issubclass(TenantError, OSError)
    for base in BASES[name]:
        assert issubclass(cls, base), (name, base)
    assert cls.__module__ == "tenantry"
    error = cls("message")
    again = pickle.loads(pickle.dumps(error))  # Celery and multiprocessing carry them
    assert type(again) is cls and again.args == ("message",)


def test_an_isolation_refusal_is_not_an_oserror():
    assert not issubclass(TenantMismatchError, OSError)
    assert not issubclass(TenantMismatchError, PermissionError)
    # BackendUnavailable stays an I/O failure.
    assert issubclass(tenantry.BackendUnavailable, OSError)


@pytest.mark.django_db
def test_except_oserror_around_file_io_does_not_swallow_a_refusal(tmp_path, settings):
    """An import that reads a file and writes rows, with ``except OSError``
    for a missing or unreadable file: a row naming another tenant must stop
    it with TenantMismatchError, not be reported as an I/O problem."""
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "header",
        **{k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"},
    }
    upload = tmp_path / "items.csv"
    upload.write_text("acme,chair\nglobex,planted\n")

    def import_items(path) -> str:
        try:
            with open(path) as lines:
                for line in lines:
                    tenant_id, name = line.strip().split(",")
                    Item.objects.create(tenant_id=tenant_id, name=name)
        except OSError:
            return "could not read the file"
        return "imported"

    with tenant_context("acme", must_exist=False):
        assert import_items(tmp_path / "missing.csv") == "could not read the file"
        with pytest.raises(TenantMismatchError, match="globex"):
            import_items(upload)
        with pytest.raises(TenantError):
            tenantry.cache.clear_tenant("globex")
