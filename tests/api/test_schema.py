"""Issue 10 §7: the OpenAPI schema documents errors and filters, Swagger UI needs no network, and list rows of
releases are summaries."""

import re

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.generators import SchemaGenerator

from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def openapi():
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(openapi):
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_every_operation_documents_its_errors_in_the_error_model(openapi):
    error = openapi["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "message", "details"}
    missing = []
    for path, method, operation in _operations(openapi):
        responses = operation["responses"]
        public = path == "/api/auth/token/"
        expected = {"400"} | (set() if public else {"401", "403", "404"})
        if method in ("post", "put", "patch", "delete"):
            expected |= {"413", "415"} | (set() if public else {"409"})
        for status in expected:
            content = responses.get(status, {}).get("content", {}).get("application/json", {})
            if content.get("schema") != {"$ref": "#/components/schemas/Error"}:
                missing.append(f"{method.upper()} {path} {status}")
    assert missing == []


@pytest.mark.parametrize(
    "path, names",
    [
        ("/api/runs/", {"status", "experiment"}),
        ("/api/releases/", {"status", "zone"}),
        ("/api/escalations/", {"status", "release"}),
        ("/api/comparisons/{id}/flips/", {"slice", "subgroup", "direction", "stable"}),
        ("/api/suite-versions/{id}/examples/", {"slice", "subgroup", "label"}),
        ("/api/artifacts/", {"name", "parent"}),
    ],
)
def test_list_filters_are_declared_with_their_types(openapi, path, names):
    parameters = {p["name"]: p["schema"] for p in openapi["paths"][path]["get"]["parameters"]}
    assert names <= set(parameters)
    for name in names:
        schema = parameters[name]
        assert (
            "enum" in schema
            or schema["type"] == "integer"
            and schema["minimum"] == 1
            or "maxLength" in schema
            or schema == {"type": "boolean"}
        )
    assert parameters["page_size"] == {"type": "integer", "minimum": 1, "maximum": 500}


def test_non_empty_lists_declare_min_items(openapi):
    schemas = openapi["components"]["schemas"]
    assert schemas["ExperimentInputRequest"]["properties"]["unsafe_labels"]["minItems"] == 1
    assert schemas["PolicyInputRequest"]["properties"]["rules"]["minItems"] == 1
    assert schemas["RolloutInputRequest"]["properties"]["stages"]["minItems"] == 1
    assert schemas["PerturbInputRequest"]["properties"]["kinds"]["minItems"] == 1


def test_swagger_ui_loads_only_local_static_files(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    urls = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)
    urls += re.findall(r'["\'](https?://[^"\']+)["\']', html)
    assert urls, "the docs page references no scripts or styles at all"
    external = [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert external == [], f"the docs page needs the network for {external}"
    static = [u for u in urls if u.startswith("/static/")]
    assert any(u.endswith("swagger-ui-bundle.js") for u in static), urls
    for url in static:
        assert finders.find(url.removeprefix("/static/")), f"{url} is not a local static file"


def test_release_list_rows_are_summaries_and_the_detail_is_full(light_world):
    api = api_client_for(light_world["users"]["officer"])
    row = api.get("/api/releases/").json()["results"][0]
    assert row["id"] == light_world["release"].pk and row["gate_zone"] == "amber"
    assert "gate" not in row and "decisions" not in row
    detail = api.get(f"/api/releases/{row['id']}/").json()
    assert "gate" in detail and "decisions" in detail


def test_release_list_query_count_does_not_grow_with_rows(light_world, django_assert_max_num_queries):
    from governance.models import Release

    release = light_world["release"]
    for _ in range(10):
        Release.objects.create(
            experiment=release.experiment,
            compression_run=release.compression_run,
            candidate=release.candidate,
            candidate_digest=release.candidate_digest,
            suite_version=release.suite_version,
            policy=release.policy,
            created_by=release.created_by,
        )
    api = api_client_for(light_world["users"]["officer"])
    with django_assert_max_num_queries(6):
        assert api.get("/api/releases/").json()["count"] == 11


def test_run_list_rows_leave_out_the_provenance(light_world):
    api = api_client_for(light_world["users"]["officer"])
    row = api.get("/api/runs/").json()["results"][0]
    assert row["id"] == light_world["run"].pk and "provenance" not in row and "provenance_envelope" not in row
    assert "provenance" in api.get(f"/api/runs/{row['id']}/").json()
