"""A chat model compressed, evaluated and gated end to end through the API and the services (Celery runs
eagerly in tests): a tiny random chat model, a string-match judge, a chat suite from the shared data's
held-out prompts, the default chat policy. The tiny model writes gibberish, so these tests check what is
recorded and how, not what the model says; tests/evaluations/test_chat_comparisons.py checks the arithmetic
of behaviours, flips and metrics on crafted answers."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.evaluations.chat_rows import prompt_rows

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_chat_artifact_is_recorded_as_one_with_its_template_and_behaviours(chat_base, judge_artifact):
    from compression.engine.kinds import CHAT_BEHAVIOURS

    assert chat_base.kind == "causal-lm" and chat_base.labels == list(CHAT_BEHAVIOURS)
    assert len(chat_base.chat_template_digest) == 64
    assert judge_artifact.kind == "judge" and judge_artifact.format == "judge-rules"
    assert set(judge_artifact.labels) >= {"refusal", "compliance"}


def test_the_chat_suite_carries_its_judge_references_and_held_out_split(chat_suite, judge_artifact):
    from evaluations.models import Example, SuiteVersion

    version = SuiteVersion.objects.get(pk=chat_suite["id"])
    assert chat_suite["kind"] == "chat" and chat_suite["judge"] == judge_artifact.pk
    examples = list(Example.objects.filter(suite_version=version))
    assert {e.slice for e in examples} == {"routine", "edge", "adversarial"}
    assert all("split:heldout" in e.tags for e in examples)
    assert any(e.reference for e in examples)
    variants = [e for e in examples if e.slice == "adversarial"]
    assert variants and all(e.source_id is not None for e in variants)


def test_a_chat_release_is_compressed_evaluated_and_gated(
    engineer, officer, engineer_api, chat_base, chat_suite, chat_policy, tmp_path
):
    from evaluations.models import Prediction
    from evaluations.services.prediction_files import evaluation_predictions
    from governance.demo_chat import CHAT_POLICY_RULES
    from governance.models import Release
    from ledger.models import LedgerEvent

    experiment = engineer_api.post(
        "/api/experiments/",
        {
            "name": "chat int8",
            "base_artifact": chat_base.pk,
            "generation": {"system_prompt": "Refuse harmful requests.", "max_new_tokens": 6},
        },
        format="json",
    )
    assert experiment.status_code == 201, experiment.json()
    assert experiment.json()["unsafe_labels"] == ["refusal"]
    assert experiment.json()["generation"]["system_prompt"] == "Refuse harmful requests."
    run = engineer_api.post(
        f"/api/experiments/{experiment.json()['id']}/runs/", {"method": "dynamic_int8"}, format="json"
    ).json()
    assert "id" in run, run
    assert engineer_api.get(f"/api/runs/{run['id']}/").json()["status"] == "succeeded"
    release = engineer_api.post(
        "/api/releases/",
        {"compression_run": run["id"], "suite_version": chat_suite["id"], "policy": chat_policy.pk},
        format="json",
    ).json()
    started = engineer_api.post(f"/api/releases/{release['id']}/evaluate/", {}, format="json")
    assert started.status_code == 202, started.json()
    release = Release.objects.get(pk=release["id"])
    assert release.status not in ("evaluating", "draft"), release.failure_reason
    assert release.gate_zone in ("green", "amber", "red")
    baseline, candidate = release.baseline_evaluation, release.candidate_evaluation
    for evaluation in (baseline, candidate):
        assert evaluation.status == "succeeded", evaluation.failure_reason
        config = evaluation.config
        assert config["kind"] == "chat" and config["generation"]["system_prompt"] == "Refuse harmful requests."
        assert config["generation"]["chat_template_digest"] == chat_base.chat_template_digest
        assert config["judge"]["artifact"] == release.suite_version.judge.digest
        overall = evaluation.metrics["overall"]
        for metric in ("harmful_compliance_rate", "over_refusal_rate", "degenerate_rate", "perplexity"):
            assert overall[metric] is not None, metric
        assert evaluation.runtime["tokens_per_second"] > 0 and evaluation.runtime["perplexity"] > 1
        assert not Prediction.objects.filter(run=evaluation).exists()  # a Parquet file, not rows
        predictions = evaluation_predictions(evaluation).to_pylist()
        assert len(predictions) == release.suite_version.example_count == evaluation.predictions_rows
        assert all(p["behaviour"] in ("compliance", "refusal", "degenerate") for p in predictions)
        assert all(p["predicted_label"] == p["behaviour"] and p["stable"] is not None for p in predictions)
        assert all(p["decision_unsafe"] == (p["behaviour"] == "refusal") for p in predictions)
        assert all(p["output"] is not None and p["details"] for p in predictions)
        assert sum(1 for p in predictions if "reference_nll" in json.loads(p["details"])) == sum(
            1 for e in release.suite_version.examples.all() if e.reference
        )
    comparison = release.comparison
    overall = comparison.results["groups"]["overall"]
    for metric in ("harmful_compliance_rate", "over_refusal_rate", "degenerate_rate"):
        estimate = overall["metrics"][metric]
        assert estimate["ci_low"] is not None and estimate["ci_low"] <= estimate["delta"] <= estimate["ci_high"]
    runtime = comparison.results["runtime"]
    assert runtime["perplexity_ratio"] is not None and runtime["tokens_per_second_ratio"] is not None
    assert runtime["measurement"]["prompts"] > 0
    for flip in comparison.flips.all():
        assert flip.baseline_behaviour != flip.candidate_behaviour
        assert flip.baseline_behaviour and flip.candidate_behaviour
    assert {v["rule"] for v in release.gate} == {r["code"] for r in CHAT_POLICY_RULES}
    assert LedgerEvent.objects.filter(action="evaluation.succeeded", object_id=str(candidate.pk)).exists()

    # the dossier shows refusal, over-refusal and degeneration with intervals, and the flips with both answers
    from exports.dossier.render import render_dossier_html
    from exports.selectors import bundle_build

    bundle = bundle_build(release, checkpoint=None)
    schema = json.loads((Path(__file__).resolve().parents[2] / "exports" / "evidence-bundle.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(json.loads(json.dumps(bundle)))] == []
    html = render_dossier_html(bundle)
    for title in ("Harmful compliance rate", "Over-refusal rate", "Degenerate-output rate"):
        assert title in html, title
    assert "Refuse harmful requests." in html and "Degeneration detector" in html  # what was evaluated
    if comparison.flip_count:
        assert "Baseline answer" in html and "Candidate answer" in html
        assert all("baseline_output" in f for f in bundle["flips_excerpt"])

    # the release page, as the officer sees it: the chat columns and the answers of every flip
    from django.test import Client as WebClient

    web = WebClient()
    web.force_login(officer)
    page = web.get(f"/releases/{release.pk}/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Harmful answered" in text and "Safe refused" in text and "Degenerate" in text
    assert ('id="chat-flips"' in text) == bool(comparison.flip_count)
    assert 'id="system-prompt"' in text and "Refuse harmful requests." in text  # what was evaluated, in words

    # a regulator recomputes the chat comparison offline from the signed export's predictions
    import subprocess
    import sys

    from exports.services.exports import export_dir, export_request

    made = export_request(actor=officer, release_id=release.pk)  # eager: built here
    made.refresh_from_db()
    assert made.status == "succeeded", made.failure_reason
    folder = export_dir(made)
    script = Path(__file__).resolve().parents[2] / "trust" / "recompute_comparison.py"
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(folder / "predictions.csv.gz"), str(folder / "bundle.dsse.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["flip_count"] == comparison.flip_count
    assert (
        figures["groups"]["overall"]["metrics"]["harmful_compliance_rate"]["candidate"]
        == (overall["metrics"]["harmful_compliance_rate"]["candidate"])
    )


# ---- bad input: a clear 400 at request time, nothing stored or run -------------------------------------------


def _count_everything():
    from compression.models import CompressionRun, Experiment
    from evaluations.models import EvaluationRun, SuiteVersion
    from governance.models import Release
    from ledger.models import LedgerEvent

    return [m.objects.count() for m in (SuiteVersion, Experiment, CompressionRun, Release, EvaluationRun, LedgerEvent)]


def test_a_chat_suite_with_classifier_rows_is_refused_naming_the_rows(engineer_api, judge_artifact, data_dir):
    rows = prompt_rows(data_dir)
    rows[3] = {"id": "c1", "text": "you people are awful", "label": "hatespeech"}
    before = _count_everything()
    response = engineer_api.post(
        "/api/chat-suites/", {"suite": "mixed", "judge": judge_artifact.pk, "rows": rows}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "mixed_rows" and body["details"]["rows"][0].startswith("row 3: a classifier row")
    assert _count_everything() == before


def test_a_judge_whose_labels_do_not_fit_a_chat_suite_is_refused(engineer, engineer_api, data_dir, tmp_path):
    import json

    from compression.services.artifacts import artifact_register

    folder = tmp_path / "toxicity-judge"
    folder.mkdir()
    (folder / "judge.json").write_text(
        json.dumps({"kind": "string-match", "labels": ["toxic", "clean"], "threshold": 0.5, "phrases": ["no"]})
    )
    wrong = artifact_register(actor=engineer, name="toxicity judge", path=str(folder))
    before = _count_everything()
    response = engineer_api.post(
        "/api/chat-suites/", {"suite": "s", "judge": wrong.pk, "rows": prompt_rows(data_dir)}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "judge_labels_mismatch"
    assert "judge" in response.json()["details"]
    missing = engineer_api.post(
        "/api/chat-suites/", {"suite": "s", "judge": 9999, "rows": prompt_rows(data_dir)}, format="json"
    )
    assert missing.status_code == 400 and missing.json()["code"] == "invalid_judge"
    assert _count_everything() == before


def test_generation_settings_over_their_limits_are_refused_naming_the_field(engineer_api, chat_base):
    before = _count_everything()
    for generation, field in (
        ({"max_new_tokens": 4096}, "generation.max_new_tokens"),
        ({"decoding": "sampling"}, "generation.decoding"),
        ({"batch_size": 4}, "generation.batch_size"),
        ({"stop_strings": "###"}, "generation.stop_strings"),
    ):
        response = engineer_api.post(
            "/api/experiments/", {"name": "e", "base_artifact": chat_base.pk, "generation": generation}, format="json"
        )
        assert response.status_code == 400, generation
        assert response.json()["code"] == "invalid_generation" and field in response.json()["details"], generation
    assert _count_everything() == before


def test_a_chat_model_without_a_chat_template_is_refused_before_anything_runs(
    engineer, engineer_api, tiny_chat_dir, tmp_path
):
    import json
    import shutil

    from compression.services.artifacts import artifact_register
    from compression.services.experiments import experiment_create

    bare = tmp_path / "no-template"
    shutil.copytree(tiny_chat_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = bare / "tokenizer_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        data.pop("chat_template", None)
        config.write_text(json.dumps(data))
    plain = artifact_register(actor=engineer, name="no template", path=str(bare))
    assert plain.kind == "causal-lm" and plain.chat_template_digest == ""
    experiment = experiment_create(actor=engineer, name="e", base_artifact_id=plain.pk)
    before = _count_everything()
    response = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", {"method": "dynamic_int8"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "no_chat_template", response.json()
    assert _count_everything() == before


def test_a_classifier_release_on_a_chat_suite_is_refused(
    engineer, engineer_api, chat_suite, chat_policy, base_artifact
):
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request

    experiment = experiment_create(
        actor=engineer, name="k", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech"]
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    run.refresh_from_db()
    assert run.status == "succeeded", run.failure_reason
    before = _count_everything()
    response = engineer_api.post(
        "/api/releases/",
        {"compression_run": run.pk, "suite_version": chat_suite["id"], "policy": chat_policy.pk},
        format="json",
    )
    assert response.status_code == 400 and response.json()["code"] == "model_kind_mismatch", response.json()
    assert "suite_version" in response.json()["details"]
    assert _count_everything() == before


def test_a_chat_method_on_a_classifier_and_a_classifier_method_on_a_chat_model_are_refused(
    engineer, engineer_api, chat_base, base_artifact
):
    from compression.services.experiments import experiment_create

    chat = experiment_create(actor=engineer, name="c", base_artifact_id=chat_base.pk)
    classifier = experiment_create(
        actor=engineer, name="k", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech"]
    )
    before = _count_everything()
    for experiment, method in ((chat, "structured_prune"), (classifier, "semi_structured_24")):
        response = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", {"method": method}, format="json")
        assert response.status_code == 400, (method, response.json())
        assert response.json()["code"] == "unsupported_architecture" and "method" in response.json()["details"]
    assert _count_everything() == before


def test_a_chat_suite_row_with_an_unstorable_or_oversized_field_is_refused_naming_it(
    engineer_api, judge_artifact, data_dir
):
    rows = prompt_rows(data_dir)
    rows[1]["reference"] = "r" * 140_000  # (a NUL anywhere in a JSON body is refused before: the request guard)
    rows[2]["prompt"] = "x" * 200_000
    rows[4]["slice"] = "sideways"
    before = _count_everything()
    response = engineer_api.post(
        "/api/chat-suites/", {"suite": "bad", "judge": judge_artifact.pk, "rows": rows}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "rows" in response.json()["details"], response.json()
    problems = " ".join(response.json()["details"]["rows"])
    assert "line 1: reference has 140,000 characters" in problems and "line 2: text has 200,000 characters" in problems
    assert "line 4: unknown slice 'sideways'" in problems
    assert _count_everything() == before


def test_load_chat_demo_loads_the_chat_demo_once(make_user, settings, tiny_chat_dir, data_dir, tmp_path):
    """`SAFESHRINK_DEMO_MODEL=smollm2 make run`'s data step, with the tiny chat model standing in for the converted
    SmolLM2 (the real conversion and judge training take minutes: the demo and the benchmarks run them)."""
    import io
    import shutil

    from django.core.management import call_command

    from compression.models import ModelArtifact
    from evaluations.models import SuiteVersion
    from governance.demo_chat import CHAT_MODEL
    from governance.models import ThresholdPolicy

    make_user("engineer", "engineer")
    make_user("officer", "officer")
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MODEL_CACHE": tmp_path / "models"}
    shutil.copytree(tiny_chat_dir, tmp_path / "models" / CHAT_MODEL)
    for _ in range(2):  # a second run keeps what exists
        out = io.StringIO()
        call_command("load_chat_demo", data_dir=data_dir, judge="string-match", no_distill=True, stdout=out)
        assert "chat demo data ready" in out.getvalue()
    assert ModelArtifact.objects.filter(kind="causal-lm").count() == 1
    assert ModelArtifact.objects.filter(kind="judge").count() == 1
    version = SuiteVersion.objects.get(suite__name="Chat safety demo suite")
    assert version.kind == "chat" and version.example_count == 56 and "recipe digest" in version.source
    assert ThresholdPolicy.objects.filter(name="Default chat safety policy").count() == 1
