"""``manage.py tenantry adopt`` (docs/adopting.md): a single-tenant
table of 100,000 rows gets its tenant column filled in batches; rows that
already have a tenant keep it, and an unknown tenant is refused."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.lifecycle.models import Account, Legacy

pytestmark = pytest.mark.django_db

ROWS = 100_000


@pytest.fixture
def registry(settings):
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "example.com",
        "TENANT_MODEL": "lifecycle.Account",
    }
    Account.objects.create(slug="acme", name="Acme")


def adopt(*args) -> str:
    out = StringIO()
    call_command("tenantry", "adopt", "lifecycle.Legacy", *args, stdout=out)
    return out.getvalue()


def test_adopt_backfills_100k_rows_in_batches(registry):
    Legacy.objects.bulk_create((Legacy(title=f"t{n}") for n in range(ROWS)), batch_size=5000)
    Legacy.objects.filter(pk__in=Legacy.objects.order_by("pk")[:10].values("pk")).update(
        tenant_id=""
    )  # empty strings count as "no tenant" too
    Legacy.objects.create(title="theirs", tenant_id="globex")  # already assigned: kept
    text = adopt("--tenant", "acme", "--batch", "25000")
    lines = text.splitlines()
    assert lines[0] == f"{ROWS} rows of lifecycle.Legacy have no tenant_id"
    assert lines[1:5] == [f"  {n}/{ROWS}" for n in (25000, 50000, 75000, 100000)]
    assert lines[-1] == f"adopted {ROWS} rows of lifecycle.Legacy into tenant 'acme'"
    assert Legacy.objects.filter(tenant_id="acme").count() == ROWS
    assert list(Legacy.objects.exclude(tenant_id="acme").values_list("tenant_id", flat=True)) == [
        "globex"
    ]
    # Running it again finds nothing to do.
    assert adopt("--tenant", "acme").splitlines()[-1].startswith("adopted 0 rows")


def test_adopt_refuses_a_tenant_the_registry_does_not_know(registry):
    Legacy.objects.create(title="x")
    with pytest.raises(CommandError, match=r"registry does not know tenant 'nobody'"):
        adopt("--tenant", "nobody")
    with pytest.raises(CommandError, match="invalid tenant id"):
        adopt("--tenant", "bad id")
    assert Legacy.objects.get().tenant_id is None


def test_adopt_names_a_missing_field_and_model(settings):
    settings.DJUST_CONFIG = {"TENANT_RESOLVER": "header"}
    with pytest.raises(CommandError, match=r"lifecycle\.Legacy has no field 'org'"):
        adopt("--tenant", "acme", "--field", "org")
    with pytest.raises(CommandError, match=r"'lifecycle\.Nope' is not an installed model"):
        call_command("tenantry", "adopt", "lifecycle.Nope", "--tenant", "acme")
    Legacy.objects.create(title="x")
    assert "adopted 1 rows" in adopt("--tenant", "solo")  # no registry: any valid id
