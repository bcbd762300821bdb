import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
django_http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402
from djust.websocket import LiveViewConsumer  # noqa: E402

from tenantry.channels import TenantOriginValidator  # noqa: E402

live = AuthMiddlewareStack(URLRouter([path("ws/live/", LiveViewConsumer.as_asgi())]))
if os.environ.get("DEMO_ORIGIN_VALIDATOR") == "channels":
    # For tests only (the soak on PostgreSQL): channels' own validator, as
    # djust's docs show it, which lets any page of ALLOWED_HOSTS (another
    # tenant's included) open a socket. tenantry then refuses the mount
    # itself (docs/security.md#the-live-plane-sockets-events-and-jobs).
    websocket = AllowedHostsOriginValidator(live)
else:
    # Only pages of the same tenant may open its live views (and every
    # origin must be in ALLOWED_HOSTS, as channels' validator checks).
    websocket = TenantOriginValidator(live)

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_http) if settings.DEBUG else django_http,
        "websocket": websocket,
    }
)
