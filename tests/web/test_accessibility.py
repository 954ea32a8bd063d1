"""Every page each role can reach, in headless Chromium, checked with axe-core (WCAG 2 A/AA) and screenshotted.

One test per role (the data set is built once per test: a transactional test database is emptied after each).
A page fails the test when axe reports a violation of impact "serious" or "critical"; the failure lists the page,
the rule, its help text and the selectors of the offending elements. Milder findings are printed. A full-page
screenshot of each visit goes to SAFESHRINK_SCREENSHOTS (tests/web/browser.py) as a11y-<role>-<page>.png.

PAGES is the list to extend when a page is added: a URL name (django.urls.reverse), the keys of the objects its
arguments come from (see `_data`), an optional query string and the roles that reach it. A URL name that does not
exist yet is left out of the role walks and reported by `test_page_is_routed` as a skip naming it.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.urls import NoReverseMatch, reverse

from accounts.models import Role
from tests.factories import evaluated_release
from tests.web.browser import SCREENSHOTS, click_and_wait_for_next_page, full_page_screenshot, sign_in

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
FAILING_IMPACTS = {"serious", "critical"}
SIGNED_OUT = "signed-out"
ALL = (Role.ENGINEER, Role.OFFICER, Role.REVIEWER, Role.REGULATOR, Role.ADMIN)
MAKERS = (Role.ENGINEER, Role.OFFICER, Role.ADMIN)  # who sees runs, artifacts and experiments


@dataclass(frozen=True)
class Page:
    name: str
    url_name: str
    roles: tuple[str, ...]
    args: tuple[str, ...] = ()  # keys of `_data`'s objects (their pk), or literal strings prefixed with "="
    query: str = ""
    follow: bool = False  # the URL redirects (a comparison with one release: to its section of the release page)


PAGES = [
    Page("login", "login", (SIGNED_OUT,)),
    Page("dashboard", "web:dashboard", (Role.ENGINEER, Role.OFFICER, Role.REGULATOR, Role.ADMIN)),
    Page("release", "web:release", (Role.ENGINEER, Role.OFFICER, Role.REGULATOR, Role.ADMIN), ("green",)),
    Page("release-unstable-flips", "web:release", (Role.OFFICER,), ("green",), "stable=false"),
    Page("release-in-review", "web:release", MAKERS, ("amber",)),
    Page("release-halted", "web:release", MAKERS, ("halted",)),
    Page("release-external", "web:release", MAKERS, ("external_release",)),
    Page("decide-confirm", "web:release-decide", (Role.OFFICER,), ("green", "=approve")),
    Page("run", "web:run", MAKERS, ("run",)),
    Page("external-runs", "web:external-runs", MAKERS),
    Page("external-run", "web:external-run", MAKERS, ("external_run",)),
    Page("reviews", "web:reviews", (Role.REVIEWER,)),
    Page("review", "web:review", (Role.REVIEWER,), ("review_task",)),
    Page("taxonomy", "web:taxonomy", ALL),
    Page("policies", "web:policies", ALL),
    # Issue 16's new pages: the names are the lead's to confirm; a missing one is skipped by test_page_is_routed.
    Page("experiments", "web:experiments", MAKERS),
    Page("experiment", "web:experiment", MAKERS, ("experiment",)),
    Page("runs", "web:runs", MAKERS),
    Page("artifacts", "web:artifacts", MAKERS),
    Page("artifact", "web:artifact", MAKERS, ("artifact",)),
    Page("evaluations", "web:evaluations", MAKERS),
    Page("evaluation", "web:evaluation", MAKERS, ("evaluation",)),
    Page("comparison", "web:comparison", MAKERS, ("comparison",), follow=True),
    # A chat model's release (tests/web/a11y_chat.py; keys starting with "chat" are built only for roles visiting
    # one of these pages: the tiny chat model's pipeline adds about a second per role).
    Page("release-chat", "web:release", (Role.ENGINEER, Role.OFFICER, Role.REGULATOR), ("chat_release",)),
    Page("release-chat-flips-filtered", "web:release", (Role.OFFICER,), ("chat_release",), "direction=to_safe"),
    Page("evaluation-chat", "web:evaluation", (Role.ENGINEER, Role.OFFICER), ("chat_evaluation",)),
    Page("run-distill", "web:run", (Role.ENGINEER, Role.OFFICER), ("chat_distill_run",)),
    Page("review-chat", "web:review", (Role.REVIEWER,), ("chat_review_task",)),
]


def _needs_chat(role: str) -> bool:
    return any(role in p.roles and any(a.startswith("chat") for a in p.args) for p in PAGES)


def _routed(page: Page) -> bool:
    try:
        reverse(page.url_name, args=[1 if not a.startswith("=") else a[1:] for a in page.args])
    except NoReverseMatch:
        return False
    return True


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_is_routed(page):
    """Not a browser test: says which listed pages have no URL yet (skipped, by name), so none is forgotten."""
    if not _routed(page):
        pytest.skip(f"URL name {page.url_name!r} ({page.name}) does not exist yet: not checked for accessibility")


def _data(*, engineer, officer, reviewers, regulator, base_artifact, demo_suite, demo_policy, tmp_path) -> dict:
    """Releases in several states (awaiting a decision with an incident escalation and a signed export, in blind
    review, halted, from an external run), a regulator's grant, an external run with metrics. Returns the pks."""
    from evaluations.models import Flip
    from exports.services.exports import export_request, regulator_grant
    from governance.models import Release, ReviewTask
    from governance.services.escalations import incident_report
    from governance.services.releases import release_decide
    from governance.services.reviews import review_tasks_create
    from tests.governance.external import evaluated_external_release
    from tests.web.test_pages import _with_stable_and_unstable_flips

    def release(zone):
        return evaluated_release(
            engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone=zone
        )

    green = release("green")
    _with_stable_and_unstable_flips(green)
    incident_report(
        actor=officer, release_id=green.pk, severity=2, title="Missed slurs in canary", description="From moderators."
    )
    export_request(actor=officer, release_id=green.pk)  # built inline (Celery is eager in tests)
    regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=green.pk, days=30, reason="Audit")

    amber = release("amber")  # in review; the blind reviews are open if the tiny candidate has a flip
    if not ReviewTask.objects.filter(release=amber).exists():
        _with_stable_and_unstable_flips(amber)
        Flip.objects.filter(comparison=amber.comparison).update(stable=True)
        review_tasks_create(release=Release.objects.get(pk=amber.pk))

    halted = release("red")
    release_decide(
        actor=officer,
        release_id=halted.pk,
        kind="halt",
        rationale="Holding for the adversarial slice.",
        expected_version=halted.version,
    )
    external = evaluated_external_release(
        engineer=engineer,
        base_artifact=base_artifact,
        suite=demo_suite,
        policy=demo_policy,
        tmp_path=tmp_path,
        metrics={"accuracy": [0.5, 0.75, 0.875], "loss": [1.2, 0.7, 0.4]},
    )
    task = ReviewTask.objects.filter(reviewer=reviewers[0]).order_by("pk").first()
    return {
        "green": green.pk,
        "amber": amber.pk,
        "halted": halted.pk,
        "external_release": external.pk,
        "external_run": external.external_run_id,
        "run": green.compression_run_id,
        "experiment": green.experiment_id,
        "artifact": green.candidate_id,
        "review_task": task.pk if task else None,
        "evaluation": Release.objects.get(pk=green.pk).candidate_evaluation_id,
        "comparison": Release.objects.get(pk=green.pk).comparison_id,
    }


def _url(page: Page, objects: dict) -> str | None:
    args = []
    for key in page.args:
        value = key[1:] if key.startswith("=") else objects.get(key)
        if value is None:
            return None
        args.append(value)
    url = reverse(page.url_name, args=args)
    return f"{url}?{page.query}" if page.query else url


def _axe(browser) -> list[dict]:
    browser.set_script_timeout(120)
    browser.execute_script(AXE.read_text())
    raw = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify({error: String(e)})));",
        TAGS,
    )
    result = json.loads(raw)
    assert not isinstance(result, dict), f"axe.run failed: {result}"
    return result


def _describe(where: str, violation: dict) -> str:
    targets = "; ".join(" ".join(map(str, node["target"])) for node in violation["nodes"][:8])
    more = f" (+{len(violation['nodes']) - 8} more)" if len(violation["nodes"]) > 8 else ""
    return f"{where}: [{violation['impact']}] {violation['id']}: {violation['help']} -> {targets}{more}"


def _visit(browser, live_server, client, role: str, page: Page, url: str) -> list[dict]:
    # The browser cannot see the status code (the error pages are pages of the site): the same user's test client
    # asks first, so a page the role cannot reach fails here instead of being checked as an error page.
    status = client.get(url, follow=page.follow).status_code
    assert status == 200, f"{url} as {role}: HTTP {status}"
    browser.get(f"{live_server.url}{url}")
    if page.url_name != "login":
        assert "/login/" not in browser.current_url, f"{role} was sent to the login page from {url}"
    full_page_screenshot(browser, SCREENSHOTS / f"a11y-{role}-{page.name}.png")
    return _axe(browser)


ROLE_USERS = {
    Role.ENGINEER: ("eve", "eve-pass-123"),
    Role.OFFICER: ("olga", "olga-pass-123"),
    Role.REVIEWER: ("rev1", "rev1-pass-123"),
    Role.REGULATOR: ("rita", "rita-pass-123"),
    Role.ADMIN: ("ada", "ada-pass-123"),
}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", [SIGNED_OUT, *ALL])
def test_every_page_of_a_role_passes_axe(role, browser, live_server, request, capsys):
    from django.test import Client
    from selenium.webdriver.common.by import By

    from accounts.models import User

    client, objects = Client(), {}
    if role != SIGNED_OUT:
        request.getfixturevalue("make_user")("ada", Role.ADMIN)
        objects = _data(
            **{
                name: request.getfixturevalue(name)
                for name in (
                    "engineer",
                    "officer",
                    "reviewers",
                    "regulator",
                    "base_artifact",
                    "demo_suite",
                    "demo_policy",
                    "tmp_path",
                )
            }
        )
        if _needs_chat(role):
            from tests.web.a11y_chat import chat_data

            fixtures = ("engineer", "officer", "reviewers", "regulator", "chat_base", "judge_artifact", "chat_suite")
            objects |= chat_data(**{name: request.getfixturevalue(name) for name in (*fixtures, "chat_policy")})
        sign_in(browser, live_server, *ROLE_USERS[role])
        client.force_login(User.objects.get(username=ROLE_USERS[role][0]))
    failures: list[str] = []
    notes: list[str] = []
    visited: list[str] = []
    for page in PAGES:
        if role not in page.roles:
            continue
        if not _routed(page):
            notes.append(f"{page.name}: URL name {page.url_name!r} does not exist yet (see test_page_is_routed)")
            continue
        url = _url(page, objects)
        if url is None:
            notes.append(f"{page.name}: no object for {page.args} in this data set")
            continue
        visited.append(url)
        for violation in _visit(browser, live_server, client, role, page, url):
            line = _describe(f"{role} {page.name} {url}", violation)
            (failures if violation["impact"] in FAILING_IMPACTS else notes).append(line)
    if role == SIGNED_OUT:  # the login form again, after a failed attempt (its error message)
        browser.find_element(By.NAME, "username").send_keys("nobody")
        browser.find_element(By.NAME, "password").send_keys("wrong")
        click_and_wait_for_next_page(browser, browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        full_page_screenshot(browser, SCREENSHOTS / f"a11y-{role}-login-error.png")
        for violation in _axe(browser):
            line = _describe(f"{role} login (after a failed attempt)", violation)
            (failures if violation["impact"] in FAILING_IMPACTS else notes).append(line)
    with capsys.disabled():
        print(f"\naxe, {role}: {len(visited)} pages, {len(failures)} serious/critical findings")
        for line in notes:
            print(f"  note: {line}")
    assert visited, f"no page was checked for {role}"
    assert not failures, "axe found serious or critical WCAG 2 A/AA violations:\n" + "\n".join(failures)
