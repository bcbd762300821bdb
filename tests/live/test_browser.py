"""The demo in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) opens both tenants of the running demo
project, adds an item in one over the WebSocket, and checks that the other
tenant never shows it. Screenshots go to test-output/browser/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.demo_server import demo_server as run_demo

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "browser"
#: djust's client marks the page once its WebSocket is up.
CONNECTED = "[dj-root].dj-connected, .dj-connected"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    with run_demo(tmp_path_factory.mktemp("demo")) as port:
        yield port


def chromium(profile: Path):
    """Headless Chromium with its own profile (cookies: its own visitor)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,700",
        # *.localhost is loopback in Chromium already; pin it to the address
        # the demo server listens on.
        "--host-resolver-rules=MAP *.localhost 127.0.0.1",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def items(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#items li.item")]


def online(driver) -> list[str]:
    """The visitors the page shows online (one per browser session)."""
    return list(tabs(driver))


def tabs(driver) -> dict[str, int]:
    """Each visitor shown online, with how many tabs it has open (read in
    one script: a live update may replace the elements between two reads)."""
    return dict(
        driver.execute_script(
            "return Array.from(document.querySelectorAll('#online .visitor'), function (v) {"
            " return [v.querySelector('.name').textContent, Number(v.dataset.tabs)]; });"
        )
    )


def test_two_tenants_in_a_browser(demo_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    OUTPUT.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 20)
    acme_url = f"http://acme.localhost:{demo_server}/board/"
    globex_url = f"http://globex.localhost:{demo_server}/board/"

    browser.get(globex_url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    globex_window = browser.current_window_handle
    assert browser.find_element(By.ID, "tenant-name").text == "Globex"
    globex_before = items(browser)
    assert globex_before == ["Hammock", "Doomsday device"]

    browser.switch_to.new_window("tab")
    browser.get(acme_url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    assert browser.find_element(By.ID, "tenant-name").text == "Acme Corp"
    assert items(browser) == ["Anvil", "Rocket skates"]

    # Add an item in acme over the WebSocket (no page load).
    field = browser.find_element(By.ID, "item-name")
    field.send_keys("Giant magnet")
    browser.find_element(By.ID, "add-button").click()
    wait.until(lambda d: "Giant magnet" in items(d))
    assert items(browser) == ["Anvil", "Rocket skates", "Giant magnet"]
    browser.save_screenshot(str(OUTPUT / "acme.png"))

    # Who is online is per tenant: a second acme tab is a second tab of the
    # same visitor (the browser's session), in acme's list only.
    acme_window = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(acme_url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    wait.until(lambda d: list(tabs(d).values()) == [2])
    browser.switch_to.window(acme_window)
    wait.until(lambda d: list(tabs(d).values()) == [2])
    browser.save_screenshot(str(OUTPUT / "acme-online.png"))

    # The live globex tab never shows the item nor acme's visitors, nor does a fresh load.
    browser.switch_to.window(globex_window)
    time.sleep(1)
    assert items(browser) == globex_before
    assert len(online(browser)) == 1
    browser.get(globex_url)
    wait.until(ec.presence_of_element_located((By.ID, "items")))
    assert items(browser) == globex_before
    assert "Giant magnet" not in browser.page_source
    browser.save_screenshot(str(OUTPUT / "globex.png"))

    # And acme still has it after a reload (it was stored, not just rendered).
    browser.get(acme_url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    assert "Giant magnet" in items(browser)
    assert (OUTPUT / "acme.png").stat().st_size > 0


def test_one_tenant_at_its_event_limit_while_the_other_keeps_working(demo_server, browser):
    """Globex's plan allows 3 live events a minute: the 4th add is refused
    before its handler runs (nothing is stored; the page shows the wait),
    and acme, on no limit, keeps adding."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    OUTPUT.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 20)

    def add(name):
        field = browser.find_element(By.ID, "item-name")
        field.clear()
        field.send_keys(name)
        browser.find_element(By.ID, "add-button").click()

    browser.get(f"http://globex.localhost:{demo_server}/board/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    assert browser.find_element(By.ID, "plan").text == "3/m live events"
    before = items(browser)
    for i in range(3):
        add(f"Limited {i}")
        wait.until(lambda d, i=i: f"Limited {i}" in items(d))
    banner = browser.find_element(By.ID, "rate-limited")
    assert not banner.is_displayed()
    add("One too many")
    wait.until(lambda d: d.find_element(By.ID, "rate-limited").is_displayed())
    assert "Rate limit exceeded" in banner.text and "retry in" in banner.text
    # The demo runs with DEBUG on: the limit is the banner only, not djust's
    # full-screen "server error" overlay, which would block the next click
    # (docs/ratelimits.md#live-view-events).
    assert browser.find_elements(By.ID, "djust-error-overlay") == []
    assert browser.execute_script("return window.DEBUG_MODE === true")
    browser.save_screenshot(str(OUTPUT / "globex-limited.png"))
    assert items(browser) == [*before, "Limited 0", "Limited 1", "Limited 2"]

    browser.switch_to.new_window("tab")
    browser.get(f"http://acme.localhost:{demo_server}/board/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    assert browser.find_elements(By.ID, "plan") == []
    for i in range(4):
        add(f"Unlimited {i}")
        wait.until(lambda d, i=i: f"Unlimited {i}" in items(d))
    assert not browser.find_element(By.ID, "rate-limited").is_displayed()
    # A fresh globex page shows the refused item was never stored.
    browser.get(f"http://globex.localhost:{demo_server}/board/")
    wait.until(ec.presence_of_element_located((By.ID, "items")))
    assert "One too many" not in items(browser)


def test_unknown_tenant_is_404(demo_server):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{demo_server}/board/", headers={"Host": f"nope.localhost:{demo_server}"}
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=10)
    assert exc.value.code == 404


def test_live_items_reach_the_same_tenants_viewers_only(demo_server, browser):
    """Four windows, two per tenant: an item added in one window appears live
    in the other window of its tenant (djust's push_to_view, carrying the
    item), never in the other tenant's two; each tenant's windows see only
    their own visitors."""
    import uuid

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    OUTPUT.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 20)
    # Leave one window, on a blank page: no live view of an earlier test stays.
    keep = browser.window_handles[0]
    for handle in browser.window_handles[1:]:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(keep)
    browser.get("about:blank")

    windows: dict[str, str] = {}
    for name in ("acme-1", "acme-2", "globex-1", "globex-2"):
        browser.switch_to.new_window("window")
        browser.get(f"http://{name.split('-')[0]}.localhost:{demo_server}/board/")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
        windows[name] = browser.current_window_handle

    def show(name: str) -> None:
        browser.switch_to.window(windows[name])

    # Who is online: each tenant's two windows list the same visitors (this
    # browser's, with at least these two tabs), and no visitor of the other
    # tenant. (Live views of the earlier test may still be open: Chromium
    # can keep a page it left alive, WebSocket included.)
    visitors = {}
    for name in windows:
        show(name)
        wait.until(lambda d: sum(tabs(d).values()) >= 2)
        visitors[name] = set(online(browser))
    for tenant in ("acme", "globex"):
        assert visitors[f"{tenant}-1"] == visitors[f"{tenant}-2"]
    assert not visitors["acme-1"] & visitors["globex-1"]
    before = {}
    for name in windows:
        show(name)
        before[name] = items(browser)

    def add(name: str, text: str) -> None:
        show(name)
        field = browser.find_element(By.ID, "item-name")
        field.clear()
        field.send_keys(text)
        browser.find_element(By.ID, "add-button").click()
        wait.until(lambda d: text in items(d))

    tag = uuid.uuid4().hex[:6]
    # Both of acme's viewers write (globex's plan allows 3 live events a
    # minute, which the test above spends); globex's two only watch.
    for writer, reader, others in (
        ("acme-1", "acme-2", ("globex-1", "globex-2")),
        ("acme-2", "acme-1", ("globex-1", "globex-2")),
    ):
        text = f"Live {writer} {tag}"
        add(writer, text)
        show(reader)  # the other viewer of the tenant: no reload, the push
        wait.until(lambda d, text=text: text in items(d))
        assert items(browser) == [*before[reader], text]
        browser.save_screenshot(str(OUTPUT / f"{reader}-live.png"))
        before[writer] = before[reader] = items(browser)
        time.sleep(1)  # time for a stray push to land, if one were sent
        for other in others:
            show(other)
            assert items(browser) == before[other], other
            assert text not in browser.page_source
    for name in windows:
        show(name)
        assert set(online(browser)) == visitors[name], name
    browser.save_screenshot(str(OUTPUT / "four-windows-globex-2.png"))


def test_one_visitor_two_tabs_while_the_other_tenant_never_changes(demo_server, browser, tmp_path):
    """A visitor (one browser session) opens the acme board in two tabs:
    another visitor's acme board shows it once, with 2 tabs; one tab closes
    (still there, 1 tab); the other closes (gone). A globex board open all
    along never changes at all."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    OUTPUT.mkdir(parents=True, exist_ok=True)
    acme_url = f"http://acme.localhost:{demo_server}/board/"
    globex_url = f"http://globex.localhost:{demo_server}/board/"
    # The visitor: this browser with its cookies cleared (a new session). A
    # new blank window stays open (closing the last one would end the
    # browser); every earlier window closes, live views of earlier tests
    # with it (a page left for another may be kept alive; a closed one not).
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    earlier = browser.window_handles
    browser.switch_to.new_window("window")
    keep = browser.current_window_handle
    for handle in earlier:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(keep)
    # The watcher: another browser (another session), on both tenants.
    watcher = chromium(tmp_path / "watcher")
    try:
        wait = WebDriverWait(watcher, 20)

        def open_board(driver, url: str) -> str:
            driver.switch_to.new_window("tab")
            driver.get(url)
            WebDriverWait(driver, 20).until(
                ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED))
            )
            return driver.current_window_handle

        watch_acme = open_board(watcher, acme_url)
        watch_globex = open_board(watcher, globex_url)
        time.sleep(1)  # the closed windows' departures have landed
        globex_before = tabs(watcher)
        # Count every change to globex's list from now on.
        watcher.execute_script(
            "window.onlineChanges = 0; new MutationObserver(function () {"
            " window.onlineChanges++; }).observe(document.getElementById('online'),"
            " {subtree: true, childList: true, characterData: true, attributes: true});"
        )
        watcher.switch_to.window(watch_acme)
        acme_before = tabs(watcher)

        first = open_board(browser, acme_url)
        WebDriverWait(browser, 20).until(lambda d: set(tabs(d)) - set(acme_before))
        [visitor] = set(tabs(browser)) - set(acme_before)
        second = open_board(browser, acme_url)
        wait.until(lambda d: tabs(d).get(visitor) == 2)
        assert tabs(watcher) == {**acme_before, visitor: 2}
        watcher.save_screenshot(str(OUTPUT / "acme-two-tabs.png"))

        browser.switch_to.window(second)
        browser.close()
        wait.until(lambda d: tabs(d).get(visitor) == 1)
        assert tabs(watcher) == {**acme_before, visitor: 1}

        browser.switch_to.window(first)
        browser.close()
        browser.switch_to.window(keep)
        wait.until(lambda d: visitor not in tabs(d))
        assert tabs(watcher) == acme_before
        watcher.save_screenshot(str(OUTPUT / "acme-visitor-left.png"))

        watcher.switch_to.window(watch_globex)
        assert tabs(watcher) == globex_before
        assert watcher.execute_script("return window.onlineChanges") == 0
    finally:
        watcher.quit()
