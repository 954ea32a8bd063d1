"""Releases from external runs: the candidate is the run's output; SafeShrink evaluates baseline and candidate
itself and the gate reads only its own comparison; refusals store nothing; the API names the field."""

import json

import pytest
from django.db import IntegrityError, transaction

from accounts.errors import PermissionDenied, ValidationFailed
from governance.models import Release, ReleaseStatus
from governance.services.candidates import release_create_from_external_run
from governance.services.policies import policy_judge
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.governance.external import evaluated_external_release, experiment_for, external_run, int8_output

pytestmark = pytest.mark.django_db(transaction=True)


def _counts():
    return Release.objects.count(), LedgerEvent.objects.filter(action="release.created").count()


def test_an_external_candidate_is_evaluated_and_gated_like_any_other(
    engineer, base_artifact, demo_suite, demo_policy, tmp_path
):
    release = evaluated_external_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, tmp_path=tmp_path
    )
    run = release.external_run
    assert release.source == "external" and release.compression_run_id is None
    assert release.candidate == run.output_artifact and release.candidate_digest == run.output_artifact.digest
    # SafeShrink evaluated both models itself: the baseline is the experiment's base model.
    assert release.baseline_evaluation.artifact_id == base_artifact.pk
    assert release.candidate_evaluation.artifact_id == run.output_artifact_id
    assert release.status in (ReleaseStatus.AWAITING_DECISION, ReleaseStatus.IN_REVIEW), release.failure_reason
    zone, _ = policy_judge(release.policy, release.comparison.results)
    assert release.gate_zone == zone and release.comparison.baseline_run_id == release.baseline_evaluation_id
    created = json.loads(LedgerEvent.objects.get(action="release.created", object_id=str(release.pk)).payload_json)
    assert created["source"] == "external" and created["verification"] == "reported"
    assert created["run_uuid"] == run.run_uuid and created["contents_digest"] == run.contents_digest
    assert created["baseline"] == base_artifact.digest and created["baseline_among_inputs"] is True


def test_the_gate_ignores_what_the_engineer_reported(engineer, base_artifact, demo_suite, demo_policy, tmp_path):
    """Two runs of the same output, one reporting perfect metrics and one terrible ones: the same verdict,
    which is SafeShrink's own comparison judged by the policy."""
    perfect = evaluated_external_release(
        engineer=engineer,
        base_artifact=base_artifact,
        suite=demo_suite,
        policy=demo_policy,
        tmp_path=tmp_path / "a",
        metrics={"accuracy": [1.0], "unsafe_recall": [1.0], "flip_rate": [0.0]},
    )
    awful = evaluated_external_release(
        engineer=engineer,
        base_artifact=base_artifact,
        suite=demo_suite,
        policy=demo_policy,
        tmp_path=tmp_path / "b",
        metrics={"accuracy": [0.0], "unsafe_recall": [0.0], "flip_rate": [1.0]},
    )
    assert perfect.candidate_digest == awful.candidate_digest
    assert perfect.gate == awful.gate and perfect.gate_zone == awful.gate_zone
    assert [v["value"] for v in perfect.gate] != [1.0] * len(perfect.gate)
    zone, verdicts = policy_judge(perfect.policy, perfect.comparison.results)
    assert perfect.gate_zone == zone


@pytest.fixture
def light(engineer, base_artifact, demo_suite, demo_policy, make_user):
    """Runs whose output is just a registered artifact (no evaluation happens in refusal tests)."""
    experiment = experiment_for(engineer, base_artifact)
    return {"experiment": experiment, "suite": demo_suite, "policy": demo_policy, "base": base_artifact}


def _create(actor, run_id, light, **over):
    args = {"external_run_id": run_id, "suite_version_id": light["suite"].pk, "policy_id": light["policy"].pk}
    return release_create_from_external_run(actor=actor, **{**args, **over})


def test_refusals_store_nothing(engineer, officer, make_user, light, tmp_path):
    output = int8_output(engineer, light["base"], tmp_path)
    running = external_run(engineer, light["experiment"], output=output, finish=False)
    no_output = external_run(engineer, light["experiment"])
    finished = external_run(engineer, light["experiment"], output=output)
    other = make_user("oscar", "engineer")
    before = _counts()
    cases = [
        (engineer, running.pk, {}, ValidationFailed, "external_run_not_finished", "external_run"),
        (engineer, no_output.pk, {}, ValidationFailed, "external_run_no_output", "external_run"),
        (engineer, 999_999, {}, ValidationFailed, "invalid", "external_run"),
        (other, finished.pk, {}, ValidationFailed, "invalid", "external_run"),  # another's run is unknown
        (engineer, finished.pk, {"suite_version_id": 999_999}, ValidationFailed, "invalid", "suite_version"),
        (engineer, finished.pk, {"policy_id": 999_999}, ValidationFailed, "invalid", "policy"),
        (officer, finished.pk, {}, PermissionDenied, "permission_denied", None),
    ]
    for actor, run_id, over, error, code, field in cases:
        with pytest.raises(error) as raised:
            _create(actor, run_id, light, **over)
        assert raised.value.code == code, (run_id, over)
        if field:
            assert field in raised.value.details
        assert _counts() == before
    release = _create(engineer, finished.pk, light)
    assert release.status == ReleaseStatus.DRAFT and _counts() == (before[0] + 1, before[1] + 1)


def test_a_release_has_exactly_one_candidate_source(engineer, light, tmp_path):
    output = int8_output(engineer, light["base"], tmp_path)
    release = _create(engineer, external_run(engineer, light["experiment"], output=output).pk, light)
    from compression.services.runs import compression_run_request

    own = compression_run_request(actor=engineer, experiment_id=light["experiment"].pk, method="dynamic_int8")
    with pytest.raises(IntegrityError), transaction.atomic():
        Release.objects.filter(pk=release.pk).update(compression_run=own)
    with pytest.raises(IntegrityError), transaction.atomic():
        Release.objects.filter(pk=release.pk).update(external_run=None)


def test_the_api_takes_one_of_the_two_runs_and_shows_the_source(engineer, make_user, light, tmp_path):
    output = int8_output(engineer, light["base"], tmp_path)
    finished = external_run(engineer, light["experiment"], output=output)
    running = external_run(engineer, light["experiment"], output=output, finish=False)
    api = api_client_for(engineer)
    body = {"suite_version": light["suite"].pk, "policy": light["policy"].pk}
    before = _counts()
    neither = api.post("/api/releases/", body, format="json")
    both = api.post("/api/releases/", {**body, "compression_run": 1, "external_run": finished.pk}, format="json")
    for response in (neither, both):
        assert response.status_code == 400
        assert {"compression_run", "external_run"} <= set(response.json()["details"])
    unknown = api.post("/api/releases/", {**body, "external_run": 999_999}, format="json")
    assert unknown.status_code == 400 and "external_run" in unknown.json()["details"]
    stranger = api_client_for(make_user("oscar", "engineer"))
    assert stranger.post("/api/releases/", {**body, "external_run": finished.pk}, format="json").status_code == 400
    not_done = api.post("/api/releases/", {**body, "external_run": running.pk}, format="json")
    assert not_done.status_code == 400 and not_done.json()["code"] == "external_run_not_finished"
    assert _counts() == before

    created = api.post("/api/releases/", {**body, "external_run": finished.pk}, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert data["source"] == "external" and data["compression_run"] is None
    assert data["external_run"] == {
        "id": finished.pk,
        "run_uuid": finished.run_uuid,
        "method": finished.method,
        "verification": "reported",
        "provenance_verified": None,
    }
    assert data["candidate_digest"] == output.digest
    listed = api.get("/api/releases/").json()["results"][0]
    assert listed["source"] == "external" and listed["external_run"] == finished.pk
    detail = api.get(f"/api/releases/{data['id']}/").json()
    assert detail["external_run"]["run_uuid"] == finished.run_uuid
