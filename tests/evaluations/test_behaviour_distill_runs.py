"""A behavioural_distill run end to end through the API and the services (Celery eager): the tiny chat model as
teacher, the string-match judge, stress and held-back suites from disjoint parts of the train split. Checks
what is recorded (rounds, provenance, ledger) and the release it feeds; a cancelled run keeps its finished
rounds and produces no artifact; the same seed gives the same student. The engine's arithmetic (acceptance,
failure loop, loss) is tested in tests/compression/test_behaviour_distill_engine.py."""

from __future__ import annotations

import json
import re

import pytest

from tests.evaluations.test_behaviour_distill_requests import _suite

pytestmark = pytest.mark.django_db(transaction=True)

TINY = {
    "layers_kept": 1,
    "rounds": 2,
    "steps": 2,
    "batch_size": 4,
    "samples_per_prompt": 2,
    "max_new_tokens": 6,
    "max_length": 96,
    "top_k": 5,
}


@pytest.fixture
def sets(engineer_api, judge_artifact, data_dir):
    sizes = {"harmful": 3, "harmless": 2, "xstest": 3, "adversarial": 2}
    return {
        "stress": _suite(engineer_api, judge_artifact, data_dir, "stress prompts", "stress", **sizes),
        "heldback": _suite(engineer_api, judge_artifact, data_dir, "held-back prompts", "heldback", **sizes),
        "evaluation": _suite(engineer_api, judge_artifact, data_dir, "evaluation prompts", "heldout", **sizes),
    }


@pytest.fixture
def experiment(engineer_api, chat_base):
    response = engineer_api.post(
        "/api/experiments/",
        {
            "name": "behavioural distillation",
            "base_artifact": chat_base.pk,
            "generation": {"system_prompt": "Refuse harmful requests.", "max_new_tokens": 6},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _request(engineer_api, experiment, sets, judge_artifact, seed: int = 0) -> dict:
    parameters = {
        **TINY,
        "judge": judge_artifact.pk,
        "stress_set": sets["stress"]["id"],
        "heldback_split": sets["heldback"]["id"],
    }
    response = engineer_api.post(
        f"/api/experiments/{experiment['id']}/runs/",
        {"method": "behavioural_distill", "parameters": parameters, "seed": seed},
        format="json",
    )
    assert response.status_code == 202, response.json()
    return engineer_api.get(f"/api/runs/{response.json()['id']}/").json()


def test_a_run_records_its_rounds_and_provenance_and_goes_to_a_gated_release(
    engineer_api, experiment, sets, judge_artifact, chat_base, chat_policy
):
    from compression.models import CompressionRun
    from governance.models import Release
    from ledger.models import LedgerEvent

    run = _request(engineer_api, experiment, sets, judge_artifact)
    assert run["status"] == "succeeded", run["failure_reason"]
    assert [r["round"] for r in run["rounds"]] == [1, 2]
    for record in run["rounds"]:
        assert record["accepted"] + record["rejected"] >= record["stress_prompts"] - record["dropped_prompts"]
        assert record["training_examples"] <= record["accepted"]
        assert len(record["data_digest"]) == 64
        assert record["heldout"]["prompts"] == sets["heldback"]["example_count"]
        assert sum(s["prompts"] for s in record["by_slice"].values()) == record["stress_prompts"]
    first, second = run["rounds"]
    assert second["added_failures"] == first["heldout"]["failures"]
    assert second["stress_prompts"] == sets["stress"]["example_count"] + second["added_failures"]
    events = LedgerEvent.objects.filter(object_type="compression_run", object_id=run["id"], action="run.round_finished")
    assert [json.loads(e.payload_json)["round"] for e in events.order_by("id")] == [1, 2]

    stored = CompressionRun.objects.get(pk=run["id"])
    statement = stored.provenance
    dependencies = {d.get("name"): d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert dependencies["base_model"]["digest"]["sha256"] == chat_base.digest
    assert dependencies["judge"]["digest"]["sha256"] == judge_artifact.digest
    assert dependencies["stress_set"]["digest"]["sha256"] == sets["stress"]["digest"]
    assert dependencies["heldback_split"]["digest"]["sha256"] == sets["heldback"]["digest"]
    byproducts = statement["predicate"]["runDetails"]["byproducts"][0]["content"]
    assert [r["data_digest"] for r in byproducts["details"]["rounds"]] == [r["data_digest"] for r in run["rounds"]]
    assert stored.provenance_envelope is not None
    student = stored.output_artifact
    assert student.parent_id == chat_base.pk and student.kind == "causal-lm"
    assert byproducts["parameter_count"] < byproducts["source_parameter_count"]

    release = engineer_api.post(
        "/api/releases/",
        {"compression_run": run["id"], "suite_version": sets["evaluation"]["id"], "policy": chat_policy.pk},
        format="json",
    )
    assert release.status_code == 201, release.json()
    started = engineer_api.post(f"/api/releases/{release.json()['id']}/evaluate/", {}, format="json")
    assert started.status_code == 202, started.json()
    gated = Release.objects.get(pk=release.json()["id"])
    assert gated.gate_zone in ("green", "amber", "red"), gated.failure_reason


def test_a_release_on_the_prompts_the_student_was_trained_on_is_refused(
    engineer_api, experiment, sets, judge_artifact, chat_policy
):
    from governance.models import Release

    run = _request(engineer_api, experiment, sets, judge_artifact)
    assert run["status"] == "succeeded", run["failure_reason"]
    for overlapping in ("stress", "heldback"):
        response = engineer_api.post(
            "/api/releases/",
            {"compression_run": run["id"], "suite_version": sets[overlapping]["id"], "policy": chat_policy.pk},
            format="json",
        )
        assert response.status_code == 400
        assert response.json()["code"] == "prompt_overlap" and "suite_version" in response.json()["details"]
    assert not Release.objects.exists()


def test_the_same_seed_gives_the_same_student(engineer_api, experiment, sets, judge_artifact):
    from compression.models import CompressionRun

    first = _request(engineer_api, experiment, sets, judge_artifact, seed=3)
    second = _request(engineer_api, experiment, sets, judge_artifact, seed=3)
    assert first["status"] == second["status"] == "succeeded"
    runs = CompressionRun.objects.filter(pk__in=[first["id"], second["id"]])
    assert len({run.output_artifact.digest for run in runs}) == 1
    assert [r["data_digest"] for r in first["rounds"]] == [r["data_digest"] for r in second["rounds"]]


def test_a_run_cancelled_mid_round_keeps_its_finished_rounds_and_produces_no_artifact(
    engineer, engineer_api, experiment, sets, judge_artifact, monkeypatch
):
    from compression.models import CompressionRun, ModelArtifact
    from compression.services import runs
    from compression.services.runs import compression_run_cancel

    recorded = runs.compression_run_record_round

    def record_then_cancel(run_id: int, record: dict) -> None:
        recorded(run_id, record)
        if record["round"] == 1:  # the engineer cancels while round 2 runs
            compression_run_cancel(actor=engineer, run_id=run_id)

    monkeypatch.setattr(runs, "compression_run_record_round", record_then_cancel)
    artifacts = ModelArtifact.objects.count()
    run = _request(engineer_api, experiment, sets, judge_artifact)
    assert run["status"] == "cancelled"
    assert [r["round"] for r in run["rounds"]] == [1]
    assert run["output_artifact"] is None
    assert CompressionRun.objects.get(pk=run["id"]).output_artifact is None
    assert ModelArtifact.objects.count() == artifacts


def test_load_chat_demo_builds_the_distillation_sets_and_the_safety_teacher_once(
    make_user, settings, tiny_chat_dir, data_dir, tmp_path, monkeypatch
):
    """`SAFESHRINK_DEMO_MODEL=smollm2 make run`'s distillation data, with the tiny chat model standing in for
    SmolLM2 and a tiny training budget: the two prompt sets (disjoint), the context-distilled teacher registered
    as a child of the base and signed, reused on a second run."""
    import io
    import shutil

    from django.core.management import call_command

    from compression.models import ModelArtifact
    from evaluations.models import SuiteVersion
    from evaluations.services.behaviour_data import behaviour_data_check
    from governance.demo_chat import CHAT_MODEL, DISTILL_HELDBACK_SUITE, DISTILL_STRESS_SUITE, SAFETY_TEACHER_NAME
    from governance.management.commands import load_chat_demo

    make_user("engineer", "engineer")
    make_user("officer", "officer")
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MODEL_CACHE": tmp_path / "models"}
    shutil.copytree(tiny_chat_dir, tmp_path / "models" / CHAT_MODEL)
    monkeypatch.setattr(
        load_chat_demo,
        "SAFETY_TEACHER_PARAMS",
        {"steps": 1, "max_new_tokens": 4, "batch_size": 4, "max_length": 96, "samples_per_prompt": 1},
    )
    monkeypatch.setattr(
        load_chat_demo,
        "DISTILL_SET_SIZES",
        {
            "stress": {"harmful": 3, "harmless": 2, "xstest": 3, "adversarial": 0},
            "heldback": {"harmful": 2, "harmless": 1, "xstest": 2, "adversarial": 2},
        },
    )
    for _ in range(2):
        out = io.StringIO()
        call_command(
            "load_chat_demo",
            data_dir=data_dir,
            judge="string-match",
            harmful=2,
            harmless=2,
            xstest=2,
            adversarial=0,
            stdout=out,
        )
        assert "chat demo data ready" in out.getvalue()
    teacher = ModelArtifact.objects.get(name=SAFETY_TEACHER_NAME)
    base = ModelArtifact.objects.get(name=CHAT_MODEL)
    assert teacher.parent_id == base.pk and teacher.kind == "causal-lm" and teacher.system_signature
    assert "safety_teacher.json" in {entry["path"] for entry in teacher.manifest}
    stress = SuiteVersion.objects.get(suite__name=DISTILL_STRESS_SUITE)
    heldback = SuiteVersion.objects.get(suite__name=DISTILL_HELDBACK_SUITE)
    assert stress.kind == heldback.kind == "chat" and "part 'stress'" in stress.source
    judge = ModelArtifact.objects.get(kind="judge")
    source = behaviour_data_check(  # disjoint, so a run may use them
        parameters={"judge": judge.pk, "stress_set": stress.pk, "heldback_split": heldback.pk}
    )
    assert source["stress_set"]["examples"] == 8


def test_the_run_page_shows_the_rounds_and_releases_the_student_for_its_owner(
    engineer, officer, engineer_api, experiment, sets, judge_artifact, chat_policy, client
):
    """The UI half of "request to a gated release": the run page draws the rounds and, for the experiment's
    owner, creates the release and starts its evaluation; an overlapping suite is refused in words."""
    from governance.models import Release

    run = _request(engineer_api, experiment, sets, judge_artifact)
    client.force_login(officer)
    page = client.get(f"/runs/{run['id']}/").content.decode()
    assert "Distillation rounds" in page and "<svg" in page and 'id="release-form"' not in page
    client.force_login(engineer)
    page = client.get(f"/runs/{run['id']}/").content.decode()
    assert 'id="release-form"' in page and sets["evaluation"]["suite"] in page
    select = page[page.index('name="suite_version"') : page.index('name="policy"')]
    options = re.findall(r'<option value="(\d+)">', select)  # the suites offered: not the ones it trained on
    assert str(sets["evaluation"]["id"]) in options and str(sets["stress"]["id"]) not in options
    # Provenance as readable fields (no Python dict dump), the statement downloadable as JSON, wall time rounded.
    assert 'id="provenance-dependencies"' in page and judge_artifact.digest in page and "{&#x27;" not in page
    assert re.search(r"<dt>Wall time</dt><dd>\d+\.\d s</dd>", page)
    download = client.get(f"/runs/{run['id']}/provenance.json")
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    assert download.json() == engineer_api.get(f"/api/runs/{run['id']}/").json()["provenance"]
    refused = client.post(
        f"/runs/{run['id']}/release/",
        {"suite_version": sets["stress"]["id"], "policy": chat_policy.pk},
        follow=True,
    )
    assert "shares" in refused.content.decode() and not Release.objects.exists()
    done = client.post(
        f"/runs/{run['id']}/release/",
        {"suite_version": sets["evaluation"]["id"], "policy": chat_policy.pk},
        follow=True,
    )
    release = Release.objects.get()
    assert done.redirect_chain[-1][0] == f"/releases/{release.pk}/"
    assert release.gate_zone in ("green", "amber", "red"), release.failure_reason
    page = done.content.decode()
    assert "candidate-rounds" in page
