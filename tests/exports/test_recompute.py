"""Recomputable by a third party (issue 12): a signed export carries every example's predictions by both models
(predictions.csv.gz, its sha256 in the signed bundle), and trust/recompute_comparison.py, which needs nothing but
numpy and the standard library, recomputes every figure of the comparison from it: equal to the stored ones."""

import ast
import base64
import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from compression.models import RunStatus
from evaluations.models import Comparison
from evaluations.services.suites import suite_derive_perturbed
from exports.selectors import PREDICTION_COLUMNS
from exports.services.exports import export_dir, export_request, export_verify, regulator_grant
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "trust" / "recompute_comparison.py"
SCHEMA = ROOT / "exports" / "evidence-bundle.schema.json"
NOT_RECOMPUTED = {"ci_low", "ci_high", "resamples_used", "resamples_dropped", "sampler"}  # the bootstrap's


@pytest.fixture
def export(engineer, officer, base_artifact, demo_suite, demo_policy):
    """An export of an evaluated release on a suite with perturbed examples: two variants of every routine
    example, which also lifts two subgroups over the comparison's minimum size (every kind of figure is
    exercised)."""
    suite = suite_derive_perturbed(actor=engineer, suite_version_id=demo_suite.pk, kinds=["leetspeak", "casing"])
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=suite, policy=demo_policy)
    made = export_request(actor=officer, release_id=release.pk)  # eager: built here
    made.refresh_from_db()
    assert made.status == RunStatus.SUCCEEDED, made.failure_reason
    return made


def _bundle(export) -> dict:
    envelope = json.loads((export_dir(export) / "bundle.dsse.json").read_text())
    return json.loads(base64.b64decode(envelope["payload"]))


def _recompute(predictions: Path, envelope: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The script as a regulator runs it: isolated mode (-I: no PYTHONPATH, not the repository on the path),
    from another directory."""
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(predictions), str(envelope)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _flatten(value, path=""):
    if not isinstance(value, dict | list):
        return {path: value}
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return {p: v for k, item in items for p, v in _flatten(item, f"{path}/{k}").items()}


def test_the_script_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(SCRIPT.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add(node.module.split(".")[0])
    assert "numpy" in imported
    assert imported - {"numpy"} <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert not {"scipy", "django", "trust", "evaluations", "exports"} & imported


def test_every_figure_of_the_comparison_is_recomputed_exactly_from_the_signed_predictions(export, tmp_path):
    folder = export_dir(export)
    data = (folder / "predictions.csv.gz").read_bytes()
    bundle = _bundle(export)
    record = bundle["predictions"]
    comparison = Comparison.objects.get(pk=bundle["comparison"]["id"])
    assert record["sha256"] == hashlib.sha256(data).hexdigest() == export.predictions_sha256
    assert record["size_bytes"] == len(data) == export.predictions_bytes
    assert data[4:8] == b"\0\0\0\0"  # gzip mtime 0: the same records give the same bytes
    rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode())))
    assert tuple(rows[0]) == PREDICTION_COLUMNS == tuple(record["columns"])
    assert len(rows) - 1 == record["rows"] == bundle["suite_version"]["example_count"]
    assert bundle["comparison"]["statistics"]["profile"] and bundle["comparison"]["stability"] is not None

    result = _recompute(folder / "predictions.csv.gz", folder / "bundle.dsse.json", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 mismatch(es)" in result.stderr and "every figure matches the bundle" in result.stderr
    figures = json.loads(result.stdout)

    # Against the stored comparison itself (not only the bundle's copy), bit for bit: both sides ran here.
    stored = comparison.results
    for group in stored["groups"].values():
        for estimate in group["metrics"].values():
            for key in NOT_RECOMPUTED:
                estimate.pop(key, None)
    assert figures["flip_count"] == comparison.flip_count
    assert figures["groups"] == stored["groups"]
    assert _flatten(figures["groups"]) == _flatten(stored["groups"])  # same keys, same values, none missing
    assert figures["stability"] == {k: stored["stability"][k] for k in ("baseline", "candidate", "flips")}
    assert figures["runtime"] == {k: stored["runtime"][k] for k in figures["runtime"]}
    assert set(figures["runtime"]) == {
        "throughput_ratio",
        "example_latency_p95_ratio",
        "size_ratio",
        "peak_memory_ratio",
        "tokens_per_second_ratio",
        "perplexity_ratio",
    }
    excerpt = (
        [{k: f[k] for k in figures["flips_excerpt"][0]} for f in bundle["flips_excerpt"]]
        if bundle["flips_excerpt"]
        else []
    )
    assert figures["flips_excerpt"] == excerpt

    # Every kind of figure was exercised: slices, subgroups, perturbations, classes, stable tests.
    overall = figures["groups"]["overall"]
    assert {"macro_f1", "perturbation_accuracy", "consistency", "fnr_gap", "brier", "nll", "ece"} <= set(
        overall["metrics"]
    )
    assert overall["metrics"]["perturbation_accuracy"]["baseline"] is not None
    assert any(k.startswith("subgroup:") for k in figures["groups"]) and "slice:adversarial" in figures["groups"]
    assert {"p_holm", "p_bh"} <= set(overall["mcnemar"]) and {"p_holm", "p_bh"} <= set(overall["mcnemar_stable"])
    assert overall["instability"] is not None and overall["n"] == len(rows) - 1


def _synthetic_comparison(engineer, artifact, n: int = 2600) -> Comparison:
    """A comparison of two made-up runs on a made-up suite, through the real comparison service: most decisions
    flipped (more than 2,000 discordant pairs overall: the log-space McNemar branch), about one in ten decisions
    unstable, probabilities 0 and 1 (clipped in nll), perturbed examples, a label that is no model class, a
    subgroup too small to be compared. What the tiny model's real comparison (one flip) leaves untested."""
    from evaluations.models import EvaluationRun, Prediction
    from evaluations.services.comparisons import comparison_compute
    from evaluations.services.suites import ExampleRow, suite_version_import

    labels = list(artifact.labels)
    rng = np.random.default_rng(12)
    truth = [*labels, "harmful"]
    subgroups = ["", "alpha", "beta", "gamma", ""]
    rows = [
        ExampleRow(
            external_id=f"ex-{i}",
            text=f"synthetic example {i}",
            label=truth[int(rng.integers(len(truth)))],
            slice=("routine", "edge", "adversarial")[i % 3],
            line=i + 1,
            subgroup="tiny" if i < 10 else subgroups[i % 5],
            source_id=f"ex-{i - 2400}" if i >= 2400 else "",
        )
        for i in range(n)
    ]
    unsafe = [label for label in truth if label != "normal"]
    suite = suite_version_import(
        actor=engineer, suite_name="synthetic", rows=rows, unsafe_labels=unsafe, safe_labels=["normal"]
    )
    base_p = rng.uniform(0.0, 1.0, n)
    base_p[:5], base_p[5:10] = 0.0, 1.0
    flipped = rng.random(n) < 0.85
    cand_d = (base_p >= 0.5) ^ flipped
    cand_p = np.where(cand_d, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
    runs = []
    for name, p in (("baseline", base_p), ("candidate", cand_p)):
        run = EvaluationRun.objects.create(
            artifact=artifact, suite_version=suite, config={}, config_digest=name, status=RunStatus.SUCCEEDED
        )
        stable = rng.random(n) > 0.1
        Prediction.objects.bulk_create(
            Prediction(
                run=run,
                example_id=example_id,
                unsafe_prob=float(p[i]),
                probs=[],
                predicted_label=labels[int(rng.integers(len(labels)))],
                decision_unsafe=bool(p[i] >= 0.5),
                recomposed_unsafe_prob=float(p[i] if stable[i] else 1.0 - p[i]),
                stable=bool(stable[i]),
            )
            for i, example_id in enumerate(suite.examples.order_by("position").values_list("pk", flat=True))
        )
        runs.append(run)
    return comparison_compute(
        actor=None, baseline_run_id=runs[0].pk, candidate_run_id=runs[1].pk, resamples=50, measure_runtime=False
    )


def test_a_comparison_with_many_flips_and_unstable_decisions_is_recomputed_exactly(engineer, base_artifact, tmp_path):
    from evaluations.models import Flip
    from exports.services.exports import predictions_file

    comparison = _synthetic_comparison(engineer, base_artifact)
    data, _ = predictions_file(comparison)
    (tmp_path / "predictions.csv.gz").write_bytes(data)
    results = comparison.results
    flips = Flip.objects.filter(comparison=comparison).select_related("example").order_by("example__position")[:25]
    bundle = {  # the parts of a bundle the script reads, as bundle_build writes them
        "comparison": {
            "statistics": comparison.statistics,
            "flip_count": comparison.flip_count,
            **{k: results[k] for k in ("groups", "stability", "runtime")},
        },
        "predictions": {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
            "classes": list(base_artifact.labels),
        },
        "flips_excerpt": [
            {
                "external_id": f.example.external_id,
                "baseline_prob": f.baseline_prob,
                "candidate_prob": f.candidate_prob,
                "direction": f.direction,
                "candidate_correct": f.candidate_correct,
                "stable": f.stable,
            }
            for f in flips
        ],
    }
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    result = _recompute(tmp_path / "predictions.csv.gz", tmp_path / "bundle.json", tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for group in results["groups"].values():
        for estimate in group["metrics"].values():
            for key in NOT_RECOMPUTED:
                estimate.pop(key, None)
    assert _flatten(figures["groups"]) == _flatten(results["groups"])  # bit for bit (both sides ran here)
    assert figures["stability"] == {k: results["stability"][k] for k in ("baseline", "candidate", "flips")}
    assert figures["flip_count"] == comparison.flip_count and figures["flips_excerpt"] == bundle["flips_excerpt"]

    overall, groups = figures["groups"]["overall"], figures["groups"]
    assert overall["mcnemar"]["b"] + overall["mcnemar"]["c"] > 2000  # the log-space branch
    assert "subgroup:tiny" not in groups and {"subgroup:alpha", "subgroup:beta", "subgroup:gamma"} <= set(groups)
    p_values = [g["mcnemar_stable"][k] for g in groups.values() for k in ("p_value", "p_holm", "p_bh")]
    assert len(set(p_values)) > 3 and min(p_values) < 1.0  # the adjustments had something to adjust
    assert 0 < overall["stable_flips"] < overall["flips"] and overall["metrics"]["macro_f1"]["baseline"] is not None
    assert overall["metrics"]["consistency"]["baseline"] is not None and overall["metrics"]["fnr_gap"]["delta"]


def _tampered(data: bytes) -> bytes:
    """The predictions file with one candidate decision inverted (re-compressed as the export writes it)."""
    rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode())))
    column = rows[0].index("candidate_decision")
    rows[1][column] = "0" if rows[1][column] == "1" else "1"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return gzip.compress(text.getvalue().encode(), compresslevel=9, mtime=0)


def test_one_changed_decision_fails_the_digest_check_and_the_recomputation(export, tmp_path):
    folder = export_dir(export)
    envelope = (folder / "bundle.dsse.json").read_bytes()
    original = (folder / "predictions.csv.gz").read_bytes()
    tampered = tmp_path / "predictions.csv.gz"
    tampered.write_bytes(_tampered(original))

    result = _recompute(tampered, folder / "bundle.dsse.json", tmp_path)
    assert result.returncode == 1
    assert "is not the file the bundle records" in result.stderr
    # Beyond the digest: the inverted decision changes the flip count of every group the example is in.
    assert "/flip_count: recomputed" in result.stderr and "/groups/overall/flips: recomputed" in result.stderr

    report = export_verify(envelope, tampered.read_bytes())
    assert (report.valid, report.intact, report.predictions_match) == (False, True, False)
    assert "not the one the bundle records" in report.problems[0]
    good = export_verify(envelope, original)
    assert (good.valid, good.predictions_match) == (True, True)
    with pytest.raises(CommandError, match="INVALID"):
        call_command("verify_export", str(folder / "bundle.dsse.json"), "--predictions", str(tampered))
    call_command("verify_export", str(folder / "bundle.dsse.json"), "--predictions", str(folder / "predictions.csv.gz"))
    assert not export_verify((folder / "dossier.pdf").read_bytes(), original).valid  # checked against the bundle only


def test_the_predictions_part_is_downloaded_like_the_others(export, officer, make_user):
    regulator, stranger = make_user("rhea", "regulator"), make_user("sven", "regulator")
    regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=export.release_id, days=7, reason="audit")
    response = api_client_for(regulator).get(f"/api/exports/{export.pk}/predictions/")
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    assert "predictions.csv.gz" in response["Content-Disposition"] and "Content-Encoding" not in response
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == export.predictions_sha256
    event = LedgerEvent.objects.get(action="access.downloaded", actor_username="rhea")
    assert json.loads(event.payload_json) == {
        "part": "predictions",
        "release": export.release_id,
        "sha256": export.predictions_sha256,
    }
    assert api_client_for(stranger).get(f"/api/exports/{export.pk}/predictions/").status_code == 404
    assert LedgerEvent.objects.filter(action="access.denied", actor_username="sven").count() == 1
    details = api_client_for(officer).get(f"/api/exports/{export.pk}/").json()
    assert details["predictions_sha256"] == export.predictions_sha256 and details["predictions_bytes"] > 0
    assert api_client_for(officer).get(f"/api/exports/{export.pk}/everything/").status_code == 400


def test_an_export_before_the_comparison_has_no_predictions_part(
    engineer, officer, base_artifact, demo_suite, demo_policy
):
    import jsonschema

    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from governance.services.releases import release_create

    experiment = experiment_create(
        actor=engineer, name="exp", base_artifact_id=base_artifact.pk, risk_tier="low", unsafe_labels=["offensive"]
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    release = release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )
    export = export_request(actor=officer, release_id=release.pk)
    export.refresh_from_db()
    assert export.status == RunStatus.SUCCEEDED, export.failure_reason
    bundle = _bundle(export)
    assert bundle["comparison"] is None and bundle["predictions"] is None and export.predictions_sha256 == ""
    jsonschema.validate(bundle, json.loads(SCHEMA.read_text()))
    assert not (export_dir(export) / "predictions.csv.gz").exists()
    response = api_client_for(officer).get(f"/api/exports/{export.pk}/predictions/")
    assert response.status_code == 409 and response.json()["code"] == "predictions_missing"
