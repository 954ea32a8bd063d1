"""Issue 10 §5 (API side): bad input is a 4xx in the error model {"code", "message", "details"}, and nothing
is stored. Each case gave a 500 or an HTML page before."""

import json

import pytest

from accounts.api.filters import Filter, parse_filters
from accounts.errors import ValidationFailed
from governance.models import Decision, Release, ReleaseStatus
from ledger.models import LedgerEvent
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["message"], str) and body["message"]
    return body


@pytest.fixture
def clients(light_world):
    return {role: api_client_for(user) for role, user in light_world["users"].items()}


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/api/runs/?experiment=abc", "experiment"),
        ("/api/escalations/?release=abc", "release"),
        ("/api/runs/?experiment=1.5", "experiment"),
        ("/api/escalations/?release=-3", "release"),
        ("/api/runs/?experiment=99999999999999999999999", "experiment"),
        ("/api/comparisons/1/flips/?stable=yes", "stable"),
    ],
)
def test_non_numeric_filters_are_400_naming_the_parameter(clients, path, parameter):
    body = _error(clients["officer"].get(path), 400)
    assert parameter in body["details"] and parameter in body["message"]


@pytest.mark.parametrize(
    "path, parameter, allowed",
    [
        ("/api/runs/?status=bogus", "status", "queued"),
        ("/api/releases/?status=bogus", "status", "awaiting_decision"),
        ("/api/releases/?zone=purple", "zone", "amber"),
        ("/api/escalations/?status=bogus", "status", "acknowledged"),
        ("/api/comparisons/1/flips/?direction=bogus", "direction", "to_unsafe"),
        ("/api/suite-versions/1/examples/?slice=bogus", "slice", "adversarial"),
    ],
)
def test_unknown_filter_values_are_400_naming_the_allowed_values(clients, path, parameter, allowed):
    body = _error(clients["officer"].get(path), 400)
    assert parameter in body["details"] and allowed in body["message"]


def test_known_filter_values_still_filter(clients, light_world):
    officer = clients["officer"]
    assert officer.get("/api/releases/?status=awaiting_decision&zone=amber").json()["count"] == 1
    assert officer.get("/api/releases/?status=approved").json()["count"] == 0
    assert officer.get(f"/api/escalations/?release={light_world['release'].pk}&status=open").json()["count"] == 1
    assert officer.get(f"/api/runs/?experiment={light_world['experiment'].pk}&status=succeeded").json()["count"] == 1


@pytest.mark.parametrize(
    "query", ["page_size=null", "page_size=0", "page_size=501", "page_size=abc", "page=0", "page=abc", "page=-1"]
)
def test_malformed_pagination_is_400_not_ignored(clients, query):
    body = _error(clients["officer"].get(f"/api/releases/?{query}"), 400)
    assert query.split("=")[0] in body["details"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/releases/?status=%00",
        "/api/runs/?experiment=1%00",
        "/api/suite-versions/1/examples/?label=a%00b",
        "/api/releases/?x%00=1",
    ],
)
def test_nul_byte_in_a_query_parameter_is_400(clients, path):
    body = _error(clients["officer"].get(path), 400)
    assert "NUL" in body["message"]


def test_nul_byte_in_a_web_query_is_a_plain_400(client, light_world):
    client.force_login(light_world["users"]["officer"])
    assert client.get("/?status=%00").status_code == 400


def test_json_nested_50000_deep_is_400_and_stores_nothing(clients, light_world):
    events = LedgerEvent.objects.count()
    deep = '{"kind": "approve", "rationale": "ok", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"
    response = clients["officer"].post(
        f"/api/releases/{light_world['release'].pk}/decisions/", deep, content_type="application/json"
    )
    body = _error(response, 400)
    assert "nested" in body["message"] and "body" in body["details"]
    assert Decision.objects.count() == 0 and LedgerEvent.objects.count() == events


def test_brackets_inside_json_strings_do_not_count_as_nesting(clients, light_world):
    rationale = "[" * 100 + "{" * 100
    response = clients["engineer"].post(
        "/api/experiments/",
        {
            "name": "brackets",
            "description": rationale,
            "base_artifact": light_world["artifact"].pk,
            "unsafe_labels": ["offensive"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content


def test_nul_in_a_json_body_is_400_and_stores_nothing(clients, light_world):
    body = json.dumps({"method": "dynamic_int8", "parameters": {"a": "x\u0000y"}})
    response = clients["engineer"].post(
        f"/api/experiments/{light_world['experiment'].pk}/runs/", body, content_type="application/json"
    )
    _error(response, 400)
    assert light_world["experiment"].runs.count() == 1


def test_oversized_json_body_is_413_in_the_error_model(clients, settings, light_world):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps(
        {
            "name": "big",
            "description": "x" * 20_000,
            "base_artifact": light_world["artifact"].pk,
            "unsafe_labels": ["offensive"],
        }
    )
    body_error = _error(clients["engineer"].post("/api/experiments/", body, content_type="application/json"), 413)
    assert body_error["code"] == "too_large"
    assert light_world["experiment"].__class__.objects.filter(name="big").count() == 0


def test_oversized_multipart_body_is_413_before_it_is_read(clients, settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MAX_UPLOAD_BYTES": 1000}
    response = clients["engineer"].generic(
        "POST",
        "/api/suites/import/",
        b"x" * 10,
        content_type="multipart/form-data; boundary=zz",
        CONTENT_LENGTH=str(5 * 1024 * 1024),
    )
    _error(response, 413)


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/nothing-here/"),
        ("get", "/api/releases/abc/"),
        ("post", "/api/no/such/endpoint/"),
        ("get", "/api/releases/1/nope/"),
    ],
)
def test_unknown_api_paths_are_json_404(clients, method, path):
    body = _error(getattr(clients["officer"], method)(path), 404)
    assert body["code"] == "not_found"


def test_unknown_api_path_is_json_404_for_anonymous_clients_too(client):
    _error(client.get("/api/nothing-here/"), 404)


def test_unknown_web_paths_stay_html(client):
    response = client.get("/nothing-here/")
    assert response.status_code == 404 and not response["Content-Type"].startswith("application/json")


def test_filter_spec_parses_and_refuses():
    specs = (
        Filter.int("run"),
        Filter.choice("zone", ["green", "red"]),
        Filter.date("since"),
        Filter.str("name"),
        Filter.bool("stable"),
    )

    class Params(dict):
        def getlist(self, key):
            return [self[key]] if key in self else []

    values = parse_filters(specs, Params(run="7", zone="red", since="2026-01-02", name="x", stable="false"))
    assert values["run"] == 7 and values["zone"] == "red" and values["since"].isoformat().startswith("2026-01-02T00")
    assert values["stable"] is False and parse_filters(specs, Params(stable="true"))["stable"] is True
    bad_values = ({"run": "0"}, {"zone": "blue"}, {"since": "2026-13-01"}, {"name": ""}, {"name": "a\x00"})
    for bad in (*bad_values, {"stable": "True"}, {"stable": "1"}, {"stable": ""}):
        with pytest.raises(ValidationFailed) as refused:
            parse_filters(specs, Params(bad))
        assert list(refused.value.details) == list(bad)


# -- web forms (governance/views.py) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        {"rationale": "Within policy."},
        {"rationale": "Within policy.", "expected_version": "abc"},
        {"rationale": "Within policy.", "expected_version": ""},
    ],
)
def test_web_decide_without_a_numeric_expected_version_rerenders_with_400(client, light_world, form):
    release = light_world["release"]
    client.force_login(light_world["users"]["officer"])
    response = client.post(f"/releases/{release.pk}/decide/approve/", form)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="decision-error"' in page and "reload the release page" in page
    assert Decision.objects.count() == 0
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.AWAITING_DECISION


@pytest.mark.parametrize("form", [{}, {"expected_version": "x1"}, {"expected_version": "1e3"}])
def test_web_rollout_without_a_numeric_expected_version_rerenders_with_400(client, light_world, form):
    release = light_world["release"]
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.APPROVED)
    client.force_login(light_world["users"]["officer"])
    response = client.post(f"/releases/{release.pk}/rollout/", form)
    assert response.status_code == 400
    assert "reload the release page" in response.content.decode()
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.APPROVED
    assert release.rollout_stages.count() == 0


@pytest.mark.parametrize("mapping", ["true", "[1]", "3"])
def test_suite_import_mapping_that_is_not_an_object_is_400(clients, mapping):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("s.csv", b"text,label\nhello,offensive\n", content_type="text/csv")
    response = clients["engineer"].post(
        "/api/suites/import/", {"file": upload, "suite": "s", "mapping": mapping, "unsafe_labels": ["offensive"]}
    )
    assert "mapping" in _error(response, 400)["details"]


def test_django_400_under_api_is_in_the_error_model(clients):
    # A Host header outside ALLOWED_HOSTS is refused by Django itself (an HTML 400 page before).
    _error(clients["officer"].get("/api/releases/", HTTP_HOST="evil.example"), 400)


@pytest.mark.parametrize(
    "query", ["runs/?experiment=" + "9" * 5000, "releases/?page=" + "9" * 5000, "releases/?page_size=" + "9" * 5000]
)
def test_integers_longer_than_python_parses_are_400(clients, query):
    # int() refuses strings over 4,300 digits (a ValueError, a 500, if nothing checked the length first).
    _error(clients["officer"].get(f"/api/{query}"), 400)
