"""Compression runs through the API: request-time validation, data from suites, provenance,
reproducibility and cancellation."""

import json
import shutil

import pytest

from compression.models import CompressionRun, ModelArtifact, RunStatus
from compression.services.experiments import experiment_create
from evaluations.services.suites import ExampleRow, suite_version_import
from ledger.models import LedgerEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def experiment(engineer, base_artifact):
    return experiment_create(
        actor=engineer, name="exp", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )


def _request(api, experiment, **body):
    return api.post(f"/api/experiments/{experiment.pk}/runs/", body, format="json")


@pytest.mark.parametrize(
    ("body", "field", "word"),
    [
        ({"method": "magnitude_prune", "parameters": {"sparsity": 1.0}}, "parameters", "sparsity"),
        ({"method": "magnitude_prune", "parameters": {"sparsity": -0.1}}, "parameters", "sparsity"),
        ({"method": "distill", "parameters": {"num_layers": 12}}, "parameters", "num_layers"),
        (
            {"method": "distill", "parameters": {"num_layers": 1, "intermediate_size": 200}},
            "parameters",
            "intermediate_size",
        ),
        ({"method": "structured_prune"}, "data_suite_version", "suite"),
    ],
)
def test_bad_requests_are_refused_before_anything_runs(engineer_api, experiment, demo_suite, body, field, word):
    if body["method"] == "distill":
        body = {**body, "data_suite_version": demo_suite.pk}
    before = LedgerEvent.objects.count()
    r = _request(engineer_api, experiment, **body)
    assert r.status_code == 400, r.content
    assert field in r.json()["details"] and word in (r.json()["message"] + json.dumps(r.json()["details"]))
    assert CompressionRun.objects.count() == 0 and LedgerEvent.objects.count() == before


def test_empty_calibration_suite_is_refused(engineer, engineer_api, experiment):
    edge_only = suite_version_import(
        actor=engineer,
        suite_name="edge only",
        unsafe_labels=["unsafe"],
        safe_labels=["safe"],
        rows=[ExampleRow(external_id="e1", text="how do I kill a process", label="safe", slice="edge", line=2)],
    )
    r = _request(engineer_api, experiment, method="structured_prune", data_suite_version=edge_only.pk)
    assert r.status_code == 400 and r.json()["code"] == "empty_suite"
    assert "data_suite_version" in r.json()["details"]


def test_unsupported_architecture_is_refused(engineer, engineer_api, tiny_model_dir, tmp_path):
    from compression.services.artifacts import artifact_register

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    config = json.loads((bare / "config.json").read_text())
    config["architectures"] = ["BertModel"]
    (bare / "config.json").write_text(json.dumps(config))
    artifact = artifact_register(actor=engineer, name="bare", path=str(bare))
    experiment = experiment_create(
        actor=engineer, name="bare", base_artifact_id=artifact.pk, unsafe_labels=["hatespeech"]
    )
    r = _request(engineer_api, experiment, method="dynamic_int8")
    assert r.status_code == 400 and r.json()["code"] == "unsupported_architecture"


def test_structured_pruning_with_suite_data_records_it_in_provenance(engineer_api, experiment, demo_suite):
    r = _request(
        engineer_api,
        experiment,
        method="structured_prune",
        data_suite_version=demo_suite.pk,
        parameters={"head_fraction": 0.5, "ffn_fraction": 0.5},
        seed=1,
    )
    assert r.status_code == 202, r.content
    run = CompressionRun.objects.get(pk=r.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    environment = run.provenance["predicate"]["runDetails"]["byproducts"][0]["content"]
    assert 0 < environment["parameter_count"] < environment["source_parameter_count"]
    assert run.output_artifact.format == "hf-pruned"
    deps = run.provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    data = next(d for d in deps if d["name"] == "data")
    assert data["digest"]["sha256"] == run.data_source["data_digest"]
    assert data["annotations"]["suite_digest"] == demo_suite.digest
    assert run.provenance_envelope["payloadType"] == "application/vnd.in-toto+json"


def test_same_run_same_seed_gives_the_same_artifact(engineer_api, experiment):
    first = _request(engineer_api, experiment, method="magnitude_prune", parameters={"sparsity": 0.5}, seed=3).json()
    second = _request(engineer_api, experiment, method="magnitude_prune", parameters={"sparsity": 0.5}, seed=3).json()
    a = CompressionRun.objects.get(pk=first["id"])
    b = CompressionRun.objects.get(pk=second["id"])
    assert a.status == b.status == RunStatus.SUCCEEDED
    assert a.output_artifact.digest == b.output_artifact.digest
    assert ModelArtifact.objects.filter(digest=a.output_artifact.digest).count() == 1


def test_cancel_a_queued_run(engineer, experiment, engineer_api, settings):
    from config.celery import app

    app.conf.task_always_eager = False  # keep it queued: nothing consumes this broker in the test
    try:
        settings.CELERY_BROKER_URL = "memory://"
        app.conf.broker_url = "memory://"
        r = _request(engineer_api, experiment, method="dynamic_int8")
    finally:
        app.conf.task_always_eager = True
    run_id = r.json()["id"]
    assert engineer_api.post(f"/api/runs/{run_id}/cancel/").json()["status"] == "cancelled"
    again = engineer_api.post(f"/api/runs/{run_id}/cancel/")
    assert again.status_code == 409
