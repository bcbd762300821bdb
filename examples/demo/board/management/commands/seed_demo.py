from django.contrib.auth.models import Permission, User
from django.core.management.base import BaseCommand

from board.models import Item, SharedBoard, Tenant
from tenantry import sharing, tenant_context

TENANTS = {
    # Acme's plan turns the feature flag item_export on (docs/operations.md).
    "acme": (
        "Acme Corp",
        {"theme": "#d9480f", "tagline": "Anvils since 1949", "flags": {"item_export": True}},
    ),
    # Globex is on a small plan: 3 live events a minute (tenantry rate
    # limits, from the registry row's settings; docs/ratelimits.md).
    "globex": (
        "Globex",
        {"theme": "#0b7285", "tagline": "Moving the world", "rate_limits": {"events": "3/m"}},
    ),
}
SEED = {
    "acme": ["Anvil", "Rocket skates"],
    "globex": ["Hammock", "Doomsday device"],
}
THEMES = ["#5f3dc4", "#2b8a3e", "#c2255c", "#1864ab", "#e67700"]


class Command(BaseCommand):
    help = (
        "Seed the demo's tenants (idempotent): acme and globex, plus --extra N load-test tenants."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--extra",
            type=int,
            default=0,
            help="also create tenants t000..t<N-1>, each with one item named item-tNNN-0",
        )
        parser.add_argument(
            "--tenant",
            action="append",
            default=[],
            metavar="ID",
            help="also create this load-test tenant (like --extra's; repeat for more)",
        )

    def handle(self, *args, **options):
        tenants = dict(TENANTS)
        seed = dict(SEED)
        slugs = [f"t{n:03d}" for n in range(options["extra"])] + options["tenant"]
        for n, slug in enumerate(slugs):
            theme = THEMES[n % len(THEMES)]
            tenants[slug] = (f"Tenant {slug[1:]}", {"theme": theme, "tagline": slug})
            seed[slug] = [f"item-{slug}-0"]
        for slug, (name, settings) in tenants.items():
            Tenant.objects.update_or_create(
                slug=slug, defaults={"name": name, "settings": settings}
            )
        for tenant, names in seed.items():
            with tenant_context(tenant):
                for name in names:
                    Item.objects.get_or_create(name=name)
        seed_shared_board()
        seed_people()
        self.stdout.write(f"seeded {len(tenants)} tenants")


def seed_shared_board() -> None:
    """acme's "Launch plan", granted to globex with a write grant: both
    tenants meet in its live room at /shared/?board=<id>
    (docs/collaboration.md#live-rooms)."""
    with tenant_context("acme"):
        board, _ = SharedBoard.objects.get_or_create(
            title="Launch plan", defaults={"notes": "Book the launch pad (acme)"}
        )
        given = {(g.object_pk, g.grantee_tenant) for g in sharing.grants_given()}
        if (str(board.pk), "globex") not in given:
            sharing.grant(board, "globex", write=True)


def seed_people() -> None:
    """A support user who may impersonate (``support``/``support``) and two
    members (``wile``, ``roadrunner``) for /support/ (docs/operations.md#impersonation)."""
    staff, created = User.objects.get_or_create(username="support", defaults={"is_staff": True})
    if created:
        staff.set_password("support")
        staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="impersonate"))
    for name in ("wile", "roadrunner"):
        User.objects.get_or_create(username=name)
