"""Evaluating 100,000 examples through the chunked evaluation path (tiny model, PostgreSQL).

Imports a 100,000-example suite version (HateXplain texts, cycled, with unique ids), requests an
evaluation of the tiny model, runs every chunk task (in this process: the point is the data path,
not the broker), and times import, evaluation and metrics. Creates and drops its own database."""

import os
import tempfile
import time
from pathlib import Path

N = 100_000
DB_NAME = "safeshrink_bench_scale"


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
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    try:
        call_command("migrate", verbosity=0)
        from accounts.services import user_create
        from compression.engine.tiny import build_tiny_classifier
        from compression.services.artifacts import artifact_register
        from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS, hatexplain_rows
        from evaluations.models import EvaluationRun, Prediction
        from evaluations.services.runs import evaluation_config, evaluation_run_request, evaluation_run_start
        from evaluations.services.suites import ExampleRow, suite_version_import

        engineer = user_create(actor=None, username="bench", role="engineer", password="bench-pass-123")
        data_dir = Path(settings.SAFESHRINK["DATA_DIR"])
        model = tmp / "tiny"
        build_tiny_classifier(data_csv=data_dir / "hatexplain" / "hatexplain_merged.csv", out_dir=model)
        artifact = artifact_register(actor=engineer, name="tiny", path=str(model))
        source = hatexplain_rows(data_dir, split="train")
        rows = [ExampleRow(**{**source[i % len(source)], "external_id": f"x{i}", "line": i + 2}) for i in range(N)]
        started = time.perf_counter()
        version = suite_version_import(
            actor=engineer, suite_name="scale", rows=rows, unsafe_labels=UNSAFE_LABELS, safe_labels=SAFE_LABELS
        )
        import_seconds = time.perf_counter() - started
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
            "examples": N,
            "chunks": run.chunks_total,
            "chunk_size": run.chunk_size,
            "status": run.status,
            "predictions_stored": Prediction.objects.filter(run=run).count(),
            "import_seconds": round(import_seconds, 1),
            "evaluate_seconds": round(evaluate_seconds, 1),
            "examples_per_second": round(N / evaluate_seconds),
            "overall_accuracy": run.metrics["overall"]["accuracy"] if run.metrics else None,
            "targets": {
                "evaluates_100k": {"met": run.status == "succeeded" and Prediction.objects.filter(run=run).count() == N}
            },
        }
    finally:
        connections.close_all()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
