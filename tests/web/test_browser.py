"""An officer in a real headless Chromium: approves one release and halts another."""

import pytest

from governance.models import Release, ReleaseStatus
from tests.factories import evaluated_release
from tests.web.browser import SCREENSHOTS
from tests.web.browser import click_and_wait_for_next_page as _click_and_wait_for_next_page
from tests.web.browser import sign_in as _sign_in

# The `browser` fixture (headless Chromium) is in tests/web/conftest.py, shared with test_accessibility.py.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _decide(browser, live_server, release: Release, button_text: str, rationale: str, screenshot: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/releases/{release.pk}/")
    assert browser.find_element(By.ID, "zone-table").is_displayed()
    _click_and_wait_for_next_page(browser, browser.find_element(By.LINK_TEXT, button_text))
    browser.find_element(By.NAME, "rationale").send_keys(rationale)
    browser.save_screenshot(str(SCREENSHOTS / f"{screenshot}-confirm.png"))
    _click_and_wait_for_next_page(browser, browser.find_element(By.ID, "confirm"))
    browser.save_screenshot(str(SCREENSHOTS / f"{screenshot}-done.png"))


def test_officer_approves_one_release_and_halts_another(
    browser, live_server, officer, engineer, base_artifact, demo_suite, demo_policy
):
    from selenium.webdriver.common.by import By

    first = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    # Red, not amber: tests/factories.py now puts an amber release in review (blind reviews first), and this test
    # needs two releases awaiting a decision.
    second = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="red"
    )

    _sign_in(browser, live_server, officer.username, f"{officer.username}-pass-123")
    assert "2 releases awaiting a decision" in browser.find_element(By.TAG_NAME, "main").text
    browser.save_screenshot(str(SCREENSHOTS / "dashboard.png"))

    _decide(browser, live_server, first, "Approve…", "Deltas are inside the policy's green zone.", "approve")
    assert browser.find_element(By.ID, "release-status").text == "Approved"
    assert "Approve release: recorded." in browser.page_source

    _decide(browser, live_server, second, "Halt…", "Holding until the adversarial slice is reviewed.", "halt")
    assert browser.find_element(By.ID, "release-status").text == "Halted"

    assert Release.objects.get(pk=first.pk).status == ReleaseStatus.APPROVED
    assert Release.objects.get(pk=second.pk).status == ReleaseStatus.HALTED


def test_officer_reads_the_stability_evidence_and_filters_unstable_flips(
    browser, live_server, officer, engineer, base_artifact, demo_suite, demo_policy
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.web.test_pages import _with_stable_and_unstable_flips

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    _, unstable = _with_stable_and_unstable_flips(release)
    _sign_in(browser, live_server, officer.username, f"{officer.username}-pass-123")
    browser.get(f"{live_server.url}/releases/{release.pk}/")
    assert browser.find_element(By.ID, "profile-table").is_displayed()
    assert browser.find_element(By.ID, "stability-table").is_displayed()
    assert f"{unstable} unstable" in browser.find_element(By.ID, "stable-flips").text
    browser.save_screenshot(str(SCREENSHOTS / "release-stability.png"))

    Select(browser.find_element(By.NAME, "stable")).select_by_value("false")
    _click_and_wait_for_next_page(browser, browser.find_element(By.XPATH, "//form[@class='filters']//button"))
    assert "stable=false" in browser.current_url
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "td.stable-cell")]
    assert len(cells) == min(unstable, 20) and set(cells) == {"no"}
    browser.save_screenshot(str(SCREENSHOTS / "release-unstable-flips.png"))


def test_engineer_releases_an_external_run_and_sees_it_reported(
    browser, live_server, engineer, base_artifact, demo_suite, demo_policy, tmp_path
):
    from selenium.webdriver.common.by import By

    from tests.governance.external import experiment_for, external_run, int8_output

    run = external_run(
        engineer,
        experiment_for(engineer, base_artifact),
        output=int8_output(engineer, base_artifact, tmp_path),
        inputs=[base_artifact],
        metrics={"accuracy": [0.5, 0.75, 0.875]},
    )
    _sign_in(browser, live_server, "eve", "eve-pass-123")
    _click_and_wait_for_next_page(browser, browser.find_element(By.LINK_TEXT, "External runs"))
    _click_and_wait_for_next_page(browser, browser.find_element(By.LINK_TEXT, f"External run #{run.pk}"))
    badge = browser.find_element(By.ID, "reported-badge")
    assert badge.is_displayed() and "not verified by SafeShrink" in badge.text
    assert browser.find_elements(By.CSS_SELECTOR, "#metrics svg polyline")
    browser.save_screenshot(str(SCREENSHOTS / "external-run.png"))
    form = browser.find_element(By.ID, "release-form")
    _click_and_wait_for_next_page(browser, form.find_element(By.CSS_SELECTOR, "button"))
    release = Release.objects.get(external_run=run)
    assert browser.current_url.endswith(f"/releases/{release.pk}/")
    source = browser.find_element(By.ID, "candidate-source")
    assert source.is_displayed() and "Reported — not verified by SafeShrink" in source.text
    assert "judged only SafeShrink" in source.text
    browser.save_screenshot(str(SCREENSHOTS / "external-release.png"))
