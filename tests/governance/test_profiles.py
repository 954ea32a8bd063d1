"""A policy may require a deployment profile; evaluating under another one is refused with a clear 400."""

import json

import pytest

from accounts.errors import DomainError
from compression.services.experiments import experiment_create
from compression.services.runs import compression_run_request
from governance.demo import DEFAULT_POLICY_RULES
from governance.models import Release, ReleaseStatus
from governance.services.policies import threshold_policy_publish
from governance.services.releases import release_create, release_start_evaluation
from ledger.models import LedgerEvent
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def online_policy(officer):
    return threshold_policy_publish(
        actor=officer, name="online service", rules=DEFAULT_POLICY_RULES, required_profile={"batching": "single"}
    )


@pytest.fixture
def draft(engineer, base_artifact, demo_suite, online_policy) -> Release:
    experiment = experiment_create(
        actor=engineer, name="exp", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    return release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=online_policy.pk
    )


def test_another_profile_than_the_policy_requires_is_refused_and_changes_nothing(engineer, draft):
    before = LedgerEvent.objects.filter(action="evaluation.requested").count()
    with pytest.raises(DomainError) as refused:
        release_start_evaluation(actor=engineer, release_id=draft.pk, profile={"batching": "fixed", "batch_size": 32})
    assert refused.value.code == "profile_not_allowed" and set(refused.value.details) == {"profile.batching"}
    draft.refresh_from_db()
    assert draft.status == ReleaseStatus.DRAFT and draft.baseline_evaluation is None
    assert LedgerEvent.objects.filter(action="evaluation.requested").count() == before

    response = api_client_for(engineer).post(
        f"/api/releases/{draft.pk}/evaluate/", {"profile": {"batch_size": 0, "colour": "red"}}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_profile" and {"profile.batch_size", "profile.colour"} <= set(body["details"])
    response = api_client_for(engineer).post(
        f"/api/releases/{draft.pk}/evaluate/", {"profile": {"batching": "length_sorted"}}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "profile_not_allowed"
    assert "single" in response.json()["details"]["profile.batching"][0]


def test_without_a_requested_profile_the_policys_required_one_is_used(engineer, draft):
    release = release_start_evaluation(actor=engineer, release_id=draft.pk, profile={"max_length": 48})
    release.refresh_from_db()
    profile = release.baseline_evaluation.config["profile"]
    assert profile["batching"] == "single" and profile["batch_size"] == 1 and profile["max_length"] == 48
    assert release.candidate_evaluation.config == release.baseline_evaluation.config
    assert release.status != ReleaseStatus.DRAFT, release.failure_reason  # evaluated (eagerly) and gated
    assert (
        release.baseline_evaluation.runtime["batch_latency_p50_s"]
        == release.baseline_evaluation.runtime["example_latency_p50_s"]
    )  # one example per batch
    started = LedgerEvent.objects.get(action="release.evaluation_started", object_id=str(release.pk))
    assert json.loads(started.payload_json)["profile"] == profile


def test_a_policy_with_a_malformed_required_profile_is_refused(officer):
    officer_api = api_client_for(officer)
    response = officer_api.post(
        "/api/policies/publish/",
        {"name": "p", "rules": DEFAULT_POLICY_RULES, "required_profile": {"batch_size": "one"}, "flip_basis": "stable"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_profile" and "required_profile.batch_size" in response.json()["details"]
    response = officer_api.post(
        "/api/policies/publish/", {"name": "p", "rules": DEFAULT_POLICY_RULES, "flip_basis": "some"}, format="json"
    )
    assert response.status_code == 400 and "flip_basis" in response.json()["details"]
    response = officer_api.post(
        "/api/policies/publish/",
        {"name": "p", "rules": DEFAULT_POLICY_RULES, "required_profile": {"batch_size": 1}},
        format="json",
    )
    assert response.status_code == 201 and response.json()["required_profile"] == {"batch_size": 1}
    assert response.json()["flip_basis"] == "stable"
