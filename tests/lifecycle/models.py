from django.conf import settings
from django.db import models
from django.utils.functional import cached_property

from tenantry import TenantManager
from tenantry.models import AbstractTenant
from tenantry.storage import TenantFileSystemStorage
from tests.app.models import Tenant


class Account(AbstractTenant):
    """A registry model with an active flag (``tenantry deactivate``)."""

    is_active = models.BooleanField(default=True)

    class Meta:
        app_label = "lifecycle"


class Ticket(models.Model):
    """A scoped model keyed by a foreign key to the registry row."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    title = models.CharField(max_length=100)

    objects = TenantManager(tenant_field="account")
    all_tenants = models.Manager()

    class Meta:
        app_label = "lifecycle"


class Legacy(models.Model):
    """A model of a single-tenant app on its way to multi-tenant
    (docs/adopting.md): the tenant column is still nullable."""

    tenant_id = models.CharField(max_length=128, null=True, blank=True, db_index=True)
    title = models.CharField(max_length=100)

    class Meta:
        app_label = "lifecycle"


# -- deleting a tenant (tests/isolation/test_lifecycle.py, docs/registry.md#deleting-a-tenant):
# one model per way a row can belong to a tenant of the registry app.Tenant.


class Membership(models.Model):
    """A member of a tenant, keyed by a plain ``tenant_id`` column and no
    TenantManager: found by the column's name (tenantry.ownership)."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE)
    role = models.CharField(max_length=20, default="member")

    class Meta:
        app_label = "lifecycle"


class Seat(models.Model):
    """Keyed by an id column of another name: declared in LifecycleConfig.ready
    (``tenantry.ownership.declare``)."""

    org_slug = models.CharField(max_length=128, db_index=True)
    label = models.CharField(max_length=50)

    class Meta:
        app_label = "lifecycle"


class Workspace(models.Model):
    """A scoped parent of multi-table inheritance."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=50)

    objects = TenantManager(tenant_field="tenant_id")
    all_tenants = models.Manager()

    class Meta:
        app_label = "lifecycle"


class Board(Workspace):
    """A multi-table-inheritance child: its table has no tenant column."""

    columns = models.IntegerField(default=3)

    class Meta:
        app_label = "lifecycle"


class Invoice(models.Model):
    """A foreign key to the registry that protects the row: the tenant's own."""

    tenant = models.ForeignKey("app.Tenant", on_delete=models.PROTECT)
    total = models.IntegerField(default=0)

    class Meta:
        app_label = "lifecycle"


class Bookmark(models.Model):
    """A foreign key to the registry that is cleared (SET_NULL): not the
    tenant's row, only a reference to it."""

    tenant = models.ForeignKey("app.Tenant", null=True, on_delete=models.SET_NULL)
    url = models.CharField(max_length=200)

    class Meta:
        app_label = "lifecycle"


class HostName(models.Model):
    """A TENANT_DOMAIN_MODEL keyed by a foreign key to the registry."""

    host = models.CharField(max_length=253, unique=True)
    tenant = models.ForeignKey("app.Tenant", on_delete=models.CASCADE)

    class Meta:
        app_label = "lifecycle"


class Alias(models.Model):
    """A TENANT_DOMAIN_MODEL keyed by a CharField named ``owner``: only the
    config (TENANT_DOMAIN_TENANT_FIELD) says it holds tenant ids."""

    domain = models.CharField(max_length=253, unique=True)
    owner = models.CharField(max_length=128)

    class Meta:
        app_label = "lifecycle"


# -- files of a tenant in a storage of its own (tests/isolation/test_lifecycle_routes.py) --


class AttachmentStorage(TenantFileSystemStorage):
    """A tenant storage outside ``MEDIA_ROOT``'s folder: ``<MEDIA_ROOT>-attachments``
    (read when used, so a test's ``MEDIA_ROOT`` decides)."""

    @cached_property
    def base_location(self) -> str:
        return self._value_or_setting(self._location, f"{settings.MEDIA_ROOT}-attachments")


def attachment_storage() -> AttachmentStorage:
    return ATTACHMENTS


ATTACHMENTS = AttachmentStorage()


class Attachment(models.Model):
    """A ``FileField`` whose storage is in no ``STORAGES`` entry."""

    tenant_id = models.CharField(max_length=128, db_index=True)
    file = models.FileField(upload_to="attachments/", storage=attachment_storage)

    objects = TenantManager(tenant_field="tenant_id")

    class Meta:
        app_label = "lifecycle"


class Customer(Tenant):
    """A proxy of the registry model (an app's own admin or sign-up code):
    its INSERT is the registry's (tests/isolation/test_lifecycle_routes.py)."""

    class Meta:
        proxy = True
        app_label = "lifecycle"


class Receipt(models.Model):
    """A foreign key to the registry's id field, without a constraint: the
    column holds the id itself (a row can outlive its registry row)."""

    tenant = models.ForeignKey(
        "app.Tenant", to_field="slug", db_constraint=False, on_delete=models.DO_NOTHING
    )
    total = models.IntegerField(default=0)

    class Meta:
        app_label = "lifecycle"


class Voucher(models.Model):
    """A foreign key to the registry's primary key, without a constraint."""

    tenant = models.ForeignKey("app.Tenant", db_constraint=False, on_delete=models.DO_NOTHING)
    code = models.CharField(max_length=20)

    class Meta:
        app_label = "lifecycle"
