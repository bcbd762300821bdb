"""The demo's feature flag and impersonation banner in a real browser
(headless Chromium, as tests/live/test_browser.py): acme's plan turns the
flag ``item_export`` on, so its board links the export and /export/ answers,
globex's does not (404); support staff sign in on acme, act as a member with
a reason, every page shows the "acting as" banner, and stopping removes it
(docs/operations.md#impersonation, docs/operations.md#feature-flags).
Screenshots go to test-output/browser/."""

from __future__ import annotations

import pytest

from tests.demo_server import demo_server as run_demo
from tests.live.test_browser import CONNECTED, OUTPUT, chromium

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    with run_demo(tmp_path_factory.mktemp("demo-operations")) as port:
        yield port


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-operations"))
    yield driver
    driver.quit()


def test_a_flag_and_the_impersonation_banner(demo_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    OUTPUT.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 20)
    acme = f"http://acme.localhost:{demo_server}"
    globex = f"http://globex.localhost:{demo_server}"

    # The flag: acme's board links the export, globex's does not.
    browser.get(f"{acme}/board/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    assert browser.find_elements(By.ID, "export")
    browser.get(f"{globex}/board/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, CONNECTED)))
    assert not browser.find_elements(By.ID, "export")
    browser.get(f"{acme}/export/")
    assert "Anvil" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(f"{globex}/export/")
    assert "Hammock" not in browser.page_source  # 404

    # Support staff sign in on acme and act as a member.
    browser.get(f"{acme}/support/login/")
    browser.find_element(By.NAME, "username").send_keys("support")
    browser.find_element(By.NAME, "password").send_keys("support")
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ec.presence_of_element_located((By.ID, "act")))
    assert browser.find_element(By.ID, "username").text == "support"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-tenantry-impersonation]")
    browser.find_element(By.ID, "reason").send_keys("ticket 4521: the export looks wrong")
    browser.find_element(By.ID, "start").click()
    banner = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-tenantry-impersonation]"))
    )
    assert "Acting as" in banner.text and "roadrunner" in banner.text
    assert "ticket 4521" in banner.text and "support" in banner.text
    assert browser.find_element(By.ID, "username").text == "roadrunner"
    browser.save_screenshot(str(OUTPUT / "impersonation-banner.png"))

    # Stopping gives the staff user's session back, without the banner.
    browser.find_element(By.ID, "stop").click()
    wait.until(ec.presence_of_element_located((By.ID, "act")))
    assert browser.find_element(By.ID, "username").text == "support"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-tenantry-impersonation]")
