"""ASGI application: Django over HTTP, djust's LiveView consumer over WebSocket."""

import django
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from djust.websocket import LiveViewConsumer  # noqa: E402

from tenantry.channels import TenantOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": TenantOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/live/", LiveViewConsumer.as_asgi())]))
        ),
    }
)
