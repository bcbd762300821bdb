from django.core.management.base import BaseCommand

from board.models import Item, Tenant
from tenantry import tenant_context

TENANTS = {
    "acme": ("Acme Corp", {"theme": "#d9480f", "tagline": "Anvils since 1949"}),
    "globex": ("Globex", {"theme": "#0b7285", "tagline": "Moving the world"}),
}
SEED = {
    "acme": ["Anvil", "Rocket skates"],
    "globex": ["Hammock", "Doomsday device"],
}


class Command(BaseCommand):
    help = "Seed the demo's two tenants (idempotent)."

    def handle(self, *args, **options):
        for slug, (name, settings) in TENANTS.items():
            Tenant.objects.update_or_create(
                slug=slug, defaults={"name": name, "settings": settings}
            )
        for tenant, names in SEED.items():
            with tenant_context(tenant):
                for name in names:
                    Item.objects.get_or_create(name=name)
        self.stdout.write("seeded acme and globex")
