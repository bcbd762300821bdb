import pytest
from tenantry import audit, audit_trail, tenant_context
from tenantry.models import AuditEvent, AuditHead
from tests.app.models import Tenant, RlsFolder
pytestmark = pytest.mark.django_db

def test_smoke(settings):
    cfg = {"TENANT_RESOLVER": "subdomain", "TENANT_MAIN_DOMAIN": "example.com", "TENANT_MODEL": "app.Tenant", "TENANT_AUDIT_STORE": "database"}
    cfg.update({k: v for k, v in settings.DJUST_CONFIG.items() if k == "TENANT_RLS"})
    settings.DJUST_CONFIG = cfg
    Tenant.objects.create(slug="acme", name="Acme")
    Tenant.objects.create(slug="globex", name="G")
    with tenant_context("acme"):
        audit.emit("x.one", tenant="acme", value=1)
        audit.emit("x.two", tenant="globex", value=2)
    audit.emit("x.three", tenant=None)
    audit.emit("x.four", tenant="nobody")
    with audit_trail._scope(audit_trail.Chain(None)):
        rows = list(AuditEvent.objects.values_list("chain", "seq", "event", "data"))
    print(rows)
    t = Tenant.objects.get(slug="acme")
    ch = audit_trail.current_chain(tenant_context("acme").__enter__() or __import__("tenantry").get_current_tenant())
    print(ch, audit_trail.verify(ch))
