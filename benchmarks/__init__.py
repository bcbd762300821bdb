"""Side-by-side benchmarks: tenantry against djust.tenants and Redis' own limits."""

import os


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
