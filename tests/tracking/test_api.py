"""The external-run API: create, list (declared filters), detail, log batch, metric history, finish, provenance,
engineer keys. Every run output says source external, verification reported; bad input is a 4xx in the error
model naming the field, with nothing stored; one ledger event per request; roles and ownership."""

import json

import pytest

from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tracking.models import EngineerKey, ExternalRun, ExternalRunMetric, ExternalRunProvenance
from trust.dsse import dsse_sign_json

from .conftest import new_key, statement

pytestmark = pytest.mark.django_db
REPORTED = {"source": "external", "verification": "reported"}


@pytest.fixture
def api(world):
    return {name: api_client_for(world[name]) for name in ("eve", "oscar", "officer", "admin")}


def _error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    return body


def _events() -> int:
    return LedgerEvent.objects.count()


def _create(api, world, **fields):
    body = {"experiment": world["experiments"]["eve"].pk, "method": "GPTQ 4-bit", **fields}
    return api["eve"].post("/api/external-runs/", body, format="json")


def test_create_list_detail_say_external_and_reported(api, world):
    arts = world["artifacts"]["eve"]
    response = _create(
        api,
        world,
        known_method="dynamic_int8",
        parameters={"bits": 4},
        code_reference={"url": "https://git.example.org/q.git", "commit": "abc123"},
        tool_versions={"auto-gptq": "0.7.1"},
        hardware={"gpu": "A100"},
        seeds=[7],
        tags={"team": "safety"},
        input_artifacts=[arts["base"].pk],
        output_artifact=arts["output"].pk,
        started_at="2026-11-01T10:00:00Z",
    )
    assert response.status_code == 201, response.json()
    run = response.json()
    assert {k: run[k] for k in REPORTED} == REPORTED
    assert run["tags"] == {"team": "safety"} and run["params"] == {} and run["metrics"] == []
    assert run["input_artifacts"] == [arts["base"].pk] and run["output_artifact"] == arts["output"].pk
    assert run["started_at"] == "2026-11-01T10:00:00Z" and run["status"] == "running"
    assert run["recorded_by"] == "eve" and run["known_method"] == "dynamic_int8"

    rows = api["officer"].get("/api/external-runs/").json()["results"]
    assert [r["id"] for r in rows] == [run["id"]] and {k: rows[0][k] for k in REPORTED} == REPORTED
    assert "params" not in rows[0] and "provenance" not in rows[0]  # list rows are summaries
    detail = api["officer"].get(f"/api/external-runs/{run['id']}/").json()
    assert detail["code_reference"] == {"url": "https://git.example.org/q.git", "commit": "abc123"}
    assert {k: detail[k] for k in REPORTED} == REPORTED


def test_list_filters_by_experiment_and_status(api, world, eve_run, oscar_run):
    def ids(query):
        response = api["officer"].get(f"/api/external-runs/?{query}")
        assert response.status_code == 200, response.json()
        return sorted(r["id"] for r in response.json()["results"])

    assert ids("") == sorted([eve_run.pk, oscar_run.pk])
    assert ids(f"experiment={world['experiments']['eve'].pk}") == [eve_run.pk]
    api["eve"].post(f"/api/external-runs/{eve_run.pk}/finish/", {"status": "failed"}, format="json")
    assert ids("status=failed") == [eve_run.pk] and ids("status=running") == [oscar_run.pk]
    assert [r["id"] for r in api["eve"].get("/api/external-runs/").json()["results"]] == [eve_run.pk]
    assert "status" in _error(api["officer"].get("/api/external-runs/?status=done"), 400)["details"]
    assert "experiment" in _error(api["officer"].get("/api/external-runs/?experiment=x"), 400)["details"]


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"method": ""}, "method"),
        ({"experiment": "one"}, "experiment"),
        ({"experiment": 999999}, "experiment"),
        ({"known_method": "gptq"}, "known_method"),
        ({"seeds": [2**63]}, "seeds"),
        ({"tags": {"a/../b": "v"}}, "tags.a/../b"),
        ({"input_artifacts": [999999]}, "input_artifacts[0]"),
        ({"output_artifact": 999999}, "output_artifact"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"code_reference": {"url": "u" * 2001}}, "code_reference"),
    ],
)
def test_bad_create_is_400_naming_the_field_and_stores_nothing(api, world, fields, name):
    events = _events()
    body = _error(_create(api, world, **fields), 400)
    assert name in body["details"], body
    assert ExternalRun.objects.count() == 0 and _events() == events


def test_another_engineer_s_experiment_is_unknown(api, world):
    response = api["oscar"].post(
        "/api/external-runs/", {"experiment": world["experiments"]["eve"].pk, "method": "AWQ"}, format="json"
    )
    assert "experiment" in _error(response, 400)["details"]


def test_log_batch_one_event_per_request_and_metric_history(api, world, eve_run):
    url = f"/api/external-runs/{eve_run.pk}/"
    metrics = [{"key": "loss", "value": 10 - i, "step": i, "timestamp": 1000 + i} for i in range(7)]
    metrics += [{"key": "eval/acc", "value": 0.9, "step": 0}]
    events = _events()
    response = api["eve"].post(
        url + "log/",
        {"params": [{"key": "bits", "value": "4"}], "metrics": metrics, "tags": [{"key": "t", "value": "v"}]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    out = response.json()
    assert (out["params_added"], out["metrics_added"], out["tags_set"]) == (1, 8, 1) and len(out["digest"]) == 64
    assert {k: out[k] for k in REPORTED} == REPORTED
    assert _events() == events + 1
    assert LedgerEvent.objects.latest("id").action == "external_run.logged"

    page = api["officer"].get(url + "metrics/?key=loss&page_size=3").json()
    assert page["count"] == 7 and [m["step"] for m in page["results"]] == [0, 1, 2]
    assert page["results"][0] == {"key": "loss", "value": 10.0, "step": 0, "timestamp": 1000}
    assert {k: page[k] for k in REPORTED} == REPORTED
    last = api["officer"].get(url + "metrics/?key=loss&page_size=3&page=3").json()
    assert [m["step"] for m in last["results"]] == [6]
    assert api["officer"].get(url + "metrics/").json()["count"] == 8
    assert api["officer"].get(url + "metrics/?key=nothing").json()["count"] == 0
    detail = api["eve"].get(url).json()
    assert detail["params"] == {"bits": "4"} and detail["tags"] == {"t": "v"}
    assert {m["key"]: (m["count"], m["latest_value"]) for m in detail["metrics"]} == {
        "eval/acc": (1, 0.9),
        "loss": (7, 4.0),
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metrics": [{"key": "a", "value": 1}, {"key": "a", "value": "high"}]}, "metrics[1].value"),
        ({"metrics": [{"key": "a", "value": 1, "step": 2**63}]}, "metrics[0].step"),
        ({"metrics": [{"key": "a", "value": 1, "step": -(2**63) - 1}]}, "metrics[0].step"),
        ({"metrics": [{"key": "a"}]}, "metrics[0].value"),
        ({"metrics": "a=1"}, "metrics"),
        ({"metrics": [], "tags": None}, "tags"),
        ({"params": [{"key": "p", "value": 4}]}, "params[0].value"),
        ({"tags": [{"key": "/t", "value": "v"}]}, "tags[0].key"),
        ([{"key": "a", "value": 1}], "non_field_errors"),
    ],
)
def test_bad_batches_are_400_naming_the_item_and_store_nothing(api, eve_run, body, field):
    events = _events()
    response = api["eve"].post(f"/api/external-runs/{eve_run.pk}/log/", body, format="json")
    assert list(_error(response, 400)["details"]) == [field]
    assert eve_run.metrics.count() == eve_run.params.count() == eve_run.tags.count() == 0 and _events() == events


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinities_in_the_json_are_refused(api, eve_run, literal):
    raw = '{"metrics": [{"key": "a", "value": LITERAL}]}'.replace("LITERAL", literal)
    response = api["eve"].post(f"/api/external-runs/{eve_run.pk}/log/", raw, content_type="application/json")
    body = _error(response, 400)
    assert body["code"] == "parse_error" or list(body["details"]) == ["metrics[0].value"], body
    assert ExternalRunMetric.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("log/", [1, 2]),
        ("log/", {"metrics": [{"key": "a", "value": "x"}]}),
        ("finish/", {"status": "running"}),
        ("provenance/", {}),
        ("provenance/", {"envelope": "x"}),
    ],
)
def test_who_before_what_another_engineer_gets_404_whatever_they_send(api, eve_run, path, body):
    assert _error(api["oscar"].post(f"/api/external-runs/{eve_run.pk}/{path}", body, format="json"), 404)
    assert _error(api["admin"].post(f"/api/external-runs/{eve_run.pk}/{path}", body, format="json"), 403)


def test_a_changed_param_is_400_param_changed(api, eve_run):
    url = f"/api/external-runs/{eve_run.pk}/log/"
    assert api["eve"].post(url, {"params": [{"key": "bits", "value": "4"}]}, format="json").status_code == 200
    body = _error(api["eve"].post(url, {"params": [{"key": "bits", "value": "8"}]}, format="json"), 400)
    assert body["code"] == "param_changed" and list(body["details"]) == ["params[0].value"]


def test_finish_then_the_record_is_closed(api, world, eve_run):
    url = f"/api/external-runs/{eve_run.pk}/"
    output = world["artifacts"]["eve"]["output"]
    response = api["eve"].post(url + "finish/", {"output_artifact": output.pk}, format="json")
    assert response.status_code == 200, response.json()
    run = response.json()
    assert run["status"] == "finished" and run["output_artifact"] == output.pk and len(run["contents_digest"]) == 64
    events = _events()
    body = _error(api["eve"].post(url + "log/", {"metrics": [{"key": "a", "value": 1}]}, format="json"), 409)
    assert body["code"] == "run_finished"
    assert _error(api["eve"].post(url + "finish/", {}, format="json"), 409)["code"] == "run_finished"
    assert _events() == events


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "running"}, "status"),
        ({"ended_at": "2000-01-01T00:00:00Z"}, "ended_at"),
        ({"output_artifact": 999999}, "output_artifact"),
    ],
)
def test_bad_finish_is_400_naming_the_field(api, eve_run, body, field):
    assert (
        field
        in _error(api["eve"].post(f"/api/external-runs/{eve_run.pk}/finish/", body, format="json"), 400)["details"]
    )
    eve_run.refresh_from_db()
    assert eve_run.status == "running"


def test_keys_and_signed_provenance(api, world, eve_run):
    private, pem = new_key()
    response = api["eve"].post("/api/engineer-keys/", {"public_key": pem, "name": "laptop"}, format="json")
    assert response.status_code == 201, response.json()
    key = response.json()
    assert api["eve"].post("/api/engineer-keys/", {"public_key": pem}, format="json").status_code == 200
    assert _error(api["oscar"].post("/api/engineer-keys/", {"public_key": pem}, format="json"), 409)["code"] == (
        "key_registered"
    )
    body = _error(api["eve"].post("/api/engineer-keys/", {"public_key": "nope"}, format="json"), 400)
    assert body["code"] == "invalid_key" and "public_key" in body["details"]
    assert [k["key_id"] for k in api["eve"].get("/api/engineer-keys/").json()["results"]] == [key["key_id"]]
    assert api["oscar"].get("/api/engineer-keys/").json()["results"] == []
    assert len(api["officer"].get("/api/engineer-keys/").json()["results"]) == 1

    url = f"/api/external-runs/{eve_run.pk}/provenance/"
    good = api["eve"].post(url, {"envelope": dsse_sign_json(statement(), private)}, format="json")
    assert good.status_code == 201, good.json()
    assert good.json()["signature_verified"] is True and good.json()["key_id"] == key["key_id"]
    assert {k: good.json()[k] for k in REPORTED} == REPORTED
    assert good.json()["subject_matches_output"] is None  # the run names no output yet

    stranger, _ = new_key()
    bad = api["eve"].post(url, {"envelope": dsse_sign_json(statement(), stranger)}, format="json")
    assert bad.status_code == 201 and bad.json()["signature_verified"] is False
    assert "No signature verifies" in bad.json()["verification_reason"]

    output = world["artifacts"]["eve"]["output"]
    api["eve"].post(f"/api/external-runs/{eve_run.pk}/finish/", {"output_artifact": output.pk}, format="json")
    matching = api["eve"].post(url, {"envelope": dsse_sign_json(statement(output.digest), private)}, format="json")
    assert matching.status_code == 201 and matching.json()["subject_matches_output"] is True
    detail = api["officer"].get(f"/api/external-runs/{eve_run.pk}/").json()
    assert [(p["signature_verified"], p["subject_matches_output"]) for p in detail["provenance"]] == [
        (True, False),
        (False, False),
        (True, True),
    ]

    events = _events()
    for envelope in ({"payloadType": "x"}, "text"):
        body = _error(api["eve"].post(url, {"envelope": envelope}, format="json"), 400)
        assert body["code"] == "invalid_envelope"
    assert "envelope" in _error(api["eve"].post(url, {}, format="json"), 400)["details"]
    assert ExternalRunProvenance.objects.count() == 3 and _events() == events
    assert EngineerKey.objects.count() == 1


ENDPOINTS = [
    ("get", "/api/external-runs/", None),
    ("get", "/api/external-runs/{run}/", None),
    ("get", "/api/external-runs/{run}/metrics/", None),
    ("get", "/api/engineer-keys/", None),
    ("post", "/api/external-runs/", {"experiment": "{experiment}", "method": "AWQ"}),
    ("post", "/api/external-runs/{run}/log/", {"metrics": [{"key": "a", "value": 1}]}),
    ("post", "/api/external-runs/{run}/provenance/", {"envelope": "x"}),
    ("post", "/api/external-runs/{run}/finish/", {}),
    ("post", "/api/engineer-keys/", {"public_key": "x"}),
]
# Expected status per role: the run and experiment are eve's.
EXPECTED = {
    "eve": (200, 200, 200, 200, 201, 200, 400, 200, 400),
    "oscar": (200, 404, 404, 200, 400, 404, 404, 404, 400),
    "officer": (200, 200, 200, 200, 403, 403, 403, 403, 403),
    "admin": (200, 200, 200, 200, 403, 403, 403, 403, 400),
    "reviewer": (403,) * 9,
    "regulator": (403,) * 9,
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_roles_and_ownership(world, make_user, role, eve_run):
    user = world.get(role) or make_user(role[:3] + "1", role)
    client = api_client_for(user)
    got = []
    for method, template, body in ENDPOINTS:
        path = template.format(run=eve_run.pk)
        if body is not None:
            body = json.loads(json.dumps(body).replace('"{experiment}"', str(world["experiments"]["eve"].pk)))
        response = client.post(path, body, format="json") if method == "post" else client.get(path)
        got.append(response.status_code)
    assert tuple(got) == EXPECTED[role]
    # A role refused by HasRole is recorded (one access.denied each); an admin passes HasRole, and the services'
    # ownership refusals (403) are not access records.
    denied = LedgerEvent.objects.filter(action="access.denied", actor_username=user.username).count()
    assert denied == (0 if role == "admin" else got.count(403))


def test_anonymous_is_refused(client, eve_run):
    for method, template, _ in ENDPOINTS:
        response = getattr(client, method)(template.format(run=eve_run.pk))
        assert response.status_code in (401, 403)
