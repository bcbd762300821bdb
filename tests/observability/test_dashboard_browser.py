"""The usage dashboard in headless Chromium (Debian's chromium and
chromium-driver through Selenium, as tests/live/test_browser.py): a
superuser signs in on the main domain, follows the admin index's link to the
noisy-neighbours page and a tenant's page, and the screenshots show the SVG
charts' bars. Screenshots go to test-output/observability/."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenantry import usage
from tests.live.test_browser import chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "observability"
#: The bars' fill (#417690), as the screenshot shows it.
BAR = (0x41, 0x76, 0x90)


def pixels_of(png: bytes, colour: tuple[int, int, int]) -> int:
    """How many pixels of ``png`` (8-bit RGB or RGBA, not interlaced, as
    Chromium writes screenshots) are ``colour``."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, width = 8, b"", 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0
            channels = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    raw = zlib.decompress(data)
    stride = width * channels
    previous = bytearray(stride)
    found = 0
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + guess) & 0xFF
        for i in range(0, stride, channels):
            if tuple(line[i : i + 3]) == colour:
                found += 1
        previous = line
    return found


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "profile")
    yield driver
    driver.quit()


def test_the_dashboard_draws_its_charts_in_chromium(settings, live_server, browser):
    # localhost as the main domain: Chromium resolves it (and *.localhost)
    # to loopback itself.
    settings.DJUST_CONFIG = {
        "TENANT_RESOLVER": "subdomain",
        "TENANT_MAIN_DOMAIN": "localhost",
        "TENANT_EXEMPT_PATHS": ["/public/", "/admin/"],
    }
    client = Client()
    for tenant, n in (("acme", 8), ("globex", 3)):
        for _ in range(n):
            client.get("/public/", HTTP_HOST=f"{tenant}.localhost")
    usage.record("acme", "peak_presences", 5)
    usage.record("acme", "state_bytes", 4096)
    User.objects.create_superuser("root", "root@example.com", "pw")
    port = live_server.url.rsplit(":", 1)[1]
    browser.get(f"http://localhost:{port}/admin/login/")
    browser.find_element("name", "username").send_keys("root")
    browser.find_element("name", "password").send_keys("pw")
    browser.find_element("css selector", "input[type=submit]").click()
    link = browser.find_element("link text", "Noisy neighbours")
    link.click()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    # The content's own screenshot: the test project serves no admin CSS,
    # so the page is long and the charts are below the fold.
    shot = browser.find_element("id", "content-main").screenshot_as_png
    (OUTPUT / "noisy-neighbours.png").write_bytes(shot)
    rows = browser.find_elements("css selector", "tr.tenant-row")
    assert [row.get_attribute("data-tenant") for row in rows] == ["acme", "globex"]
    bars = browser.find_elements("css selector", "svg.tenantry-chart rect.bar")
    assert len(bars) == 2 and all(bar.size["height"] > 0 for bar in bars)
    assert pixels_of(shot, BAR) > 200  # the two bars are drawn

    rows[0].find_element("tag name", "a").click()
    shot = browser.find_element("css selector", 'section[data-metric="http_requests"]')
    shot = shot.screenshot_as_png
    (OUTPUT / "acme-usage.png").write_bytes(shot)
    charts = browser.find_elements("css selector", "svg.tenantry-chart")
    assert len(charts) == 10 and all(chart.is_displayed() for chart in charts)
    drawn = [
        bar for bar in browser.find_elements("css selector", "rect.bar") if bar.size["height"] > 0
    ]
    assert len(drawn) >= 6  # requests, presences, bytes: this hour and today
    assert pixels_of(shot, BAR) > 50
    # The charts need no script: none in the content.
    content = browser.find_element("id", "content-main")
    assert content.find_elements("tag name", "script") == []
