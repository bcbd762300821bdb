from django.core.management.base import BaseCommand

from board.models import Item
from tenantry import tenant_context

SEED = {
    "acme": ["Anvil", "Rocket skates"],
    "globex": ["Hammock", "Doomsday device"],
}


class Command(BaseCommand):
    help = "Seed the demo's two tenants (idempotent)."

    def handle(self, *args, **options):
        for tenant, names in SEED.items():
            with tenant_context(tenant):
                for name in names:
                    Item.objects.get_or_create(name=name)
        self.stdout.write("seeded acme and globex")
