"""Scale on PostgreSQL: a chunked evaluation of 100,000 examples, and a comparison of two evaluations of 1,000,000.

(a) `evaluation_100k`: imports a 100,000-example suite version (HateXplain texts, cycled, with unique ids),
    evaluates the tiny model on it through the chunked path (every chunk task in this process: the point is the
    data path, not the broker) and times import and evaluation.
(b) `compare_1m`: imports a 1,000,000-example suite version through `suite_version_import` (COPY), records two
    evaluations of it whose per-example predictions are made up (seeded; about 3 % of decisions flipped, 2 %
    unstable) through the workers' own chunk path (`evaluation_chunk_record`: a Parquet file per chunk of
    EVAL_CHUNK_SIZE, the run's merged file and its metrics when the last chunk is recorded), then compares them
    with the real service (`comparison_compute`: paired bootstrap with its default resamples, McNemar per group,
    stability, the flip rows) in a fresh interpreter, which reports its wall time and its peak resident memory
    (the high-water mark of its resident set, VmHWM; whole process). The runtime measurement of a comparison
    (both models timed on 256 examples) is left out: its size does not depend on the suite's.
(c) `storage`: what per-example predictions cost PostgreSQL. Before: Prediction rows (100,000 inserted the old
    way, bulk_create in batches of 2,000; pg_total_relation_size of the table with its indexes and TOAST, scaled
    to a million). Now: no Prediction row; per evaluation one row with its chunk files' digests (its size), and
    the Parquet files in the artifact store.

Targets: the 100k evaluation succeeds; the 1M comparison in <= 30 s with a peak <= 1.5 GiB.
Creates and drops its own database (SCALE_DB_NAME); SCALE_COMPARE_N changes the 1M (for trying the bench out)."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

N = 100_000
COMPARE_N = int(os.environ.get("SCALE_COMPARE_N", 1_000_000))
LEGACY_ROWS = 100_000
DB_NAME = os.environ.get("SCALE_DB_NAME", "safeshrink_bench_scale")
TARGET_SECONDS, TARGET_GIB = 30.0, 1.5
ROOT = Path(__file__).resolve().parents[1]


def run() -> dict:
    import psycopg

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    server = base.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    tmp = Path(tempfile.mkdtemp(prefix="safeshrink-bench-scale-"))
    os.environ.update(
        {
            "DATABASE_URL": f"{server}/{DB_NAME}",
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "SAFESHRINK_ARTIFACT_ROOT": str(tmp / "artifacts"),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    try:
        call_command("migrate", verbosity=0)
        from accounts.services import user_create

        engineer = user_create(actor=None, username="bench", role="engineer", password="bench-pass-123")
        artifacts = _artifacts(engineer, tmp)
        figures = {"evaluation_100k": _evaluation_100k(engineer, artifacts[0])}
        version = figures["evaluation_100k"].pop("version")
        figures["storage"] = {"before": _legacy_rows(artifacts[0], version)}
        figures["compare_1m"], runs = _compare(engineer, artifacts)
        figures["storage"]["now"] = _storage_now(runs)
        before = figures["storage"]["before"]["db_bytes_per_million_predictions"]
        now = figures["storage"]["now"]["db_bytes_per_million_predictions"]
        figures["storage"]["db_size_ratio_now_to_before"] = round(now / before, 6)
        compare = figures["compare_1m"]["comparison"]
        figures["targets"] = {
            "evaluates_100k": {"met": figures["evaluation_100k"]["status"] == "succeeded"},
            "compare_1M_at_most_30s": {
                "met": COMPARE_N >= 1_000_000 and compare["seconds"] <= TARGET_SECONDS,
                "value": f"{compare['seconds']} s",
            },
            "peak_memory_at_most_1_5GiB": {
                "met": COMPARE_N >= 1_000_000 and compare["peak_rss_gib"] <= TARGET_GIB,
                "value": f"{compare['peak_rss_gib']} GiB",
            },
        }
        return figures
    finally:
        connections.close_all()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def _artifacts(engineer, tmp: Path) -> list:
    """The tiny model and an identical copy under another digest (two runs of one suite and config need two)."""
    import shutil

    from django.conf import settings

    from compression.engine.tiny import build_tiny_classifier
    from compression.services.artifacts import artifact_register

    model = tmp / "tiny"
    build_tiny_classifier(
        data_csv=Path(settings.SAFESHRINK["DATA_DIR"]) / "hatexplain" / "hatexplain_merged.csv", out_dir=model
    )
    twin = tmp / "twin"
    shutil.copytree(model, twin)
    (twin / "README.md").write_text("The tiny model again, under another digest.\n")
    return [
        artifact_register(actor=engineer, name=name, path=str(path)) for name, path in (("tiny", model), ("twin", twin))
    ]


def _suite(engineer, name: str, n: int, slices=("routine",)):
    from django.conf import settings

    from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS, hatexplain_rows
    from evaluations.services.suites import ExampleRow, suite_version_import

    source = hatexplain_rows(Path(settings.SAFESHRINK["DATA_DIR"]), split="train")
    rows = [
        ExampleRow(
            **{**source[i % len(source)], "external_id": f"x{i}", "line": i + 2, "slice": slices[i % len(slices)]}
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    version = suite_version_import(
        actor=engineer, suite_name=name, rows=rows, unsafe_labels=UNSAFE_LABELS, safe_labels=SAFE_LABELS
    )
    return version, time.perf_counter() - started


def _evaluation_100k(engineer, artifact) -> dict:
    from evaluations.models import EvaluationRun, Prediction
    from evaluations.services.runs import evaluation_config, evaluation_run_request, evaluation_run_start

    version, import_seconds = _suite(engineer, "scale", N)
    run = evaluation_run_request(
        actor=engineer,
        artifact=artifact,
        suite_version=version,
        config=evaluation_config(unsafe_labels=["hatespeech", "offensive"]),
    )
    started = time.perf_counter()
    evaluation_run_start(run_id=run.pk)  # eager: every chunk task runs here
    evaluate_seconds = time.perf_counter() - started
    run = EvaluationRun.objects.get(pk=run.pk)
    return {
        "version": version,
        "examples": N,
        "chunks": run.chunks_total,
        "chunk_size": run.chunk_size,
        "status": run.status if run.predictions_rows == N else f"{run.status}, {run.predictions_rows} predictions",
        "prediction_rows_in_postgresql": Prediction.objects.filter(run=run).count(),
        "predictions_file_rows": run.predictions_rows,
        "predictions_file_bytes": run.predictions_bytes,
        "import_seconds": round(import_seconds, 1),
        "evaluate_seconds": round(evaluate_seconds, 1),
        "examples_per_second": round(N / evaluate_seconds),
        "overall_accuracy": run.metrics["overall"]["accuracy"] if run.metrics else None,
    }


def _relation_bytes(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [table])
        return int(cursor.fetchone()[0])


def _legacy_rows(artifact, version) -> dict:
    """LEGACY_ROWS Prediction rows inserted as evaluation chunks wrote them before the files."""
    import numpy as np

    from compression.models import RunStatus
    from evaluations.models import EvaluationRun, Prediction

    run = EvaluationRun.objects.create(
        artifact=artifact, suite_version=version, config={}, config_digest="legacy", status=RunStatus.SUCCEEDED
    )
    ids = list(version.examples.order_by("position").values_list("pk", flat=True)[:LEGACY_ROWS])
    rng = np.random.default_rng(0)
    probs = rng.dirichlet((1.0, 1.0, 1.0), size=len(ids))
    labels = artifact.labels
    before = _relation_bytes("evaluations_prediction")
    started = time.perf_counter()
    for lo in range(0, len(ids), 2000):
        Prediction.objects.bulk_create(
            [
                Prediction(
                    run_id=run.pk,
                    example_id=ids[i],
                    unsafe_prob=float(probs[i, 0] + probs[i, 2]),
                    probs=[round(float(p), 6) for p in probs[i]],
                    predicted_label=labels[int(probs[i].argmax())],
                    decision_unsafe=bool(probs[i, 0] + probs[i, 2] >= 0.5),
                    recomposed_unsafe_prob=float(probs[i, 0] + probs[i, 2]),
                    stable=True,
                )
                for i in range(lo, min(len(ids), lo + 2000))
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )
    seconds = time.perf_counter() - started
    grown = _relation_bytes("evaluations_prediction") - before
    return {
        "prediction_rows": len(ids),
        "relation_bytes": grown,
        "insert_seconds": round(seconds, 1),
        "db_bytes_per_million_predictions": round(grown * 1_000_000 / len(ids)),
        "db_mib_per_million_predictions": round(grown * 1_000_000 / len(ids) / 2**20, 1),
    }


def _synthetic(version, artifact, seed: int, base: dict | None = None) -> dict:
    """Made-up outputs of a model for every example: probabilities near the truth; a candidate (``base`` given)
    nudges some of the baseline's and flips about 3 % of decisions; about 2 % of decisions unstable."""
    import numpy as np

    from evaluations.services.prediction_files import suite_examples

    truth = suite_examples(version, ["is_unsafe"]).column("is_unsafe").to_numpy()
    n = len(truth)
    rng = np.random.default_rng(seed)
    if base is None:
        p = np.where(truth, rng.beta(5, 2, n), rng.beta(2, 5, n))
    else:
        flipped, nudged = rng.random(n) < 0.03, rng.random(n) < 0.1
        p = base["unsafe_prob"]
        p = np.where(nudged, np.clip(p + rng.normal(0, 0.01, n), 0, 1), p)
        p = np.where(flipped, 1.0 - p, p)
    decision = p >= 0.5
    stable = rng.random(n) > 0.02
    labels = np.array(artifact.labels)
    unsafe = [i for i, label in enumerate(labels) if label != "normal"]
    predicted = np.where(decision, rng.choice(unsafe, n), list(labels).index("normal"))
    return {
        "unsafe_prob": p,
        "decision_unsafe": decision,
        "predicted_label": labels[predicted],
        "recomposed_unsafe_prob": np.where(stable, p, 1.0 - p),
        "stable": stable,
    }


def _record(engineer, artifact, version, outputs: dict) -> tuple:
    """An evaluation recorded chunk by chunk through evaluation_chunk_record, as workers record theirs."""
    import numpy as np
    import pyarrow as pa

    from evaluations.models import EvaluationRun
    from evaluations.services.prediction_files import predictions_table, suite_examples
    from evaluations.services.runs import (
        evaluation_chunk_record,
        evaluation_config,
        evaluation_run_request,
        evaluation_run_start,
    )

    run = evaluation_run_request(
        actor=engineer,
        artifact=artifact,
        suite_version=version,
        config=evaluation_config(unsafe_labels=["hatespeech", "offensive"]),
    )
    with mock.patch("evaluations.services.runs._enqueue_chunks"):  # the chunks are recorded below, not predicted
        evaluation_run_start(run_id=run.pk)
    run.refresh_from_db()
    ids = suite_examples(version, ["example_id"]).column("example_id").to_numpy()
    p = outputs["unsafe_prob"]
    started = time.perf_counter()
    for chunk in range(run.chunks_total):
        lo, hi = chunk * run.chunk_size, min(len(ids), (chunk + 1) * run.chunk_size)
        part = {k: v[lo:hi] for k, v in outputs.items()}
        three = np.stack([1.0 - p[lo:hi], p[lo:hi] / 2, p[lo:hi] / 2], axis=1).round(6).ravel()
        part["probs"] = pa.ListArray.from_arrays(pa.array(np.arange(0, 3 * (hi - lo) + 1, 3, dtype=np.int32)), three)
        part.update(position=np.arange(lo, hi), example_id=ids[lo:hi])
        timings = {"latencies": [0.5], "sizes": [hi - lo], "load_seconds": 0.0, "peak_rss_bytes": 0}
        evaluation_chunk_record(run_id=run.pk, chunk=chunk, predictions=predictions_table(part), timings=timings)
    seconds = time.perf_counter() - started
    return EvaluationRun.objects.get(pk=run.pk), seconds


def _compare(engineer, artifacts) -> tuple[dict, list]:
    version, import_seconds = _suite(engineer, "scale-1m", COMPARE_N, slices=("routine", "edge", "adversarial"))
    base_outputs = _synthetic(version, artifacts[0], seed=1)
    runs, record_seconds = [], []
    for artifact, outputs in (
        (artifacts[0], base_outputs),
        (artifacts[1], _synthetic(version, artifacts[1], 2, base_outputs)),
    ):
        run, seconds = _record(engineer, artifact, version, outputs)
        runs.append(run)
        record_seconds.append(round(seconds, 1))
    child = subprocess.run(
        [sys.executable, "-c", "import bench.scale as s; s.compare_child()"],
        cwd=ROOT,
        env={**os.environ, "SCALE_BASELINE": str(runs[0].pk), "SCALE_CANDIDATE": str(runs[1].pk)},
        capture_output=True,
        text=True,
    )
    marker = [line for line in child.stdout.splitlines() if line.startswith("@@COMPARE@@")]
    if child.returncode != 0 or not marker:
        raise SystemExit(f"the comparison failed:\n{child.stdout[-3000:]}\n{child.stderr[-5000:]}")
    if os.environ.get("SCALE_PROFILE"):
        print(child.stderr[-12000:], file=sys.stderr)
    return {
        "examples": COMPARE_N,
        "suite_import_seconds": round(import_seconds, 1),
        "chunks_per_evaluation": runs[0].chunks_total,
        "record_seconds_per_evaluation": record_seconds,
        "predictions_file_bytes": [r.predictions_bytes for r in runs],
        "comparison": json.loads(marker[-1][len("@@COMPARE@@") :]),
    }, runs


def _high_water_bytes() -> int:
    """This process's peak resident memory: VmHWM of /proc/self/status. (getrusage's ru_maxrss would do, but
    Linux carries into it the high-water mark of the process that forked this one, the benchmark's own.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def compare_child() -> None:
    """In a fresh interpreter: compare the two evaluations; wall seconds and peak memory of this process."""
    import threading

    import django
    import psutil

    django.setup()
    from evaluations.models import Flip
    from evaluations.services.comparisons import comparison_compute

    process = psutil.Process()
    rss_before = process.memory_info().rss
    sampled, done = [rss_before], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            sampled.append(process.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    profile = None
    if os.environ.get("SCALE_PROFILE"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    started = time.perf_counter()
    comparison = comparison_compute(
        actor=None,
        baseline_run_id=int(os.environ["SCALE_BASELINE"]),
        candidate_run_id=int(os.environ["SCALE_CANDIDATE"]),
        measure_runtime=False,
    )
    seconds = time.perf_counter() - started
    done.set()
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    peak = _high_water_bytes()
    overall = comparison.results["groups"]["overall"]
    figures = {
        "seconds": round(seconds, 2),
        "peak_rss_gib": round(peak / 2**30, 3),
        "rss_before_gib": round(rss_before / 2**30, 3),
        "peak_rss_sampled_gib": round(max(sampled) / 2**30, 3),
        "resamples": comparison.statistics.get("resamples"),
        "sampler": overall["metrics"]["accuracy"].get("sampler"),
        "groups": len(comparison.results["groups"]),
        "flips": comparison.flip_count,
        "flip_rows": Flip.objects.filter(comparison=comparison).count(),
        "stable_flips": overall["stable_flips"],
        "mcnemar_p": overall["mcnemar"]["p_value"],
        "accuracy_delta": overall["metrics"]["accuracy"]["delta"],
    }
    print("@@COMPARE@@" + json.dumps(figures), flush=True)


def _storage_now(runs) -> dict:
    from django.db import connection

    from evaluations.models import Example, Prediction

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT avg(pg_column_size(r.*)) FROM evaluations_evaluationrun r WHERE r.id = ANY(%s)",
            [[r.pk for r in runs]],
        )
        row_bytes = float(cursor.fetchone()[0])
    per_million = row_bytes * 1_000_000 / runs[0].predictions_rows
    chunk_bytes = sum(entry["bytes"] for entry in runs[0].chunk_files.values())
    return {
        "prediction_rows": Prediction.objects.filter(run__in=runs).count(),
        "evaluation_row_bytes": round(row_bytes),
        "db_bytes_per_million_predictions": round(per_million),
        "parquet_bytes_per_million_predictions": round(
            runs[0].predictions_bytes * 1_000_000 / runs[0].predictions_rows
        ),
        "chunk_files_bytes_per_million_predictions": round(chunk_bytes * 1_000_000 / runs[0].predictions_rows),
        "flip_relation_bytes": _relation_bytes("evaluations_flip"),
        # the suites stay rows (pages and the import query them): 1M + 1M + 100k examples are in the table now
        "example_relation_bytes_per_million_examples": round(
            _relation_bytes("evaluations_example") * 1_000_000 / Example.objects.count()
        ),
    }
