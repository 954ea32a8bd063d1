"""Guards on proposing a release: one release per run and suite version (409 `release_exists`, also under
concurrent requests on PostgreSQL), and a candidate evaluated on the data its run trained or calibrated on
(a warning in the API, on the page and in the ledger; a 400 `training_data_overlap` under a policy forbidding it)."""

import json
import threading

import pytest
from django.db import connection

from accounts.errors import Conflict
from governance.models import Release, ReleaseStatus
from ledger.models import LedgerEvent
from tests.conftest import require_service
from tests.governance.external import experiment_for, external_run, int8_output

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def experiment(engineer, base_artifact):
    return experiment_for(engineer, base_artifact, name="guards")


def _run(engineer, experiment, **extra):
    from compression.services.runs import compression_run_request

    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8", **extra)
    run.refresh_from_db()
    assert run.status == "succeeded", run.failure_reason
    return run


@pytest.fixture
def run(engineer, experiment):
    return _run(engineer, experiment)


def _propose(api, run_id: int, suite_version_id: int, policy_id: int):
    body = {"compression_run": run_id, "suite_version": suite_version_id, "policy": policy_id}
    return api.post("/api/releases/", body, format="json")


def _denied(object_id) -> list[dict]:
    events = LedgerEvent.objects.filter(action="access.denied", object_type="release", object_id=str(object_id))
    return [json.loads(e.payload_json) for e in events]


def _import(engineer, suite_name: str, rows):
    from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS
    from evaluations.services.suites import suite_version_import

    return suite_version_import(
        actor=engineer, suite_name=suite_name, rows=rows, unsafe_labels=UNSAFE_LABELS, safe_labels=SAFE_LABELS
    )


def _rows_of(version):
    from evaluations.services.suites import ExampleRow

    return [
        ExampleRow(external_id=e.external_id, text=e.text, label=e.label, slice=e.slice, line=i + 2)
        for i, e in enumerate(version.examples.order_by("position"))
    ]


@pytest.fixture
def unrelated_suite(engineer, demo_suite):
    """A suite version sharing no example with the demo suite (new texts, ids and roots)."""
    from evaluations.services.suites import ExampleRow

    kinds = [("hatespeech", "routine"), ("normal", "routine"), ("offensive", "edge"), ("normal", "adversarial")]
    rows = [
        ExampleRow(
            external_id=f"u{i}", text=f"A sentence no other suite holds, number {i}.", label=label, slice=s, line=i
        )
        for i, (label, s) in enumerate(kinds * 5, start=2)
    ]
    return _import(engineer, "unrelated suite", rows)


# --- one release per run and suite version -------------------------------------------------------------------


def test_a_second_proposal_of_the_same_run_on_the_same_suite_is_409_naming_the_release(
    engineer_api, run, demo_suite, demo_policy, unrelated_suite
):
    first = _propose(engineer_api, run.pk, demo_suite.pk, demo_policy.pk)
    assert first.status_code == 201, first.json()
    first_id = first.json()["id"]
    events = LedgerEvent.objects.count()

    again = _propose(engineer_api, run.pk, demo_suite.pk, demo_policy.pk)
    assert again.status_code == 409, again.json()
    body = again.json()
    assert body["code"] == "release_exists"
    assert body["details"]["release"] == [first_id] and f"#{first_id}" in body["message"]
    assert Release.objects.count() == 1
    # The refusal is recorded on the release that already proposes the candidate, and nothing else is written.
    assert [(d["code"]) for d in _denied(first_id)] == ["release_exists"]
    assert LedgerEvent.objects.count() == events + 1

    # Another suite version is other evidence: a release of its own.
    other = _propose(engineer_api, run.pk, unrelated_suite.pk, demo_policy.pk)
    assert other.status_code == 201, other.json()


def test_no_override_a_rejected_release_is_not_proposed_again(engineer, engineer_api, run, demo_suite, demo_policy):
    first = _propose(engineer_api, run.pk, demo_suite.pk, demo_policy.pk).json()
    Release.objects.filter(pk=first["id"]).update(status=ReleaseStatus.REJECTED)
    again = _propose(engineer_api, run.pk, demo_suite.pk, demo_policy.pk)
    assert again.status_code == 409 and again.json()["code"] == "release_exists"
    assert "rejected" in again.json()["message"]
    assert Release.objects.count() == 1


def test_the_web_form_refuses_a_duplicate_with_a_link_to_the_existing_release(
    client, engineer, run, demo_suite, demo_policy
):
    from governance.services.releases import release_create

    existing = release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )
    client.force_login(engineer)
    response = client.post(
        f"/runs/{run.pk}/release/", {"suite_version": demo_suite.pk, "policy": demo_policy.pk}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/runs/{run.pk}/"
    page = response.content.decode()
    assert f'<a href="/releases/{existing.pk}/">Open release #{existing.pk}</a>' in page
    assert Release.objects.count() == 1
    assert Release.objects.get().status == ReleaseStatus.DRAFT  # the existing release was not evaluated either
    # The form no longer offers the suite version this run already has a release on.
    assert f'<option value="{demo_suite.pk}">' not in page
    assert 'id="release-form-empty"' in page or 'id="release-form"' in page


def test_an_external_run_is_proposed_once_per_suite_version(
    engineer, base_artifact, experiment, demo_suite, demo_policy, tmp_path
):
    from governance.services.candidates import release_create_from_external_run

    output = int8_output(engineer, base_artifact, tmp_path)
    external = external_run(engineer, experiment, output=output, inputs=[base_artifact])
    args = {"external_run_id": external.pk, "suite_version_id": demo_suite.pk, "policy_id": demo_policy.pk}
    first = release_create_from_external_run(actor=engineer, **args)
    with pytest.raises(Conflict) as refused:
        release_create_from_external_run(actor=engineer, **args)
    assert refused.value.code == "release_exists" and refused.value.details["release"] == [first.pk]
    assert Release.objects.count() == 1


@pytest.mark.postgres
def test_concurrent_duplicate_proposals_make_one_release(engineer, run, demo_suite, demo_policy):
    require_service("postgres")
    from governance.services.releases import release_create

    attempts = 6
    outcomes: list[str] = []
    barrier = threading.Barrier(attempts)

    def attempt():
        try:
            barrier.wait()
            release_create(
                actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
            )
            outcomes.append("created")
        except Conflict as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["release_exists"] * (attempts - 1)
    assert Release.objects.filter(compression_run=run).count() == 1
    assert LedgerEvent.objects.filter(action="release.created").count() == 1


# --- evaluated on the run's training or calibration data -----------------------------------------------------


@pytest.fixture
def calibrated_run(engineer, experiment, demo_suite):
    """A run that names the demo suite version as its data (recorded in data_source, like a calibration set)."""
    return _run(engineer, experiment, data_suite_version_id=demo_suite.pk)


def test_a_release_on_the_run_s_own_data_carries_a_warning_in_the_api_the_page_and_the_ledger(
    client, engineer, engineer_api, calibrated_run, demo_suite, demo_policy, unrelated_suite
):
    response = _propose(engineer_api, calibrated_run.pk, demo_suite.pk, demo_policy.pk)
    assert response.status_code == 201, response.json()
    release = response.json()
    [warning] = release["warnings"]
    assert warning["code"] == "evaluated_on_training_data"
    assert (warning["suite_version"], warning["data_suite_version"]) == (demo_suite.pk, demo_suite.pk)
    assert warning["shared_examples"] == demo_suite.examples.count()
    assert f"compression run {calibrated_run.pk}" in warning["message"]
    assert engineer_api.get(f"/api/releases/{release['id']}/").json()["warnings"] == [warning]

    created = LedgerEvent.objects.get(action="release.created", object_id=str(release["id"]))
    assert json.loads(created.payload_json)["warnings"] == [warning]

    client.force_login(engineer)
    page = client.get(f"/releases/{release['id']}/").content.decode()
    assert 'id="release-warnings"' in page and 'data-code="evaluated_on_training_data"' in page

    # On a suite that shares nothing with the run's data: no warning anywhere.
    clean = _propose(engineer_api, calibrated_run.pk, unrelated_suite.pk, demo_policy.pk).json()
    assert clean["warnings"] == []
    created = LedgerEvent.objects.get(action="release.created", object_id=str(clean["id"]))
    assert "warnings" not in json.loads(created.payload_json)
    assert 'id="release-warnings"' not in client.get(f"/releases/{clean['id']}/").content.decode()


def test_another_version_of_the_data_suite_warns_with_the_examples_it_shares(
    engineer, engineer_api, calibrated_run, demo_suite, demo_policy
):
    rows = _rows_of(demo_suite)
    kept = rows[: len(rows) // 3]
    fresh = [
        type(r)(external_id=f"new-{i}", text=f"Never seen before, sentence {i}.", label=r.label, slice=r.slice, line=0)
        for i, r in enumerate(rows[:7])
    ]
    version_two = _import(engineer, demo_suite.suite.name, kept + fresh)
    assert version_two.suite_id == demo_suite.suite_id and version_two.pk != demo_suite.pk
    response = _propose(engineer_api, calibrated_run.pk, version_two.pk, demo_policy.pk)
    assert response.status_code == 201, response.json()
    [warning] = response.json()["warnings"]
    assert warning["shared_examples"] == len(kept)
    assert f"shares {len(kept)} of its {len(kept) + len(fresh)} examples" in warning["message"]


def test_a_run_without_data_has_no_warning(engineer_api, run, demo_suite, demo_policy):
    response = _propose(engineer_api, run.pk, demo_suite.pk, demo_policy.pk)
    assert response.status_code == 201 and response.json()["warnings"] == []


def _forbidding_policy(officer_api, forbid):
    from governance.demo import DEFAULT_POLICY_RULES

    response = officer_api.post(
        "/api/policies/publish/",
        {"name": "strict", "rules": DEFAULT_POLICY_RULES, "forbid_training_data_overlap": forbid},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_policy_may_forbid_evaluating_on_the_training_data(
    client, officer, officer_api, engineer_api, calibrated_run, demo_suite, unrelated_suite
):
    policy = _forbidding_policy(officer_api, True)
    assert policy["forbid_training_data_overlap"] is True
    listed = {p["id"]: p for p in officer_api.get("/api/policies/").json()["results"]}
    assert listed[policy["id"]]["forbid_training_data_overlap"] is True

    events = LedgerEvent.objects.count()
    refused = _propose(engineer_api, calibrated_run.pk, demo_suite.pk, policy["id"])
    assert refused.status_code == 400, refused.json()
    assert refused.json()["code"] == "training_data_overlap" and "suite_version" in refused.json()["details"]
    assert not Release.objects.exists() and LedgerEvent.objects.count() == events

    allowed = _propose(engineer_api, calibrated_run.pk, unrelated_suite.pk, policy["id"])
    assert allowed.status_code == 201 and allowed.json()["warnings"] == []

    client.force_login(officer)
    page = client.get("/policies/").content.decode()
    assert '<strong class="training-overlap">refused</strong>' in page


def test_a_policy_allows_it_by_default_and_says_so(officer_api, client, officer):
    policy = _forbidding_policy(officer_api, False)
    assert policy["forbid_training_data_overlap"] is False
    client.force_login(officer)
    assert (
        '<strong class="training-overlap">allowed, with a warning</strong>' in client.get("/policies/").content.decode()
    )
    bad = officer_api.post(
        "/api/policies/publish/",
        {"name": "strict", "rules": [], "forbid_training_data_overlap": "perhaps"},
        format="json",
    )
    assert bad.status_code == 400 and "forbid_training_data_overlap" in bad.json()["details"]
