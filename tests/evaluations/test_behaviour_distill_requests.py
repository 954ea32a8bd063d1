"""behavioural_distill at request time: listed with its parameters, and every bad request refused with a 400 that
names the parameter, nothing stored (no run row, no ledger event). The run itself is tested in
test_behaviour_distill_runs.py."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.evaluations.chat_rows import prompt_rows

pytestmark = pytest.mark.django_db(transaction=True)


def _suite(engineer_api, judge_artifact, data_dir, name: str, split: str, **sizes) -> dict:
    rows = prompt_rows(data_dir, split=split, **{"harmful": 4, "harmless": 2, "xstest": 4, "adversarial": 4, **sizes})
    response = engineer_api.post(
        "/api/chat-suites/", {"suite": name, "judge": judge_artifact.pk, "rows": rows}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.fixture
def sets(engineer_api, judge_artifact, data_dir):
    return {
        "stress": _suite(engineer_api, judge_artifact, data_dir, "stress prompts", "stress"),
        "heldback": _suite(engineer_api, judge_artifact, data_dir, "held-back prompts", "heldback"),
        "evaluation": _suite(engineer_api, judge_artifact, data_dir, "evaluation prompts", "heldout"),
    }


@pytest.fixture
def experiment(engineer_api, chat_base):
    response = engineer_api.post(
        "/api/experiments/", {"name": "behavioural distillation", "base_artifact": chat_base.pk}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _parameters(sets, judge_artifact, **overrides) -> dict:
    return {
        "judge": judge_artifact.pk,
        "stress_set": sets["stress"]["id"],
        "heldback_split": sets["heldback"]["id"],
        **overrides,
    }


def _stored() -> tuple[int, int]:
    from compression.models import CompressionRun
    from ledger.models import LedgerEvent

    return CompressionRun.objects.count(), LedgerEvent.objects.count()


def test_the_method_is_listed_for_chat_models_with_its_parameters(engineer_api):
    methods = {m["name"]: m for m in engineer_api.get("/api/methods/").json()}
    method = methods["behavioural_distill"]
    assert method["model_kinds"] == ["causal-lm"] and method["available"] is True
    names = {p["name"] for p in method["parameters"]}
    assert {
        "layers_kept",
        "intermediate_size",
        "temperature",
        "alpha",
        "top_k",
        "rounds",
        "samples_per_prompt",
        "judge",
        "acceptance_threshold",
        "stress_set",
        "heldback_split",
        "extra_teachers",
        "level",
        "lr",
        "steps",
    } <= names
    temperature = next(p for p in method["parameters"] if p["name"] == "temperature")
    assert temperature["exclusive_minimum"] is True and temperature["minimum"] == 0


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"top_k": 4096}, "top_k"),
        ({"layers_kept": 2}, "layers_kept"),
        ({"intermediate_size": 100000 - 1}, "intermediate_size"),
        ({"judge": None}, "judge"),
        ({"stress_set": None}, "stress_set"),
        ({"extra_teachers": [987654]}, "extra_teachers"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it_and_nothing_is_stored(
    engineer_api, experiment, sets, judge_artifact, overrides, named
):
    before = _stored()
    response = engineer_api.post(
        f"/api/experiments/{experiment['id']}/runs/",
        {"method": "behavioural_distill", "parameters": _parameters(sets, judge_artifact, **overrides)},
        format="json",
    )
    assert response.status_code == 400, response.json()
    body = response.json()
    assert named in body["message"] or any(named in key for key in body.get("details", {})), body
    assert _stored() == before


def test_a_judge_that_is_not_a_refusal_judge_is_refused(engineer_api, experiment, sets, judge_artifact, chat_base):
    before = _stored()
    response = engineer_api.post(
        f"/api/experiments/{experiment['id']}/runs/",
        {"method": "behavioural_distill", "parameters": _parameters(sets, judge_artifact, judge=chat_base.pk)},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_judge" and "parameters.judge" in response.json()["details"]
    assert _stored() == before


def test_a_stress_set_overlapping_the_heldback_split_is_refused(
    engineer_api, experiment, sets, judge_artifact, data_dir
):
    # The same prompts under another suite name: every prompt overlaps.
    copy = _suite(engineer_api, judge_artifact, data_dir, "copy of the stress prompts", "stress")
    before = _stored()
    for heldback in (copy["id"], sets["stress"]["id"]):
        response = engineer_api.post(
            f"/api/experiments/{experiment['id']}/runs/",
            {
                "method": "behavioural_distill",
                "parameters": _parameters(sets, judge_artifact, heldback_split=heldback),
            },
            format="json",
        )
        assert response.status_code == 400, response.json()
        assert "heldback_split" in json.dumps(response.json())
    assert _stored() == before


def test_a_paraphrase_of_a_stress_prompt_counts_as_an_overlap(sets, judge_artifact, engineer_api, data_dir):
    """An adversarial variant shares its root (the prompt it was made from) with that prompt."""
    from accounts.errors import ValidationFailed
    from evaluations.services.behaviour_data import behaviour_data_check

    plain = prompt_rows(data_dir, split="stress", harmful=3, harmless=0, xstest=0, adversarial=0)
    variants = prompt_rows(data_dir, split="stress", harmful=3, harmless=0, xstest=0, adversarial=3)
    variants = [row for row in variants if row["source_id"]] + [
        {**row, "id": f"copy:{row['id']}", "prompt": row["prompt"] + " Please."} for row in plain
    ]
    sources = {row["source_id"] for row in variants if row["source_id"]}
    rows = [row for row in plain if row["id"] in sources] + variants
    first = engineer_api.post(
        "/api/chat-suites/", {"suite": "plain", "judge": judge_artifact.pk, "rows": plain}, format="json"
    ).json()
    second = engineer_api.post(
        "/api/chat-suites/", {"suite": "variants", "judge": judge_artifact.pk, "rows": rows}, format="json"
    ).json()
    with pytest.raises(ValidationFailed) as refused:
        behaviour_data_check(
            parameters={"judge": judge_artifact.pk, "stress_set": first["id"], "heldback_split": second["id"]}
        )
    assert refused.value.code == "prompt_overlap"


def test_teachers_with_another_tokenizer_need_sequence_level(
    engineer, engineer_api, experiment, sets, judge_artifact, chat_base, tiny_chat_dir, tmp_path
):
    from accounts.errors import ValidationFailed
    from compression.services.artifacts import artifact_register
    from compression.services.behaviour import behaviour_run_check

    other_dir = tmp_path / "other-tokenizer"
    shutil.copytree(tiny_chat_dir, other_dir)
    tokenizer = json.loads((other_dir / "tokenizer.json").read_text())
    tokenizer["added_tokens"].append({**tokenizer["added_tokens"][-1], "id": 99999, "content": "<|other|>"})
    (other_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    other = artifact_register(actor=engineer, name="other tokenizer", path=str(other_dir))
    same = artifact_register(actor=engineer, name="same tokenizer", path=str(_retrained(tiny_chat_dir, tmp_path)))
    config = json.loads((tiny_chat_dir / "config.json").read_text())
    before = _stored()
    response = engineer_api.post(
        f"/api/experiments/{experiment['id']}/runs/",
        {"method": "behavioural_distill", "parameters": _parameters(sets, judge_artifact, extra_teachers=[other.pk])},
        format="json",
    )
    assert response.status_code == 400
    assert "sequence" in response.json()["message"] and "parameters.extra_teachers" in response.json()["details"]
    assert _stored() == before
    source = behaviour_run_check(
        base=chat_base,
        parameters=_parameters(sets, judge_artifact, extra_teachers=[other.pk], level="sequence"),
        base_config=config,
    )
    assert [t["artifact"] for t in source["teachers"]] == [chat_base.pk, other.pk]
    source = behaviour_run_check(
        base=chat_base, parameters=_parameters(sets, judge_artifact, extra_teachers=[same.pk]), base_config=config
    )
    assert source["judge"]["digest"] == judge_artifact.digest
    assert source["stress_set"]["digest"] and source["heldback_split"]["examples"] > 0
    with pytest.raises(ValidationFailed):
        behaviour_run_check(
            base=chat_base,
            parameters=_parameters(sets, judge_artifact, extra_teachers=[judge_artifact.pk], level="sequence"),
            base_config=config,
        )


def _retrained(tiny_chat_dir, tmp_path):
    """The tiny chat model with other weights and the same tokenizer."""
    from compression.engine.tiny_chat import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path / "same-tokenizer", seed=7)


def test_an_evaluation_suite_overlapping_the_training_prompts_is_refused(sets, judge_artifact):
    from accounts.errors import ValidationFailed
    from evaluations.models import SuiteVersion
    from evaluations.services.behaviour_data import behaviour_data_check, behaviour_suite_overlap

    source = behaviour_data_check(parameters=_parameters(sets, judge_artifact))
    behaviour_suite_overlap(suite_version=SuiteVersion.objects.get(pk=sets["evaluation"]["id"]), data_source=source)
    for overlapping in ("stress", "heldback"):
        with pytest.raises(ValidationFailed) as refused:
            behaviour_suite_overlap(
                suite_version=SuiteVersion.objects.get(pk=sets[overlapping]["id"]), data_source=source
            )
        assert refused.value.code == "prompt_overlap" and "suite_version" in refused.value.details


def test_a_data_suite_version_is_refused_naming_it(engineer_api, experiment, sets, judge_artifact):
    """behavioural_distill's prompts come from its parameters; a data suite version beside them is a mistake."""
    before = _stored()
    response = engineer_api.post(
        f"/api/experiments/{experiment['id']}/runs/",
        {
            "method": "behavioural_distill",
            "parameters": _parameters(sets, judge_artifact),
            "data_suite_version": sets["stress"]["id"],
        },
        format="json",
    )
    assert response.status_code == 400 and "data_suite_version" in response.json()["details"]
    assert _stored() == before
