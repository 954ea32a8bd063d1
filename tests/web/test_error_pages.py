"""The web's error pages (templates/400.html, 403.html, 404.html, 500.html, 403_csrf.html): pages in words with
links back, never Django's technical pages for 403/404, whatever DEBUG says (`make run` has DEBUG=True)."""

import pytest
from django.core.exceptions import SuspiciousOperation
from django.test import Client, override_settings
from django.urls import include, path

from accounts.errors import Conflict, NotFound, PermissionDenied
from governance.models import Decision
from ledger.models import LedgerEvent
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)

# What Django's technical 404/500 pages say (they list the URL patterns, the view, the settings).
TECHNICAL = ("URLconf", "Using the URLconf", "DEBUG = True", "Raised by", "Traceback", "Request Method")


def _boom(request):
    raise RuntimeError("a bug")


def _suspicious(request):
    raise SuspiciousOperation("odd request")


def _conflict(request):
    raise Conflict("The release changed since you loaded it.")


def _domain_forbidden(request):
    raise PermissionDenied("Only officers halt a release.")


def _domain_missing(request):
    raise NotFound("No such export.")


# This module is also a URLconf (override_settings below): views that fail on purpose, then the project's URLs.
urlpatterns = [
    path("test-errors/boom/", _boom),
    path("test-errors/suspicious/", _suspicious),
    path("test-errors/conflict/", _conflict),
    path("test-errors/forbidden/", _domain_forbidden),
    path("test-errors/missing/", _domain_missing),
    path("", include("config.urls")),
]
handler500 = "accounts.error_pages.server_error"
THIS_URLCONF = __name__


def _friendly(response, status: int, *texts: str) -> str:
    page = response.content.decode()
    assert response.status_code == status, page[:400]
    assert response["Content-Type"].startswith("text/html")
    for text in TECHNICAL:
        assert text not in page, text
    for text in texts:
        assert text in page, text
    return page


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_url_is_the_friendly_404_with_links_back(client, reviewers, debug):
    client.force_login(reviewers[0])
    with override_settings(DEBUG=debug):
        response = client.get("/no-such-page/")
    page = _friendly(response, 404, "Page not found", "/no-such-page/", 'href="/reviews/"', 'href="/taxonomy/"')
    assert "rev1" in page  # rendered with the request: the signed-in user's navigation


@pytest.mark.parametrize("debug", [False, True])
def test_signed_out_unknown_url_offers_sign_in(debug):
    with override_settings(DEBUG=debug):
        response = Client().get("/releases/1/nothing/")
    _friendly(response, 404, "Page not found", 'href="/login/"')


def test_append_slash_still_redirects_under_debug(client, officer):
    client.force_login(officer)
    with override_settings(DEBUG=True):
        response = client.get("/taxonomy")
    assert response.status_code == 301 and response["Location"] == "/taxonomy/"


def test_the_api_keeps_its_json_error_model_under_debug(client, officer):
    client.force_login(officer)
    with override_settings(DEBUG=True):
        response = client.get("/api/no-such-endpoint/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_pages_outside_ones_role_are_friendly_404_and_403(
    client, officer, engineer, reviewers, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    decide = f"/releases/{release.pk}/decide/approve/"
    for debug in (False, True):
        with override_settings(DEBUG=debug):
            # A reviewer's scope holds no release: the officers' pages are not found (existence does not leak).
            client.force_login(reviewers[0])
            _friendly(client.get(f"/releases/{release.pk}/"), 404, "Page not found", 'href="/reviews/"')
            _friendly(client.get(decide), 404, "Page not found")
            # The owner sees the release, but deciding is the officers': 403, in words, recorded.
            client.force_login(engineer)
            denied = LedgerEvent.objects.filter(action="access.denied", actor_username=engineer.username).count()
            page = _friendly(client.get(decide), 403, "You may not do this", "Only governance officers decide")
            assert 'href="/"' in page and 'href="/external-runs/"' in page
            post = client.post(decide, {"rationale": "mine", "expected_version": release.version})
            _friendly(post, 403, "Only governance officers decide")
            events = LedgerEvent.objects.filter(action="access.denied", actor_username=engineer.username)
            assert events.count() == denied + 2
    assert Decision.objects.count() == 0
    client.force_login(officer)
    assert client.get(decide).status_code == 200  # the same page for its role


@override_settings(ROOT_URLCONF=THIS_URLCONF)
def test_a_domain_error_escaping_a_web_view_is_its_status_in_words(client, officer):
    client.force_login(officer)
    _friendly(client.get("/test-errors/conflict/"), 409, "could not accept", "The release changed since")
    _friendly(client.get("/test-errors/forbidden/"), 403, "You may not do this", "Only officers halt a release.")
    page = _friendly(client.get("/test-errors/missing/"), 404, "Page not found")
    assert "No such export" not in page  # a 404 says nothing about what was looked for


@override_settings(ROOT_URLCONF=THIS_URLCONF)
def test_server_error_is_the_friendly_500_without_a_request_context(client, officer):
    client.force_login(officer)
    client.raise_request_exception = False
    page = _friendly(client.get("/test-errors/boom/"), 500, "Something went wrong on our side", 'href="/"')
    assert "a bug" not in page and officer.username not in page  # no details, no request context


@override_settings(ROOT_URLCONF=THIS_URLCONF)
def test_suspicious_request_is_the_friendly_400(client):
    _friendly(client.get("/test-errors/suspicious/"), 400, "could not accept", "Error 400")


def test_the_500_page_falls_back_to_plain_html_when_its_template_fails(settings, tmp_path):
    from django.test import RequestFactory

    from accounts.error_pages import server_error

    (tmp_path / "500.html").write_text("{% url 'no-such-route' %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500 and "Something went wrong on our side" in response.content.decode()


def test_csrf_failure_is_a_page_in_words():
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": "x", "password": "y"})
    _friendly(response, 403, "This form could not be checked", "Nothing was changed")
