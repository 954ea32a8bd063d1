"""The headless Chromium shared by the browser tests (test_browser.py, test_accessibility.py)."""

import pytest

from tests.web.browser import SCREENSHOTS, chromium


@pytest.fixture
def browser():
    chrome = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield chrome
    chrome.quit()
