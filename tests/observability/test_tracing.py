"""OpenTelemetry (docs/observability.md#opentelemetry): ``tenant.id`` on the
span that is current for a request, a live event and a job, with the real
SDK (``TracerProvider`` and its in-memory exporter); tenantry starts no span
of its own."""

from __future__ import annotations

import pytest
from celery import Celery
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tenantry import tenant_context, tracing
from tests.app import asgi
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

BASE = {
    "TENANT_RESOLVER": "subdomain",
    "TENANT_MAIN_DOMAIN": "example.com",
    "TENANT_EXEMPT_PATHS": ["/public/"],
}


@pytest.fixture(autouse=True)
def config(settings):
    settings.DJUST_CONFIG = dict(BASE)


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests"), exporter
    provider.shutdown()


def finished(exporter) -> dict[str, dict]:
    return {span.name: dict(span.attributes) for span in exporter.get_finished_spans()}


def test_a_requests_span_gets_its_tenant(client, spans):
    tracer, exporter = spans
    with tracer.start_as_current_span("GET acme"):
        assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
    with tracer.start_as_current_span("GET globex"):
        client.get("/public/", HTTP_HOST="globex.example.com")
    with tracer.start_as_current_span("GET main"):
        client.get("/public/", HTTP_HOST="example.com")
    seen = finished(exporter)
    assert seen["GET acme"][tracing.ATTRIBUTE] == "acme"
    assert seen["GET globex"][tracing.ATTRIBUTE] == "globex"
    assert tracing.ATTRIBUTE not in seen["GET main"]
    # No span of tenantry's own: only the three the test started.
    assert len(exporter.get_finished_spans()) == 3


def test_no_recording_span_no_attribute_and_no_error(client, spans):
    _tracer, exporter = spans
    assert client.get("/public/", HTTP_HOST="acme.example.com").status_code == 200
    assert exporter.get_finished_spans() == ()


@pytest.mark.asyncio
async def test_a_live_events_span_gets_its_tenant(spans, monkeypatch):
    tracer, exporter = spans
    inner = asgi.application

    async def traced(scope, receive, send):
        # What ASGI instrumentation does: one span per connection, current
        # while the consumer handles its frames.
        with tracer.start_as_current_span(f"{scope['type']} {scope['path']}"):
            await inner(scope, receive, send)

    monkeypatch.setattr(asgi, "application", traced)
    tab = LiveClient("globex.example.com")
    assert (await tab.mount())["type"] == "mount"
    assert (await tab.event("peek"))["type"] != "error"
    await tab.close()
    seen = finished(exporter)
    assert seen["websocket /ws/live/"][tracing.ATTRIBUTE] == "globex"
    assert len(exporter.get_finished_spans()) == 1


def test_a_jobs_span_gets_its_tenant(spans):
    tracer, exporter = spans
    app = Celery("tracing", broker="memory://", backend="cache+memory://")

    @app.task
    def work():
        return "done"

    with tracer.start_as_current_span("job"), tenant_context("acme", must_exist=False):
        assert work.apply().get() == "done"
    with tracer.start_as_current_span("job without tenant"):
        work.apply()
    seen = finished(exporter)
    assert seen["job"][tracing.ATTRIBUTE] == "acme"
    assert tracing.ATTRIBUTE not in seen["job without tenant"]
