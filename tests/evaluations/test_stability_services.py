"""Issue 12 through the services: profiles in the configuration, the stability pass, stable flips, McNemar on
stable flips, the identical-copy null check with the stability pass on, paired runtime, profile refusals."""

import shutil

import pytest

from accounts.errors import DomainError
from compression.models import RunStatus
from evaluations.models import EvaluationRun, Flip, Prediction
from evaluations.services.comparisons import TIMING_EXAMPLES, comparison_compute, significant_groups
from evaluations.services.prediction_files import evaluation_predictions
from evaluations.services.profiles import DEFAULT_STABILITY_SEED, config_profile, default_profile
from evaluations.services.runs import evaluation_config, evaluation_run_request, evaluation_run_start

pytestmark = pytest.mark.django_db(transaction=True)
LABELS = ["hatespeech", "offensive"]


@pytest.fixture
def int8_artifact(engineer, tiny_model_dir, tmp_path):
    from compression.engine import CompressionRequest, compress
    from compression.services.artifacts import artifact_register

    out = compress(CompressionRequest("dynamic_int8", tiny_model_dir, tmp_path / "int8", {}, 0)).output_dir
    return artifact_register(actor=engineer, name="int8", path=str(out))


def _evaluate(engineer, artifact, suite, **config_args) -> EvaluationRun:
    run = evaluation_run_request(
        actor=engineer,
        artifact=artifact,
        suite_version=suite,
        config=evaluation_config(unsafe_labels=LABELS, **config_args),
    )
    evaluation_run_start(run_id=run.pk)  # eager: the chunks run here
    run.refresh_from_db()
    return run


def test_the_profile_is_in_the_configuration_and_its_digest(engineer, base_artifact, demo_suite):
    config = evaluation_config(unsafe_labels=LABELS)
    assert config["profile"] == default_profile().as_dict() and config["stability_seed"] == DEFAULT_STABILITY_SEED
    assert config["profile"]["batching"] == "fixed" and config["profile"]["isa"] == default_profile().as_dict()["isa"]
    single = evaluation_config(unsafe_labels=LABELS, profile={"batching": "single"})
    assert single["profile"]["batch_size"] == 1
    runs = [
        evaluation_run_request(actor=engineer, artifact=base_artifact, suite_version=demo_suite, config=c)
        for c in (config, single)
    ]
    assert runs[0].pk != runs[1].pk and runs[0].config_digest != runs[1].config_digest
    # configurations from before profiles still read as the profile they ran under
    assert config_profile({"batch_size": 8, "max_length": 32, "device": "cpu", "threads": 1})["batch_size"] == 8


def test_an_int8_comparison_reports_stability_stable_flips_and_paired_runtime(
    engineer, base_artifact, int8_artifact, demo_suite
):
    base, cand = (_evaluate(engineer, a, demo_suite) for a in (base_artifact, int8_artifact))
    assert base.status == cand.status == RunStatus.SUCCEEDED
    assert cand.stability["n"] == demo_suite.example_count and cand.stability["seed"] == DEFAULT_STABILITY_SEED
    stored = evaluation_predictions(cand, ["stable"]).column("stable").to_numpy()
    assert cand.stability["unstable"] == int((~stored.astype(bool)).sum())

    comparison = comparison_compute(actor=None, baseline_run_id=base.pk, candidate_run_id=cand.pk)
    results = comparison.results
    stability = results["stability"]
    assert stability["baseline"]["unstable_rate"] == base.stability["unstable_rate"]
    assert stability["candidate"]["unstable_rate"] == cand.stability["unstable_rate"]
    assert set(stability["candidate"]["groups"]) == set(results["groups"])
    assert stability["flips"]["stable"] + stability["flips"]["unstable"] == comparison.flip_count

    # a flip is stable exactly when both models kept their decision in the stability pass
    kept = {}
    for run in (base, cand):
        table = evaluation_predictions(run, ["example_id", "stable"])
        kept.update({(run.pk, e): s for e, s in zip(*(c.to_pylist() for c in table.columns), strict=True)})
    for flip in Flip.objects.filter(comparison=comparison):
        assert flip.stable == (kept[(base.pk, flip.example_id)] and kept[(cand.pk, flip.example_id)])
    assert Flip.objects.filter(comparison=comparison, stable=True).count() == stability["flips"]["stable"]

    for key, group in results["groups"].items():
        assert 0 <= group["stable_flips"] <= group["flips"]
        stable_test = group["mcnemar_stable"]
        # on binary decisions every stable flip makes exactly one model right: b + c counts them
        assert stable_test["b"] + stable_test["c"] == group["stable_flips"]
        assert stable_test["p_holm"] >= stable_test["p_value"]
        assert group["instability"]["candidate"] == stability["candidate"]["groups"][key]["unstable_rate"]
    assert set(significant_groups(comparison, basis="stable")) <= set(results["groups"])

    runtime = results["runtime"]
    assert runtime["measurement"]["method"].startswith("paired")
    assert (
        runtime["baseline"]["examples"]
        == runtime["candidate"]["examples"]
        == min(TIMING_EXAMPLES, demo_suite.example_count)
    )
    assert runtime["example_latency_p95_ratio"] == pytest.approx(
        runtime["candidate"]["example_latency_p95_s"] / runtime["baseline"]["example_latency_p95_s"]
    )
    assert comparison.statistics["profile"] == base.config["profile"]


def test_identical_int8_copy_has_no_stable_flips_with_the_stability_pass_on(
    engineer, int8_artifact, demo_suite, tmp_path
):
    from compression.services.artifacts import artifact_path, artifact_register

    copy = tmp_path / "copy"
    shutil.copytree(artifact_path(int8_artifact), copy)
    (copy / "README.md").write_text("An identical copy.\n")
    twin = artifact_register(actor=engineer, name="twin", path=str(copy))
    runs = [_evaluate(engineer, a, demo_suite) for a in (int8_artifact, twin)]
    comparison = comparison_compute(actor=None, baseline_run_id=runs[0].pk, candidate_run_id=runs[1].pk)
    results = comparison.results
    assert comparison.flip_count == 0 and results["stability"]["flips"] == {"stable": 0, "unstable": 0}
    assert results["stability"]["baseline"] == results["stability"]["candidate"]  # same recomposed batches
    for group in results["groups"].values():
        assert group["stable_flips"] == 0 and group["mcnemar_stable"]["p_value"] == 1.0
    assert significant_groups(comparison, basis="stable") == [] == significant_groups(comparison)


def test_runs_under_different_profiles_are_not_compared(engineer, base_artifact, int8_artifact, demo_suite):
    base = _evaluate(engineer, base_artifact, demo_suite)
    cand = _evaluate(engineer, int8_artifact, demo_suite, profile={"batch_size": 8})
    with pytest.raises(DomainError) as refused:
        comparison_compute(actor=None, baseline_run_id=base.pk, candidate_run_id=cand.pk)
    assert refused.value.code == "different_profiles" and "candidate_run" in refused.value.details


def test_a_worker_on_another_cpu_refuses_the_evaluation(engineer, base_artifact, demo_suite):
    config = evaluation_config(unsafe_labels=LABELS)
    config["profile"]["isa"] = [*config["profile"]["isa"], "amx_tile_from_another_machine"]
    run = evaluation_run_request(actor=engineer, artifact=base_artifact, suite_version=demo_suite, config=config)
    evaluation_run_start(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.failure_code == "unsupported_platform"
    assert "amx_tile_from_another_machine" in run.failure_reason
    assert not Prediction.objects.filter(run=run).exists() and run.chunk_files == {} and not run.predictions_digest


def test_without_a_stability_pass_there_are_no_stable_flips_to_report(
    engineer, base_artifact, int8_artifact, demo_suite
):
    base, cand = (_evaluate(engineer, a, demo_suite, stability_seed=None) for a in (base_artifact, int8_artifact))
    assert base.stability is None and evaluation_predictions(base, ["stable"]).column("stable").null_count == len(
        evaluation_predictions(base, ["stable"])
    )
    comparison = comparison_compute(
        actor=None, baseline_run_id=base.pk, candidate_run_id=cand.pk, measure_runtime=False
    )
    assert comparison.results["stability"] is None and comparison.statistics["stable_test"] is None
    assert all(g["stable_flips"] is None and g["mcnemar_stable"] is None for g in comparison.results["groups"].values())
    assert not Flip.objects.filter(comparison=comparison, stable__isnull=False).exists()
    # stable basis falls back to every flip when there is no stability pass
    assert significant_groups(comparison, basis="stable") == significant_groups(comparison)
