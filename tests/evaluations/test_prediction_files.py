"""Per-example predictions as Parquet files in the artifact store (issue 17 item 2): chunks write files, the run
links one merged file by its sha256, nothing else reads Prediction rows for new runs; runs from before (rows) still
compare; files and rows give the same comparison and the same export predictions file; altered bytes are
refused; a file written on one machine is read on another through the shared storage."""

import csv
import gzip
import hashlib
import io
import os
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compression.engine.errors import EngineError
from compression.models import RunStatus
from compression.services.blobs import blob_path, blob_put_bytes, blob_read, blob_root
from evaluations.models import EvaluationRun, Example, Flip, Prediction
from evaluations.services.comparisons import comparison_compute
from evaluations.services.prediction_files import (
    PREDICTIONS_SCHEMA,
    evaluation_predictions,
    predictions_table,
    suite_examples,
)
from evaluations.services.runs import (
    evaluation_chunk_execute,
    evaluation_chunk_record,
    evaluation_config,
    evaluation_run_request,
    evaluation_run_start,
)
from evaluations.services.suites import ExampleRow, suite_version_import
from exports.selectors import PREDICTION_COLUMNS
from exports.services.exports import predictions_file
from ledger.models import LedgerEvent

pytestmark = pytest.mark.django_db(transaction=True)
N, CHUNK = 620, 250
UNTIMED = {"latencies": [], "sizes": [], "load_seconds": 0.0, "peak_rss_bytes": 0}


@pytest.fixture
def suite(engineer, base_artifact):
    """Slices, subgroups (one too small to compare), perturbed examples and a label that is no model class."""
    rng = np.random.default_rng(5)
    truth = [*base_artifact.labels, "harmful"]
    rows = [
        ExampleRow(
            external_id=f"ex-{i}",
            text=f"synthetic example {i}",
            label=truth[int(rng.integers(len(truth)))],
            slice=("routine", "edge", "adversarial")[i % 3],
            line=i + 1,
            subgroup="tiny" if i < 8 else ("", "alpha", "beta", "")[i % 4],
            source_id=f"ex-{i - 560}" if i >= 560 else "",
        )
        for i in range(N)
    ]
    unsafe = [label for label in truth if label != "normal"]
    return suite_version_import(
        actor=engineer, suite_name="files", rows=rows, unsafe_labels=unsafe, safe_labels=["normal"]
    )


def _outputs(artifact, seed: int, stable: bool = True) -> dict:
    """Made-up per-example outputs of one model (columns of PREDICTIONS_SCHEMA without position and id)."""
    rng = np.random.default_rng(seed)
    labels = artifact.labels
    p = rng.uniform(0.0, 1.0, N)
    p[:3], p[3:6] = 0.0, 1.0
    kept = rng.random(N) > 0.1
    return {
        "unsafe_prob": p,
        "probs": [[round(1 - x, 6), round(x / 2, 6), round(x / 2, 6)] for x in p],
        "predicted_label": [labels[int(i)] for i in rng.integers(len(labels), size=N)],
        "decision_unsafe": p >= 0.5,
        "recomposed_unsafe_prob": np.where(kept, p, 1.0 - p) if stable else None,
        "stable": kept if stable else None,
    }


def _row_run(artifact, version, outputs: dict, name: str) -> EvaluationRun:
    """A run from before the files: its predictions are Prediction rows."""
    run = EvaluationRun.objects.create(
        artifact=artifact, suite_version=version, config={}, config_digest=name, status=RunStatus.SUCCEEDED
    )
    examples = version.examples.order_by("position").values_list("pk", flat=True)
    Prediction.objects.bulk_create(
        Prediction(
            run=run,
            example_id=example_id,
            unsafe_prob=float(outputs["unsafe_prob"][i]),
            probs=outputs["probs"][i],
            predicted_label=outputs["predicted_label"][i],
            decision_unsafe=bool(outputs["decision_unsafe"][i]),
            recomposed_unsafe_prob=None
            if outputs["recomposed_unsafe_prob"] is None
            else float(outputs["recomposed_unsafe_prob"][i]),
            stable=None if outputs["stable"] is None else bool(outputs["stable"][i]),
        )
        for i, example_id in enumerate(examples)
    )
    return run


def _file_run(engineer, artifact, version, outputs: dict, seed: int, settings) -> EvaluationRun:
    """A run whose chunks are recorded through the workers' path (evaluation_chunk_record), with made-up outputs
    instead of the model's."""
    settings.SAFESHRINK = {**settings.SAFESHRINK, "EVAL_CHUNK_SIZE": CHUNK}
    config = evaluation_config(unsafe_labels=["hatespeech", "offensive"], stability_seed=seed)
    run = evaluation_run_request(actor=engineer, artifact=artifact, suite_version=version, config=config)
    with mock.patch("evaluations.services.runs._enqueue_chunks"):
        evaluation_run_start(run_id=run.pk)
    run.refresh_from_db()
    examples = list(version.examples.order_by("position").values_list("pk", "position"))
    for chunk in range(run.chunks_total):
        lo, hi = chunk * CHUNK, min(N, (chunk + 1) * CHUNK)
        columns = {k: None if v is None else v[lo:hi] for k, v in outputs.items()}
        columns.update(example_id=[e[0] for e in examples[lo:hi]], position=[e[1] for e in examples[lo:hi]])
        timings = {"latencies": [0.01], "sizes": [hi - lo], "load_seconds": 0.0, "peak_rss_bytes": 0}
        evaluation_chunk_record(run_id=run.pk, chunk=chunk, predictions=predictions_table(columns), timings=timings)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    return run


def test_a_chunked_evaluation_writes_no_rows_and_links_a_parquet_file_by_its_sha256(
    engineer, base_artifact, demo_suite, settings
):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "EVAL_CHUNK_SIZE": 50}
    config = evaluation_config(unsafe_labels=["hatespeech", "offensive"])
    run = evaluation_run_request(actor=engineer, artifact=base_artifact, suite_version=demo_suite, config=config)
    evaluation_run_start(run_id=run.pk)  # eager: the chunks run the tiny model here
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and not Prediction.objects.filter(run=run).exists()
    stored = blob_root() / run.predictions_digest
    data = stored.read_bytes()
    assert hashlib.sha256(data).hexdigest() == run.predictions_digest and len(data) == run.predictions_bytes
    table = pq.read_table(stored)
    assert table.schema.equals(PREDICTIONS_SCHEMA) and table.num_rows == run.predictions_rows == 180
    assert table.column("position").to_pylist() == list(range(180))
    ids = list(Example.objects.filter(suite_version=demo_suite).order_by("position").values_list("pk", flat=True))
    assert table.column("example_id").to_pylist() == ids
    assert table.column("stable").null_count == 0 and set(table.column("predicted_label").to_pylist()) <= set(
        base_artifact.labels
    )
    assert sorted(run.chunk_files) == ["0", "1", "2", "3"]
    for chunk, entry in run.chunk_files.items():
        part = blob_root() / entry["digest"]
        assert hashlib.sha256(part.read_bytes()).hexdigest() == entry["digest"]
        assert pq.read_table(part).column("position").to_pylist() == list(
            range(int(chunk) * 50, min(180, int(chunk) * 50 + 50))
        )
    # the metrics are those of the file's arrays, and the ledger names the file
    decisions = table.column("decision_unsafe").to_numpy()
    truth = np.array(list(demo_suite.examples.order_by("position").values_list("is_unsafe", flat=True)))
    assert run.metrics["overall"]["accuracy"] == pytest.approx((decisions == truth).mean())
    event = LedgerEvent.objects.get(action="evaluation.succeeded", object_id=str(run.pk))
    assert f'"predictions_digest":"{run.predictions_digest}"' in event.payload_json


def test_a_chunk_delivered_twice_is_stored_once(engineer, base_artifact, suite, settings):
    run = _file_run(engineer, base_artifact, suite, _outputs(base_artifact, 1), 0, settings)
    files, blobs = dict(run.chunk_files), sorted(os.listdir(blob_root()))
    evaluation_chunk_execute(run_id=run.pk, chunk=1)  # delivered again after it was recorded: nothing to do
    other = predictions_table({"position": [0], "example_id": [1], "unsafe_prob": [0.5], "probs": [[]]})
    evaluation_chunk_record(  # a late twin that predicted differently: its file is not recorded
        run_id=run.pk, chunk=1, predictions=other, timings=dict(UNTIMED)
    )
    run.refresh_from_db()
    assert run.chunk_files == files and run.chunks_done == [0, 1, 2]
    assert len(os.listdir(blob_root())) == len(blobs) + 1  # only the twin's own (unreferenced) file
    assert LedgerEvent.objects.filter(action="evaluation.succeeded", object_id=str(run.pk)).count() == 1


def test_a_blob_whose_bytes_were_altered_is_refused(engineer, base_artifact, suite, settings):
    blob = blob_put_bytes(b"some bytes")
    assert blob_read(blob.digest) == b"some bytes"
    path = blob_root() / blob.digest
    os.chmod(path, 0o644)
    path.write_bytes(b"Some bytes")
    for read in (blob_read, blob_path):
        with pytest.raises(EngineError) as refused:
            read(blob.digest)
        assert refused.value.code == "corrupt_artifact" and blob.digest in refused.value.message

    base = _file_run(engineer, base_artifact, suite, _outputs(base_artifact, 1), 0, settings)
    cand = _file_run(engineer, base_artifact, suite, _outputs(base_artifact, 2), 1, settings)
    stored = blob_root() / cand.predictions_digest
    table = pq.read_table(stored)
    altered = table.set_column(2, "unsafe_prob", pa.array(np.flip(table.column("unsafe_prob").to_numpy())))
    os.chmod(stored, 0o644)
    pq.write_table(altered, stored)  # a well-formed Parquet file with other numbers
    with pytest.raises(EngineError) as refused:
        comparison_compute(actor=None, baseline_run_id=base.pk, candidate_run_id=cand.pk, measure_runtime=False)
    assert refused.value.code == "corrupt_artifact" and cand.predictions_digest in refused.value.message
    assert not Flip.objects.exists()


def _flips(comparison) -> list[tuple]:
    return list(
        Flip.objects.filter(comparison=comparison)
        .order_by("example__position")
        .values_list("example_id", "baseline_prob", "candidate_prob", "direction", "candidate_correct", "stable")
    )


def _old_predictions_rows(comparison) -> list[list[str]]:
    """exports.selectors.predictions_table as it was before the files (Example and Prediction rows)."""
    from exports.selectors import _cell

    runs = (comparison.baseline_run, comparison.candidate_run)
    examples = (
        Example.objects.filter(suite_version_id=runs[0].suite_version_id)
        .order_by("position")
        .values_list("position", "pk", "external_id", "slice", "subgroup", "label", "is_unsafe", "source__position")
    )
    outputs = [
        {
            row[0]: row[1:]
            for row in Prediction.objects.filter(run=run).values_list(
                "example_id", "decision_unsafe", "unsafe_prob", "recomposed_unsafe_prob", "stable", "predicted_label"
            )
        }
        for run in runs
    ]
    return [[_cell(v) for v in (*example, *outputs[0][example[1]], *outputs[1][example[1]])] for example in examples]


@pytest.mark.parametrize("stable", [True, False])
def test_files_and_rows_give_the_same_comparison_and_the_same_export_file(
    engineer, base_artifact, suite, settings, stable
):
    outputs = [_outputs(base_artifact, seed, stable=stable) for seed in (11, 12)]
    by_rows = comparison_compute(
        actor=None,
        baseline_run_id=_row_run(base_artifact, suite, outputs[0], "rows-b").pk,
        candidate_run_id=_row_run(base_artifact, suite, outputs[1], "rows-c").pk,
        resamples=200,
        measure_runtime=False,
    )
    runs = [_file_run(engineer, base_artifact, suite, o, seed, settings) for seed, o in enumerate(outputs)]
    assert not Prediction.objects.filter(run__in=runs).exists()
    by_files = comparison_compute(
        actor=None, baseline_run_id=runs[0].pk, candidate_run_id=runs[1].pk, resamples=200, measure_runtime=False
    )
    assert by_files.results["groups"] == by_rows.results["groups"]
    if stable:  # (the row runs record no stability method or seed)
        for key in ("baseline", "candidate", "flips"):
            assert by_files.results["stability"][key] == by_rows.results["stability"][key]
    else:
        assert by_files.results["stability"] is None is by_rows.results["stability"]
    assert by_files.flip_count == by_rows.flip_count > 100 and _flips(by_files) == _flips(by_rows)
    assert {k: v for k, v in by_files.statistics.items() if k != "profile"} == {
        k: v for k, v in by_rows.statistics.items() if k != "profile"
    }

    # the export's predictions file: the same bytes from files as from rows, and as the code before the files made
    data, rows = predictions_file(by_files)
    assert (data, rows) == predictions_file(by_rows) and rows == N
    lines = list(csv.reader(io.StringIO(gzip.decompress(data).decode())))
    assert tuple(lines[0]) == PREDICTION_COLUMNS and lines[1:] == _old_predictions_rows(by_rows)
    stable_cells = {line[PREDICTION_COLUMNS.index("candidate_stable")] for line in lines[1:]}
    assert stable_cells == ({"0", "1"} if stable else {""})


def test_a_run_begun_before_the_files_merges_its_row_chunks_with_its_file_chunks(
    engineer, base_artifact, suite, settings
):
    outputs = _outputs(base_artifact, 3)
    reference = _row_run(base_artifact, suite, outputs, "reference")
    settings.SAFESHRINK = {**settings.SAFESHRINK, "EVAL_CHUNK_SIZE": CHUNK}
    config = evaluation_config(unsafe_labels=["hatespeech", "offensive"])
    run = evaluation_run_request(actor=engineer, artifact=base_artifact, suite_version=suite, config=config)
    with mock.patch("evaluations.services.runs._enqueue_chunks"):
        evaluation_run_start(run_id=run.pk)
    for p in Prediction.objects.filter(run=reference, example__position__lt=CHUNK):  # chunk 0 as rows, as before
        p.pk, p.run_id = None, run.pk
        p.save()
    EvaluationRun.objects.filter(pk=run.pk).update(chunks_done=[0], chunk_timings={"0": UNTIMED})
    examples = list(suite.examples.order_by("position").values_list("pk", "position"))
    for chunk in (1, 2):
        lo, hi = chunk * CHUNK, min(N, (chunk + 1) * CHUNK)
        columns = {k: v[lo:hi] for k, v in outputs.items()}
        columns.update(example_id=[e[0] for e in examples[lo:hi]], position=[e[1] for e in examples[lo:hi]])
        evaluation_chunk_record(
            run_id=run.pk, chunk=chunk, predictions=predictions_table(columns), timings=dict(UNTIMED)
        )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and sorted(run.chunk_files) == ["1", "2"]
    assert (
        evaluation_predictions(run)
        .drop_columns(["details"])
        .equals(evaluation_predictions(reference).drop_columns(["details"]))
    )


def test_the_suite_examples_file_is_built_once(suite):
    assert not suite.examples_digest
    table = suite_examples(suite)
    suite.refresh_from_db()
    digest = suite.examples_digest
    assert digest and hashlib.sha256((blob_root() / digest).read_bytes()).hexdigest() == digest
    assert table.num_rows == N and table.column("source_position").to_pylist()[560:563] == [0, 1, 2]
    assert table.column("source_position").null_count == 560
    with mock.patch("evaluations.services.prediction_files._examples_from_rows") as rebuilt:
        assert suite_examples(suite).equals(table)
    rebuilt.assert_not_called()


@pytest.fixture
def bucket(settings, tmp_path, monkeypatch):
    """The shared storage: django-storages' S3 backend on moto's in-process S3 (as tests/compression/
    test_shared_storage.py); each "machine" is an empty local store."""
    import boto3
    from moto import mock_aws

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="shared")
        settings.STORAGES = {
            **settings.STORAGES,
            "artifacts": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {"bucket_name": "shared", "region_name": "us-east-1", "location": "artifacts"},
            },
        }
        settings.SAFESHRINK = {**settings.SAFESHRINK, "ARTIFACT_STORAGE": "artifacts"}
        yield client


def _machine(settings, tmp_path, name: str) -> None:
    settings.SAFESHRINK = {**settings.SAFESHRINK, "ARTIFACT_ROOT": tmp_path / name}


def test_files_written_on_one_machine_are_compared_on_another(
    engineer, base_artifact, suite, settings, tmp_path, bucket
):
    runs = [_file_run(engineer, base_artifact, suite, _outputs(base_artifact, s), s, settings) for s in (21, 22)]
    keys = {item["Key"] for item in bucket.list_objects_v2(Bucket="shared")["Contents"]}
    for run in runs:
        assert f"artifacts/blobs/{run.predictions_digest}" in keys
        assert {f"artifacts/blobs/{e['digest']}" for e in run.chunk_files.values()} <= keys
    here = comparison_compute(
        actor=None, baseline_run_id=runs[0].pk, candidate_run_id=runs[1].pk, resamples=100, measure_runtime=False
    )
    expected = predictions_file(here)

    _machine(settings, tmp_path, "machine-b")
    assert not (tmp_path / "machine-b" / "blobs").exists()
    assert predictions_file(here) == expected  # read from files fetched from the shared storage
    for run in runs:
        assert hashlib.sha256((blob_root() / run.predictions_digest).read_bytes()).hexdigest() == run.predictions_digest

    _machine(settings, tmp_path, "machine-c")  # the shared copy of one file was altered: refused, not installed
    name = f"artifacts/blobs/{runs[1].predictions_digest}"
    bucket.put_object(Bucket="shared", Key=name, Body=b"PAR1 not the file")
    with pytest.raises(EngineError) as refused:
        evaluation_predictions(runs[1])
    assert refused.value.code == "corrupt_artifact" and runs[1].predictions_digest in refused.value.message
    assert not (blob_root() / runs[1].predictions_digest).exists()
    assert not any((tmp_path / "machine-c" / "tmp").iterdir())
