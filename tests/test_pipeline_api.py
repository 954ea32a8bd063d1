"""The whole path through the API: register, experiment, compression run, release, evaluation,
gate, decision. Celery runs eagerly here; tests/test_worker.py runs the same path on a real worker."""

import pytest

from compression.engine.cpu import cpu_instruction_sets
from compression.models import CompressionRun, ModelArtifact, RunStatus
from evaluations.models import EvaluationRun, Flip, Prediction
from evaluations.services.prediction_files import evaluation_predictions
from governance.models import Decision, Release
from ledger.models import LedgerEvent
from ledger.verification import ledger_verify
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _import_roots(settings, tiny_model_dir):
    """The API imports models only from SAFESHRINK_IMPORT_ROOTS (none by default): allow the test model's folder."""
    settings.SAFESHRINK = {**settings.SAFESHRINK, "IMPORT_ROOTS": [tiny_model_dir.parent]}


def _start(engineer_api, tiny_model_dir, demo_suite, demo_policy, *, risk_tier="medium"):
    r = engineer_api.post("/api/artifacts/", {"name": "tiny", "path": str(tiny_model_dir)}, format="json")
    assert r.status_code == 201, r.content
    artifact = r.json()
    r = engineer_api.post(
        "/api/experiments/",
        {
            "name": "int8 tiny",
            "base_artifact": artifact["id"],
            "risk_tier": risk_tier,
            "unsafe_labels": ["hatespeech", "offensive"],
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    experiment = r.json()
    r = engineer_api.post(
        f"/api/experiments/{experiment['id']}/runs/", {"method": "dynamic_int8", "seed": 7}, format="json"
    )
    assert r.status_code == 202, r.content
    run = engineer_api.get(f"/api/runs/{r.json()['id']}/").json()
    assert run["status"] == "succeeded", run
    assert run["progress"] == {"stage": "done", "percent": 100}
    r = engineer_api.post(
        "/api/releases/",
        {"compression_run": run["id"], "suite_version": demo_suite.pk, "policy": demo_policy.pk},
        format="json",
    )
    assert r.status_code == 201, r.content
    release = r.json()
    r = engineer_api.post(
        f"/api/releases/{release['id']}/evaluate/", {"expected_version": release["version"]}, format="json"
    )
    assert r.status_code == 202, r.content
    return artifact, run, engineer_api.get(f"/api/releases/{release['id']}/").json()


def _review_blind(reviewers, release_id: int) -> int:
    """Each reviewer labels every task assigned to them; returns the number of reviews."""
    done = 0
    for reviewer in reviewers:
        api = api_client_for(reviewer)
        queue = api.get("/api/reviews/").json()["results"]
        for task in queue:
            assert "revealed" not in task and {"a", "b", "text"} <= set(task)
            r = api.post(f"/api/reviews/{task['id']}/", {"label": "acceptable", "note": "same meaning"}, format="json")
            assert r.status_code == 200, r.content
            assert r.json()["revealed"]["a"] in ("baseline", "candidate")
            done += 1
    return done


def test_end_to_end_through_the_api(engineer_api, officer, reviewers, tiny_model_dir, demo_suite, demo_policy):
    artifact, run, release = _start(engineer_api, tiny_model_dir, demo_suite, demo_policy)
    if release["status"] == "in_review":  # amber: blind review of the flip set first
        assert release["gate_zone"] == "amber"
        assert _review_blind(reviewers, release["id"]) > 0
        release = engineer_api.get(f"/api/releases/{release['id']}/").json()
        assert release["review_outcome"]["verdict"] == "pass"

    candidate = ModelArtifact.objects.get(pk=run["output_artifact"])
    assert candidate.parent_id == artifact["id"] and candidate.format == "torch-quantized"
    assert candidate.size_bytes < ModelArtifact.objects.get(pk=artifact["id"]).size_bytes
    statement = run["provenance"]
    assert statement["subject"][0]["digest"]["sha256"] == candidate.digest
    assert (
        statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] == artifact["digest"]
    )
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["seed"] == 7
    # Every run and evaluation records the CPU's kernel instruction sets (int8 results differ between CPUs).
    (environment,) = [b["content"] for b in statement["predicate"]["runDetails"]["byproducts"]]
    assert environment["hardware"]["isa"] == cpu_instruction_sets() and environment["hardware"]["quantized_engine"]
    for evaluation_id in (release["baseline_evaluation"], release["candidate_evaluation"]):
        (platform,) = EvaluationRun.objects.get(pk=evaluation_id).runtime["platforms"]
        assert platform["isa"] == cpu_instruction_sets() and platform["quantized_engine"] and platform["cpu_model"]

    assert release["status"] == "awaiting_decision", release
    assert release["gate_zone"] in ("green", "amber", "red")
    from governance.demo import DEFAULT_POLICY_RULES

    assert {v["rule"] for v in release["gate"]} == {r["code"] for r in DEFAULT_POLICY_RULES}
    comparison = engineer_api.get(f"/api/comparisons/{release['comparison']}/").json()
    groups = comparison["results"]["groups"]
    assert {"overall", "slice:routine", "slice:edge", "slice:adversarial"} <= set(groups)
    assert groups["overall"]["n"] == demo_suite.example_count
    # Both models saw identical inputs: one prediction per example per run, in a Parquet file (no rows).
    examples = list(demo_suite.examples.order_by("position").values_list("pk", flat=True))
    for run in EvaluationRun.objects.filter(pk__in=[release["baseline_evaluation"], release["candidate_evaluation"]]):
        assert evaluation_predictions(run, ["example_id"]).column("example_id").to_pylist() == examples
        assert run.predictions_rows == demo_suite.example_count and not Prediction.objects.filter(run=run).exists()
    flips = engineer_api.get(f"/api/comparisons/{release['comparison']}/flips/").json()
    assert flips["count"] == comparison["flip_count"] == groups["overall"]["flips"] == Flip.objects.count()

    officer_api = api_client_for(officer)
    if release["gate_zone"] == "red":  # red: the open escalation blocks approval until an officer resolves it
        blocked = officer_api.post(
            f"/api/releases/{release['id']}/decisions/",
            {"kind": "approve", "rationale": "Deltas within policy.", "expected_version": release["version"]},
            format="json",
        )
        assert blocked.status_code in (403, 409), blocked.content
        escalations = officer_api.get(f"/api/escalations/?release={release['id']}").json()["results"]
        (red,) = [e for e in escalations if e["trigger"] == "red_zone" and e["status"] != "resolved"]
        r = officer_api.post(
            f"/api/escalations/{red['id']}/resolve/",
            {"resolution": "Reviewed the subgroup gap; accepted with monitoring."},
            format="json",
        )
        assert r.status_code == 200, r.content
        release = officer_api.get(f"/api/releases/{release['id']}/").json()
    r = officer_api.post(
        f"/api/releases/{release['id']}/decisions/",
        {"kind": "approve", "rationale": "Deltas within policy.", "expected_version": release["version"]},
        format="json",
    )
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "approved"
    decision = Decision.objects.get()
    assert decision.evidence["candidate"] == candidate.digest
    actions = list(LedgerEvent.objects.values_list("action", flat=True))
    for expected in (
        "artifact.registered",
        "experiment.created",
        "run.requested",
        "run.started",
        "run.succeeded",
        "release.created",
        "release.evaluation_started",
        "evaluation.succeeded",
        "comparison.computed",
        "release.gated",
        "release.approved",
    ):
        assert expected in actions, expected
    assert ledger_verify().ok


def test_malformed_payloads_name_the_field(engineer_api, base_artifact):
    r = engineer_api.post(
        "/api/experiments/", {"name": "x", "base_artifact": "abc", "unsafe_labels": []}, format="json"
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "invalid" and {"base_artifact", "unsafe_labels"} <= set(body["details"])
    r = engineer_api.post(
        "/api/experiments/", {"name": "x", "base_artifact": base_artifact.pk, "unsafe_labels": ["toxic"]}, format="json"
    )
    assert r.status_code == 400 and "unsafe_labels" in r.json()["details"]
    r = engineer_api.post("/api/artifacts/", {"name": "x", "path": "/nonexistent/model"}, format="json")
    assert r.status_code == 400 and r.json()["code"] == "model_not_found" and "path" in r.json()["details"]
    assert ModelArtifact.objects.count() == 1


def test_bad_method_and_parameters_are_refused_and_nothing_is_queued(engineer_api, engineer, base_artifact):
    from compression.services.experiments import experiment_create

    experiment = experiment_create(
        actor=engineer, name="e", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech"]
    )
    before = LedgerEvent.objects.count()
    r = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", {"method": "magic"}, format="json")
    assert r.status_code == 400 and "method" in r.json()["details"]
    r = engineer_api.post(
        f"/api/experiments/{experiment.pk}/runs/", {"method": "dynamic_int8", "parameters": {"bits": 3}}, format="json"
    )
    assert r.status_code == 400 and "parameters" in r.json()["details"]
    assert "bits" in r.json()["message"]
    assert CompressionRun.objects.count() == 0 and LedgerEvent.objects.count() == before


def test_corrupt_artifact_fails_the_run_with_a_readable_reason(engineer, tiny_model_dir, tmp_path):
    import shutil

    from compression.services.artifacts import artifact_register
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    artifact = artifact_register(actor=engineer, name="broken", path=str(broken))
    experiment = experiment_create(actor=engineer, name="e", base_artifact_id=artifact.pk, unsafe_labels=["offensive"])
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.failure_code == "corrupt_artifact"
    assert "Traceback" not in run.failure_reason and run.failure_reason
    assert run.output_artifact is None and ModelArtifact.objects.count() == 1
    assert LedgerEvent.objects.filter(action="run.failed", object_id=str(run.pk)).count() == 1


def test_engineer_cannot_decide_and_owner_cannot_approve(
    engineer_api, engineer, officer, tiny_model_dir, demo_suite, demo_policy
):
    _, _, release = _start(engineer_api, tiny_model_dir, demo_suite, demo_policy)
    r = engineer_api.post(
        f"/api/releases/{release['id']}/decisions/", {"kind": "approve", "rationale": "mine"}, format="json"
    )
    assert r.status_code == 403
    r = api_client_for(officer).post(
        f"/api/releases/{release['id']}/decisions/",
        {"kind": "reject", "rationale": "old", "expected_version": 1},
        format="json",
    )
    assert r.status_code == 409 and r.json()["code"] == "stale_version"
    assert Release.objects.get(pk=release["id"]).status == release["status"]
    assert Decision.objects.count() == 0
    # Both refusals are recorded: the engineer's by the permission layer, the officer's stale version by the service.
    denied = LedgerEvent.objects.filter(action="access.denied").order_by("id")
    assert [(e.actor_role, e.object_type) for e in denied] == [("engineer", "endpoint"), ("officer", "release")]
