"""A views module that builds its own tenant storage when imported, as
docs/storage.md#serving-the-files does (``logos = TenantFileSystemStorage()``):
deleting a tenant in a process that never served a request (a command, a
worker) must still find it (tests/isolation/test_lifecycle_routes.py)."""

from django.conf import settings
from django.http import FileResponse

from tenantry.storage import TenantFileSystemStorage

logos = TenantFileSystemStorage(location=f"{settings.MEDIA_ROOT}-logos")


def logo_file(request):
    return FileResponse(logos.open("logo.png"))
