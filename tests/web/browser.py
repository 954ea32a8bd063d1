"""Headless Chromium for the browser tests (the `browser` fixture is in tests/web/conftest.py): where screenshots go,
signing in through the login form, waiting for the next page, full-page screenshots."""

import base64
import os
import shutil
from pathlib import Path

import pytest

# `make test` points this at test-artifacts/screens in the checkout (git-ignored), which CI keeps.
SCREENSHOTS = Path(os.environ.get("SAFESHRINK_SCREENSHOTS", "/tmp/safeshrink-screens"))
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1400",
)


def chromium():
    """A headless Chromium driven by chromedriver; skips outside CI when either is missing, fails in CI."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        message = "headless Chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.implicitly_wait(20)
    return chrome


def sign_in(browser, live_server, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/login/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    click_and_wait_for_next_page(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))


def click_and_wait_for_next_page(browser, element) -> None:
    """Click, then wait until the old page is gone: otherwise a lookup can find an element of the
    page being left, which goes stale under the test's feet."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # A marker on the old page's window: gone once the next page has replaced it. (Waiting for the old <html>
    # element to go stale can fail mid-navigation with chromedriver's "Node ... does not belong to the document".)
    browser.execute_script("window.__leaving = true;")
    element.click()

    def next_page_loaded(driver) -> bool:
        try:
            return driver.execute_script("return !window.__leaving && document.readyState === 'complete';")
        except WebDriverException:  # the page is being swapped under the script: not there yet
            return False

    WebDriverWait(browser, 20).until(next_page_loaded)


def full_page_screenshot(browser, path: Path) -> None:
    """The whole page, not only the window (Chromium's DevTools protocol: capture beyond the viewport)."""
    metrics = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
