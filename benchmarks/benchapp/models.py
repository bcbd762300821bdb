from tenantry.models import AbstractTenant


class Tenant(AbstractTenant):
    class Meta:
        app_label = "benchapp"
