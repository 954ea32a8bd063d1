"""MLflow's protocol at /mlflow, route by route, with Django's test client: what each route answers, and that bad
input is a 4xx in MLflow's error format naming the field, with nothing stored."""

import hashlib
import json

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from ledger.models import LedgerEvent
from tracking.models import (
    ExternalRun,
    ExternalRunMetric,
    ExternalRunParam,
    ExternalRunTag,
    RegisteredModelVersion,
    RunArtifactFile,
)

API = "/mlflow/api/2.0/mlflow"
ARTIFACTS = "/mlflow/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture(autouse=True)
def _roots(settings, tmp_path):
    settings.SAFESHRINK = {
        **settings.SAFESHRINK,
        "ARTIFACT_ROOT": tmp_path / "store",
        "TRACKING_ARTIFACT_ROOT": tmp_path / "runs",
    }


class Mlflow:
    """A test client that speaks MLflow's protocol with an engineer's API token (Bearer, as the client sends)."""

    def __init__(self, user, scheme="Bearer"):
        self.client = Client()
        token, _ = Token.objects.get_or_create(user=user)
        self.auth = {"HTTP_AUTHORIZATION": f"{scheme} {token.key}"}

    def post(self, route, body, raw=None):
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(f"{API}/{route}", data, content_type="application/json", **self.auth)

    def get(self, route, **params):
        return self.client.get(f"{API}/{route}", params, **self.auth)

    def put_file(self, exp, run_id, path, content: bytes):
        url = f"{ARTIFACTS}/{exp}/{run_id}/artifacts/{path}"
        return self.client.put(url, content, content_type="application/octet-stream", **self.auth)

    def list_files(self, exp, run_id, folder=""):
        path = f"{exp}/{run_id}/artifacts" + (f"/{folder}" if folder else "")
        return self.client.get(ARTIFACTS, {"path": path}, **self.auth)


@pytest.fixture
def eve(world):
    return Mlflow(world["eve"])


@pytest.fixture
def run(world, eve):
    exp = world["experiments"]["eve"]
    response = eve.post(
        "runs/create",
        {"experiment_id": str(exp.pk), "start_time": 1700000000000, "run_name": "try", "tags": []},
    )
    assert response.status_code == 200, response.content
    return response.json()["run"]["info"]


def _mlflow_error(response, status, error_code, *fields):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error_code"] == error_code, body
    for field in fields:
        assert field in body["message"], body
    return body


def _counts():
    return (
        ExternalRunParam.objects.count(),
        ExternalRunMetric.objects.count(),
        ExternalRunTag.objects.count(),
        RunArtifactFile.objects.count(),
        LedgerEvent.objects.count(),
    )


# -- experiments --------------------------------------------------------------------------------------------------


def test_experiment_by_name_and_id(world, eve):
    exp = world["experiments"]["eve"]
    got = eve.get("experiments/get-by-name", experiment_name=exp.name).json()["experiment"]
    assert got["experiment_id"] == str(exp.pk) and got["name"] == exp.name and got["lifecycle_stage"] == "active"
    assert eve.get("experiments/get", experiment_id=str(exp.pk)).json()["experiment"]["name"] == exp.name
    _mlflow_error(eve.get("experiments/get-by-name", experiment_name="nope"), 404, "RESOURCE_DOES_NOT_EXIST")
    oscar_exp = world["experiments"]["oscar"]  # another engineer's experiment: unknown
    _mlflow_error(eve.get("experiments/get", experiment_id=str(oscar_exp.pk)), 404, "RESOURCE_DOES_NOT_EXIST")


def test_experiment_create_needs_the_base_model_tags(world, eve):
    before = _counts()
    body = _mlflow_error(eve.post("experiments/create", {"name": "new"}), 400, "INVALID_PARAMETER_VALUE")
    assert "tags.safeshrink.base_artifact" in body["message"] and "tags.safeshrink.unsafe_labels" in body["message"]
    assert _counts() == before
    base = world["artifacts"]["eve"]["base"]
    tags = [
        {"key": "safeshrink.base_artifact", "value": base.digest},
        {"key": "safeshrink.unsafe_labels", "value": "offensive"},
    ]
    created = eve.post("experiments/create", {"name": "new", "tags": tags})
    assert created.status_code == 200, created.content
    exp_id = created.json()["experiment_id"]
    assert eve.get("experiments/get-by-name", experiment_name="new").json()["experiment"]["experiment_id"] == exp_id
    _mlflow_error(eve.post("experiments/create", {"name": "new", "tags": tags}), 400, "RESOURCE_ALREADY_EXISTS")


# -- runs and logging ---------------------------------------------------------------------------------------------


def test_run_create_get_and_defaults(world, eve, run):
    assert run["status"] == "RUNNING" and run["run_name"] == "try" and run["start_time"] == 1700000000000
    assert run["artifact_uri"] == f"mlflow-artifacts:/{run['experiment_id']}/{run['run_id']}/artifacts"
    record = ExternalRun.objects.get(run_uuid=run["run_id"])
    assert record.method == "reported via MLflow" and record.name == "try"
    got = eve.get("runs/get", run_id=run["run_id"]).json()["run"]
    assert got["info"]["run_id"] == run["run_id"] and got["data"] == {"metrics": [], "params": [], "tags": []}


def test_method_tag_names_the_method(world, eve):
    exp = world["experiments"]["eve"]
    tags = [{"key": "safeshrink.method", "value": "AWQ 4-bit"}, {"key": "mlflow.source.git.commit", "value": "abc"}]
    info = eve.post("runs/create", {"experiment_id": str(exp.pk), "tags": tags}).json()["run"]["info"]
    record = ExternalRun.objects.get(run_uuid=info["run_id"])
    assert record.method == "AWQ 4-bit" and record.code_reference == {"commit": "abc"}


def test_token_scheme_also_accepted_and_no_token_is_401(world, run):
    assert Mlflow(world["eve"], scheme="Token").get("runs/get", run_id=run["run_id"]).status_code == 200
    _mlflow_error(Client().get(f"{API}/runs/get", {"run_id": run["run_id"]}), 401, "UNAUTHENTICATED")


def test_anonymous_refusals_are_counted_into_one_ledger_event_per_window(world, settings, monkeypatch):
    from accounts import services as accounts_services
    from ledger.models import LedgerEvent

    settings.SAFESHRINK = {**settings.SAFESHRINK, "ANONYMOUS_REFUSAL_WINDOW_SECONDS": 60}
    now = [6_000_000.0]
    monkeypatch.setattr(accounts_services, "_now", lambda: now[0])
    for _ in range(3):
        _mlflow_error(
            Client().post(f"{API}/runs/log-metric", {}, content_type="application/json"), 401, "UNAUTHENTICATED"
        )
    assert not LedgerEvent.objects.filter(action="access.denied_anonymous").exists()
    now[0] += 60  # the window closed: the next refusal writes its total as one event
    Client().get(f"{API}/runs/get", {"run_id": "x"})
    [event] = LedgerEvent.objects.filter(action="access.denied_anonymous")
    assert json.loads(event.payload_json)["count"] == 3


def test_log_metric_param_tag_and_batch(eve, run):
    rid = run["run_id"]
    assert (
        eve.post("runs/log-metric", {"run_id": rid, "key": "loss", "value": 0.5, "step": 1, "timestamp": 7}).json()
        == {}
    )
    assert (
        eve.post(
            "runs/log-metric", {"run_id": rid, "key": "loss", "value": 0.25, "step": 2, "timestamp": 8}
        ).status_code
        == 200
    )
    assert eve.post("runs/log-parameter", {"run_id": rid, "key": "bits", "value": "4"}).status_code == 200
    assert eve.post("runs/log-parameter", {"run_id": rid, "key": "bits", "value": "4"}).status_code == 200  # same
    assert eve.post("runs/set-tag", {"run_id": rid, "key": "team", "value": "a"}).status_code == 200
    assert eve.post("runs/set-tag", {"run_id": rid, "key": "team", "value": "b"}).status_code == 200
    metrics = [{"key": "ppl", "value": 10 - i, "timestamp": 100 + i, "step": i} for i in range(1000)]
    events = LedgerEvent.objects.count()
    batch = eve.post("runs/log-batch", {"run_id": rid, "metrics": metrics, "params": [], "tags": []})
    assert batch.status_code == 200, batch.content
    assert LedgerEvent.objects.count() == events + 1  # one event per request
    run_row = ExternalRun.objects.get(run_uuid=rid)
    assert run_row.metrics.filter(key="ppl").count() == 1000
    history = eve.get("metrics/get-history", run_id=rid, metric_key="loss").json()["metrics"]
    assert [(m["step"], m["value"], m["timestamp"]) for m in history] == [(1, 0.5, 7), (2, 0.25, 8)]
    data = eve.get("runs/get", run_id=rid).json()["run"]["data"]
    latest = {m["key"]: (m["value"], m["step"]) for m in data["metrics"]}
    assert latest == {"loss": (0.25, 2), "ppl": (10 - 999, 999)}
    assert data["params"] == [{"key": "bits", "value": "4"}] and data["tags"] == [{"key": "team", "value": "b"}]


def test_metric_values_in_proto_json_form(eve, run):
    """int64 as strings of digits and numeric strings are proto3 JSON, as some clients send them."""
    ok = eve.post(
        "runs/log-metric", {"run_id": run["run_id"], "key": "m", "value": "1.5", "step": "3", "timestamp": "9"}
    )
    assert ok.status_code == 200, ok.content
    assert ExternalRunMetric.objects.get(key="m").step == 3


@pytest.mark.parametrize(
    "body, field",
    [
        ({"key": "m", "value": "NaN", "timestamp": 1}, "metrics[0].value"),
        ({"key": "m", "value": "Infinity", "timestamp": 1}, "metrics[0].value"),
        ({"key": "m", "value": "abc", "timestamp": 1}, "metrics[0].value"),
        ({"key": "m", "value": True, "timestamp": 1}, "metrics[0].value"),
        ({"key": "m", "value": 1.0, "step": 2**63, "timestamp": 1}, "metrics[0].step"),
        ({"key": "m", "value": 1.0, "step": -(2**63) - 1, "timestamp": 1}, "metrics[0].step"),
        ({"key": "../m", "value": 1.0, "timestamp": 1}, "metrics[0].key"),
    ],
)
def test_bad_metric_is_refused_naming_the_field(eve, run, body, field):
    before = _counts()
    _mlflow_error(eve.post("runs/log-metric", {"run_id": run["run_id"], **body}), 400, "INVALID_PARAMETER_VALUE", field)
    assert _counts() == before


def test_nan_literal_in_a_batch_refuses_the_whole_batch(eve, run):
    before = _counts()
    raw = (
        '{"run_id": "' + run["run_id"] + '", "params": [{"key": "a", "value": "1"}], '
        '"metrics": [{"key": "ok", "value": 1, "timestamp": 1}, {"key": "m", "value": NaN, "timestamp": 1}]}'
    )
    _mlflow_error(eve.post("runs/log-batch", None, raw=raw), 400, "INVALID_PARAMETER_VALUE", "metrics[1].value")
    assert _counts() == before


def test_changed_param_is_refused(eve, run):
    eve.post("runs/log-parameter", {"run_id": run["run_id"], "key": "bits", "value": "4"})
    before = _counts()
    changed = eve.post("runs/log-batch", {"run_id": run["run_id"], "params": [{"key": "bits", "value": "8"}]})
    _mlflow_error(changed, 400, "INVALID_PARAMETER_VALUE", "params[0].value")
    assert _counts() == before


def test_unknown_run_and_another_engineers_run(world, eve, run):
    before = _counts()
    body = {"run_id": "0" * 32, "key": "m", "value": 1.0, "timestamp": 1}
    _mlflow_error(eve.post("runs/log-metric", body), 404, "RESOURCE_DOES_NOT_EXIST")
    oscar = Mlflow(world["oscar"])
    for response in (
        oscar.post("runs/log-metric", {**body, "run_id": run["run_id"]}),
        oscar.get("runs/get", run_id=run["run_id"]),
        oscar.put_file(run["experiment_id"], run["run_id"], "model/x.bin", b"x"),
    ):
        assert response.status_code in (403, 404)
        assert response.json()["error_code"] in ("PERMISSION_DENIED", "RESOURCE_DOES_NOT_EXIST")
    officer = Mlflow(world["officer"])  # sees every run, writes none
    assert officer.get("runs/get", run_id=run["run_id"]).status_code == 200
    _mlflow_error(officer.post("runs/log-metric", {**body, "run_id": run["run_id"]}), 403, "PERMISSION_DENIED")
    assert _counts() == before


def test_missing_run_id_and_malformed_json(eve):
    _mlflow_error(eve.post("runs/log-metric", {"key": "m", "value": 1}), 400, "INVALID_PARAMETER_VALUE", "run_id")
    _mlflow_error(eve.post("runs/log-batch", None, raw="{not json"), 400, "INVALID_PARAMETER_VALUE", "body")
    _mlflow_error(eve.post("runs/log-batch", None, raw="[1]"), 400, "INVALID_PARAMETER_VALUE", "body")


def test_end_run_and_ended_run_takes_no_logging(eve, run):
    rid = run["run_id"]
    ended = eve.post("runs/update", {"run_id": rid, "status": "FINISHED", "end_time": 1700000001000})
    assert ended.json()["run_info"]["status"] == "FINISHED" and ended.json()["run_info"]["end_time"] == 1700000001000
    assert ExternalRun.objects.get(run_uuid=rid).contents_digest
    _mlflow_error(eve.post("runs/log-metric", {"run_id": rid, "key": "m", "value": 1.0}), 409, "INVALID_STATE")
    _mlflow_error(eve.post("runs/update", {"run_id": rid, "status": "DONE"}), 400, "INVALID_PARAMETER_VALUE", "status")


def test_search_runs_with_filters_and_pages(world, eve):
    exp = world["experiments"]["eve"]
    ids = []
    for i in range(3):
        info = eve.post("runs/create", {"experiment_id": str(exp.pk), "start_time": 1700000000000 + i}).json()["run"]
        ids.append(info["info"]["run_id"])
        eve.post("runs/log-parameter", {"run_id": ids[-1], "key": "bits", "value": str(4 * (i + 1))})
        eve.post("runs/log-metric", {"run_id": ids[-1], "key": "acc", "value": 0.5 + i / 10, "timestamp": 1})
    search = {"experiment_ids": [str(exp.pk)]}
    assert [r["info"]["run_id"] for r in eve.post("runs/search", search).json()["runs"]] == ids[::-1]
    by_param = eve.post("runs/search", {**search, "filter": "params.bits = '8'"}).json()["runs"]
    assert [r["info"]["run_id"] for r in by_param] == [ids[1]]
    by_metric = eve.post("runs/search", {**search, "filter": "metrics.acc >= 0.6 and attributes.status = 'RUNNING'"})
    assert [r["info"]["run_id"] for r in by_metric.json()["runs"]] == [ids[2], ids[1]]
    page1 = eve.post("runs/search", {**search, "max_results": 2, "order_by": ["attributes.start_time ASC"]}).json()
    page2 = eve.post("runs/search", {**search, "max_results": 2, "page_token": page1["next_page_token"]}).json()
    assert [r["info"]["run_id"] for r in page1["runs"]] == ids[:2] and len(page2["runs"]) == 1
    _mlflow_error(eve.post("runs/search", {**search, "filter": "params.bits ~ 4"}), 400, "INVALID_PARAMETER_VALUE")
    oscar_runs = Mlflow(world["oscar"]).post("runs/search", search).json()
    assert oscar_runs.get("runs", []) == []


# -- artifacts ----------------------------------------------------------------------------------------------------


def test_log_list_and_download_artifacts(eve, run, settings):
    exp, rid = run["experiment_id"], run["run_id"]
    for path, content in (("model/config.json", b"{}"), ("model/sub/w.bin", b"abc"), ("notes.txt", b"n")):
        response = eve.put_file(exp, rid, path, content)
        assert response.status_code == 200, response.content
    stored = RunArtifactFile.objects.get(path="model/sub/w.bin")
    assert stored.sha256 == hashlib.sha256(b"abc").hexdigest() and stored.size == 3
    assert (settings.SAFESHRINK["TRACKING_ARTIFACT_ROOT"] / rid / "model/sub/w.bin").read_bytes() == b"abc"
    root = eve.list_files(exp, rid).json()["files"]
    assert [(f["path"], f["is_dir"]) for f in root] == [("model", True), ("notes.txt", False)]
    model = eve.list_files(exp, rid, "model").json()["files"]
    assert model == [{"path": "config.json", "is_dir": False, "file_size": 2}, {"path": "sub", "is_dir": True}]
    listed = eve.get("artifacts/list", run_id=rid, path="model").json()["files"]
    assert [f["path"] for f in listed] == ["model/config.json", "model/sub"]
    download = eve.client.get(f"{ARTIFACTS}/{exp}/{rid}/artifacts/model/sub/w.bin", **eve.auth)
    assert b"".join(download.streaming_content) == b"abc"


@pytest.mark.parametrize("path", ["model/../x", "model/./x", "model//x", "..%2Fx", "%2Fetc%2Fpasswd", "a%5Cb"])
def test_bad_artifact_paths_are_refused(eve, run, path):
    before = _counts()
    response = eve.put_file(run["experiment_id"], run["run_id"], path, b"x")
    assert response.status_code in (400, 404), response.content
    assert response.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "ENDPOINT_NOT_FOUND", "RESOURCE_DOES_NOT_EXIST")
    assert _counts() == before


def test_artifact_path_services_refuse_dotdot_absolute_and_links(eve, run, settings, tmp_path):
    from accounts.errors import ValidationFailed
    from tracking.services.run_artifacts import artifact_relative_path, run_artifact_put

    for bad in ("../x", "/etc/passwd", "a/../../b", "C:/x", "a\\b", ""):
        with pytest.raises(ValidationFailed) as refused:
            artifact_relative_path(bad)
        assert "path" in refused.value.details
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = settings.SAFESHRINK["TRACKING_ARTIFACT_ROOT"] / run["run_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "model").symlink_to(outside)
    import io

    from tracking.models import ExternalRun

    user = ExternalRun.objects.get(run_uuid=run["run_id"]).recorded_by
    with pytest.raises(ValidationFailed):
        run_artifact_put(actor=user, run_uuid=run["run_id"], path="model/x.bin", stream=io.BytesIO(b"x"), length=1)
    assert list(outside.iterdir()) == [] and not RunArtifactFile.objects.exists()


# -- model registration ---------------------------------------------------------------------------------------------


def _log_model(eve, run, files):
    for path, content in files.items():
        assert eve.put_file(run["experiment_id"], run["run_id"], f"model/{path}", content).status_code == 200


MODEL_FILES = {"config.json": json.dumps({"id2label": {"0": "normal", "1": "offensive"}}).encode(), "w.bin": b"w" * 99}


def test_register_model_from_a_runs_folder(world, eve, run):
    from compression.engine.manifest import manifest_digest
    from tracking.services.run_artifacts import tracking_artifact_root

    _log_model(eve, run, MODEL_FILES)
    created = eve.post("registered-models/create", {"name": "tiny"})
    assert created.json()["registered_model"]["name"] == "tiny"
    _mlflow_error(eve.post("registered-models/create", {"name": "tiny"}), 400, "RESOURCE_ALREADY_EXISTS")
    version = eve.post("model-versions/create", {"name": "tiny", "source": f"runs:/{run['run_id']}/model"})
    assert version.status_code == 200, version.content
    mv = version.json()["model_version"]
    assert mv["version"] == "1" and mv["status"] == "READY" and mv["run_id"] == run["run_id"]
    row = RegisteredModelVersion.objects.get()
    expected = manifest_digest(tracking_artifact_root() / run["run_id"] / "model")
    assert row.artifact.digest == expected
    assert ExternalRun.objects.get(run_uuid=run["run_id"]).output_artifact == row.artifact
    assert eve.get("model-versions/get", name="tiny", version="1").json()["model_version"]["version"] == "1"
    assert LedgerEvent.objects.filter(action="external_run.model_registered").count() == 1
    # the same folder through the logged model the client finds with search_logged_models
    found = eve.post("logged-models/search", {"experiment_ids": [run["experiment_id"]], "filter": "name = 'model'"})
    (model,) = found.json()["models"]
    assert model["info"]["source_run_id"] == run["run_id"]
    again = eve.post("model-versions/create", {"name": "tiny", "source": f"models:/{model['info']['model_id']}"})
    assert again.json()["model_version"]["version"] == "2"
    assert RegisteredModelVersion.objects.get(version=2).artifact == row.artifact


def test_register_refuses_files_changed_on_disk(world, eve, run):
    from tracking.services.run_artifacts import tracking_artifact_root

    _log_model(eve, run, MODEL_FILES)
    eve.post("registered-models/create", {"name": "tiny"})
    (tracking_artifact_root() / run["run_id"] / "model" / "w.bin").write_bytes(b"tampered")
    before = (RegisteredModelVersion.objects.count(), LedgerEvent.objects.count())
    refused = eve.post("model-versions/create", {"name": "tiny", "source": f"runs:/{run['run_id']}/model"})
    _mlflow_error(refused, 409, "INVALID_STATE", "model/w.bin")
    assert (RegisteredModelVersion.objects.count(), LedgerEvent.objects.count()) == before
    assert ExternalRun.objects.get(run_uuid=run["run_id"]).output_artifact is None


def test_register_needs_an_own_model_and_run(world, eve, run):
    _log_model(eve, run, MODEL_FILES)
    _mlflow_error(
        eve.post("model-versions/create", {"name": "none", "source": "runs:/x/model"}), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    oscar = Mlflow(world["oscar"])
    oscar.post("registered-models/create", {"name": "tiny"})
    stolen = oscar.post("model-versions/create", {"name": "tiny", "source": f"runs:/{run['run_id']}/model"})
    assert stolen.status_code in (403, 404) and not RegisteredModelVersion.objects.exists()
    eve.post("registered-models/create", {"name": "tiny"})
    bad = eve.post("model-versions/create", {"name": "tiny", "source": "s3://bucket/model"})
    _mlflow_error(bad, 400, "INVALID_PARAMETER_VALUE", "source")


# -- unsupported routes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, url",
    [
        ("post", f"{API}/experiments/delete"),
        ("get", f"{API}/traces"),
        ("post", "/mlflow/api/2.0/mlflow/runs/delete"),
        ("get", "/mlflow/ajax-api/2.0/mlflow/runs/get"),
        ("delete", f"{API}/runs/get"),
    ],
)
def test_unsupported_routes_answer_endpoint_not_found(eve, method, url):
    response = getattr(eve.client, method)(url, **eve.auth)
    _mlflow_error(response, 404, "ENDPOINT_NOT_FOUND")


def test_a_large_json_file_uploads_like_any_file(eve, run, settings):
    content = b'{"vocab": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
    url = f"{ARTIFACTS}/{run['experiment_id']}/{run['run_id']}/artifacts/model/tokenizer.json"
    response = eve.client.put(url, content, content_type="application/json", **eve.auth)
    assert response.status_code == 200
    assert RunArtifactFile.objects.get(path="model/tokenizer.json").size == len(content)
