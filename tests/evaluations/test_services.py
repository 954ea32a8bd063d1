"""Suites, chunked evaluations and comparisons through the Django services and API."""

import shutil

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from compression.models import RunStatus
from evaluations.models import Comparison, EvaluationRun, Example, Prediction, Suite, SuiteVersion
from evaluations.services.comparisons import comparison_compute, significant_groups
from evaluations.services.runs import (
    evaluation_chunk_execute,
    evaluation_config,
    evaluation_run_request,
    evaluation_run_start,
)
from evaluations.services.suites import ExampleRow, suite_derive_perturbed, suite_version_import

pytestmark = pytest.mark.django_db(transaction=True)
CSV = (
    b"id,comment,class,part,group\n"
    b"a1,you are all wonderful,normal,routine,\n"
    b"a2,go back where you came from,hatespeech,routine,refugee\n"
    b"a3,how do I kill a python process,safe,edge,\n"
)


def _upload(api, data: bytes, name="suite.csv", **fields):
    body = {
        "file": SimpleUploadedFile(name, data),
        "suite": "uploaded",
        "unsafe_labels": ["hatespeech"],
        "safe_labels": ["normal", "safe"],
        "mapping": '{"text": "comment", "label": "class", "slice": "part", "subgroup": "group"}',
        **fields,
    }
    return api.post("/api/suites/import/", body, format="multipart")


def _imported(api, response) -> dict:
    """The upload's import (202, then run on a worker: eager in tests), as its status URL shows it."""
    assert response.status_code == 202, response.content
    return api.get(response.json()["url"]).json()


def test_csv_import_with_a_column_mapping(engineer_api):
    r = _imported(engineer_api, _upload(engineer_api, CSV))
    assert r["status"] == "succeeded", r
    version = SuiteVersion.objects.get(pk=r["suite_version"]["id"])
    assert version.example_count == 3 and version.number == 1
    assert list(version.examples.values_list("external_id", "slice", "is_unsafe", "subgroup")) == [
        ("a1", "routine", False, ""),
        ("a2", "routine", True, "refugee"),
        ("a3", "edge", False, ""),
    ]
    again = _imported(engineer_api, _upload(engineer_api, CSV))  # identical content: the same version
    assert again["suite_version"]["id"] == version.pk


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"id,comment,class,part,group\na1,,normal,routine,\n", "line 2: empty text"),
        (b"id,comment,class,part,group\na1,hi,unknown,routine,\n", "line 2"),
        (b"id,comment,class,part,group\na1,hi,normal,routine,\na1,ho,normal,routine,\n", "line 3"),
        (b"id,comment,class,part,group\na1,hi,normal,sideways,\n", "line 2"),
        (b"id,text\na1,hi\n", "comment"),
        (b"id,comment,class,part,group\na1,caf\xe9,normal,routine,\n", "UTF-8"),
    ],
)
def test_bad_files_are_refused_whole_with_the_line(engineer_api, data, expected):
    r = _upload(engineer_api, data)  # a small file: checked in the request too, so refused at once
    assert r.status_code == 400, r.content
    body = r.json()
    assert body["code"] == "invalid_rows"
    assert any(expected in line for line in body["details"]["file"]), body
    assert Suite.objects.count() == 0 and Example.objects.count() == 0


def test_oversized_file_is_refused(engineer_api, settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MAX_UPLOAD_BYTES": 50}
    r = _upload(engineer_api, CSV)
    assert r.status_code == 400 and "file" in r.json()["details"]
    assert Example.objects.count() == 0


def test_perturbed_version_links_every_variant_to_its_source(engineer, demo_suite):
    version = suite_derive_perturbed(
        actor=engineer, suite_version_id=demo_suite.pk, kinds=["leetspeak", "casing"], seed=3, limit=10
    )
    assert version.suite_id == demo_suite.suite_id and version.number == demo_suite.number + 1
    variants = version.examples.filter(source__isnull=False).select_related("source")
    assert variants.count() == 20
    for v in variants:
        assert v.slice == "adversarial" and v.label == v.source.label and v.text != v.source.text
        assert v.source.suite_version_id == version.pk
    again = suite_derive_perturbed(
        actor=engineer, suite_version_id=demo_suite.pk, kinds=["leetspeak", "casing"], seed=3, limit=10
    )
    assert again.pk == version.pk  # seeded: the same content


def test_chunked_evaluation_is_idempotent_per_chunk(engineer, base_artifact, demo_suite, settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "EVAL_CHUNK_SIZE": 50}
    run = evaluation_run_request(
        actor=engineer,
        artifact=base_artifact,
        suite_version=demo_suite,
        config=evaluation_config(unsafe_labels=["hatespeech", "offensive"]),
    )
    evaluation_run_start(run_id=run.pk)  # eager: the chunks run here
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.chunks_total == 4 and run.chunks_done == [0, 1, 2, 3]
    files = dict(run.chunk_files)
    evaluation_chunk_execute(run_id=run.pk, chunk=2)  # a second delivery of one chunk
    evaluation_run_start(run_id=run.pk)  # and of the start
    run.refresh_from_db()
    assert run.chunk_files == files and run.predictions_rows == demo_suite.example_count
    assert not Prediction.objects.filter(run=run).exists()  # predictions are a Parquet file, not rows
    metrics = run.metrics
    assert {"overall", "slice:routine", "slice:edge", "slice:adversarial"} <= set(metrics)
    assert {"macro_f1", "ece", "brier", "nll", "fnr_gap"} <= set(metrics["overall"])
    assert run.runtime["examples"] == demo_suite.example_count and run.runtime["example_latency_p95_s"] > 0


def test_null_check_identical_copy_has_no_flips_and_no_significant_delta(
    engineer, tiny_model_dir, tmp_path, demo_suite
):
    from compression.services.artifacts import artifact_register

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "README.md").write_text("An identical copy of the weights.\\n")
    base = artifact_register(actor=engineer, name="base", path=str(tiny_model_dir))
    twin = artifact_register(actor=engineer, name="twin", path=str(copy))
    assert base.digest != twin.digest
    config = evaluation_config(unsafe_labels=["hatespeech", "offensive"])
    runs = [
        evaluation_run_request(actor=engineer, artifact=a, suite_version=demo_suite, config=config)
        for a in (base, twin)
    ]
    for run in runs:
        evaluation_run_start(run_id=run.pk)
    comparison = comparison_compute(actor=None, baseline_run_id=runs[0].pk, candidate_run_id=runs[1].pk)
    assert comparison.flip_count == 0
    for group in comparison.results["groups"].values():
        assert group["flips"] == 0 and group["mcnemar"]["p_value"] == 1.0
        for metric in group["metrics"].values():
            if metric["delta"] is not None:
                assert metric["delta"] == 0 and metric["ci_low"] == 0 and metric["ci_high"] == 0
    assert significant_groups(comparison) == []


def _synthetic_run(artifact, version, decisions, probs):
    run = EvaluationRun.objects.create(
        artifact=artifact,
        suite_version=version,
        config={},
        config_digest=str(id(decisions)),
        status=RunStatus.SUCCEEDED,
    )
    labels = artifact.labels
    Prediction.objects.bulk_create(
        [
            Prediction(
                run=run,
                example=e,
                unsafe_prob=float(p),
                probs=[1 - p, p, 0.0],
                predicted_label=labels[1] if d else labels[0],
                decision_unsafe=bool(d),
            )
            for e, d, p in zip(version.examples.order_by("position"), decisions, probs, strict=True)
        ]
    )
    return run


def test_damaged_model_is_flagged_exactly_on_the_slice_that_changed(engineer, base_artifact):
    rng = np.random.default_rng(0)
    rows = [
        ExampleRow(
            external_id=f"{s}{i}",
            text=f"{s} text {i}",
            label=("hatespeech" if i % 2 else "normal"),
            slice=s,
            line=i + 2,
        )
        for s in ("routine", "edge", "adversarial")
        for i in range(200)
    ]
    version = suite_version_import(
        actor=engineer, suite_name="damage", rows=rows, unsafe_labels=["hatespeech"], safe_labels=["normal"]
    )
    truth = np.array([r.label == "hatespeech" for r in rows])
    baseline = truth.copy()
    baseline[rng.choice(len(rows), 30, replace=False)] ^= True  # a decent but imperfect baseline
    damaged = baseline.copy()
    adversarial_unsafe = [i for i, r in enumerate(rows) if r.slice == "adversarial" and truth[i] and baseline[i]]
    damaged[adversarial_unsafe[:40]] = False  # pushed toward benign on one slice only
    probs_b, probs_d = np.where(baseline, 0.8, 0.2), np.where(damaged, 0.8, 0.2)
    comparison = comparison_compute(
        actor=None,
        baseline_run_id=_synthetic_run(base_artifact, version, baseline, probs_b).pk,
        candidate_run_id=_synthetic_run(base_artifact, version, damaged, probs_d).pk,
        resamples=2000,
    )
    groups = comparison.results["groups"]
    recall = groups["slice:adversarial"]["metrics"]["unsafe_recall"]
    assert recall["ci_high"] < 0 and groups["slice:adversarial"]["flips"] == 40
    for untouched in ("slice:routine", "slice:edge"):
        assert groups[untouched]["flips"] == 0
        assert groups[untouched]["metrics"]["unsafe_recall"]["delta"] == 0
    assert set(significant_groups(comparison)) == {"overall", "slice:adversarial"}
    assert Comparison.objects.count() == 1
