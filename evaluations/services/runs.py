"""Evaluation runs: one artifact on one suite version, per-example predictions and metrics."""

import logging
from collections import defaultdict

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.utils import timezone

from compression.engine.errors import EngineError
from compression.models import ModelArtifact, RunStatus
from compression.services.artifacts import artifact_path
from compression.services.jobs import JobCancelled, job_claim, job_fail, job_progress
from compression.services.provenance import torch_settings
from evaluations.engine.metrics import binary_metrics
from evaluations.models import EvaluationRun, Example, Prediction, SuiteVersion
from ledger.canonical import digest
from ledger.services import ledger_append

logger = logging.getLogger(__name__)
OBJECT_TYPE = "evaluation_run"
DEFAULT_CONFIG = {"batch_size": 32, "max_length": 64, "decision_threshold": 0.5}


def evaluation_config(*, unsafe_labels: list[str], **overrides) -> dict:
    device, threads = torch_settings()
    return {**DEFAULT_CONFIG, "device": device, "threads": threads, "unsafe_labels": sorted(unsafe_labels),
            **overrides}


def evaluation_run_request(*, actor, artifact: ModelArtifact, suite_version: SuiteVersion, config: dict) -> EvaluationRun:
    """The evaluation of this artifact on this suite with this config: reused if it exists."""
    config_digest = digest(config)
    with transaction.atomic():
        run, created = EvaluationRun.objects.get_or_create(
            artifact=artifact, suite_version=suite_version, config_digest=config_digest,
            defaults={"config": config, "requested_by": actor},
        )
        if created:
            ledger_append(
                actor=actor, action="evaluation.requested", object_type=OBJECT_TYPE, object_id=run.pk,
                payload={"artifact": artifact.digest, "suite_version": suite_version.digest, "config": config},
            )
    return run


def group_masks(slices: np.ndarray, subgroups: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks for 'overall', each 'slice:<name>' and each 'subgroup:<name>'."""
    masks = {"overall": np.ones(len(slices), dtype=bool)}
    for name in sorted(set(slices.tolist())):
        masks[f"slice:{name}"] = slices == name
    for name in sorted(set(subgroups.tolist()) - {""}):
        masks[f"subgroup:{name}"] = subgroups == name
    return masks


def evaluation_run_execute(*, run_id: int) -> None:
    """Predict every example, store predictions and metrics. Idempotent per (run, example)."""
    run = job_claim(EvaluationRun, run_id, object_type=OBJECT_TYPE)
    if run is None:
        return
    try:
        _execute(run)
    except JobCancelled:
        logger.info("evaluation run %s was cancelled", run.pk)
    except EngineError as exc:
        job_fail(EvaluationRun, run.pk, object_type=OBJECT_TYPE, code=exc.code, reason=exc.message)
    except SoftTimeLimitExceeded:
        job_fail(EvaluationRun, run.pk, object_type=OBJECT_TYPE, code="time_limit",
                 reason="The evaluation exceeded its time limit.")
    except Exception as exc:  # noqa: BLE001 - any failure must end as a readable FAILED state
        logger.exception("evaluation run %s failed", run.pk)
        job_fail(EvaluationRun, run.pk, object_type=OBJECT_TYPE, code="internal_error",
                 reason=f"Unexpected error: {type(exc).__name__}: {exc}")


def _execute(run: EvaluationRun) -> None:
    from evaluations.engine.predict import PredictionConfig, predict  # torch: imported only by workers

    examples = list(Example.objects.filter(suite_version=run.suite_version).order_by("position")
                    .values_list("pk", "text", "is_unsafe", "slice", "subgroup"))
    cfg = run.config
    job_progress(EvaluationRun, run.pk, stage="loading model", percent=1)

    def progress(done: int, total: int) -> None:
        job_progress(EvaluationRun, run.pk, stage="predicting", percent=2 + 93 * done / max(total, 1))

    result = predict(
        artifact_path(run.artifact), [e[1] for e in examples],
        PredictionConfig(batch_size=cfg["batch_size"], max_length=cfg["max_length"], device=cfg["device"],
                         threads=cfg["threads"], unsafe_labels=tuple(cfg["unsafe_labels"]),
                         decision_threshold=cfg["decision_threshold"]),
        progress=progress,
    )
    y_unsafe = np.array([e[2] for e in examples], dtype=bool)
    masks = group_masks(np.array([e[3] for e in examples]), np.array([e[4] for e in examples]))
    metrics = {
        key: binary_metrics(y_unsafe[mask], result.decision[mask], result.unsafe_prob[mask])
        for key, mask in masks.items()
    }
    latencies = np.array(result.batch_latencies_s) if result.batch_latencies_s else np.zeros(1)
    runtime = {
        "examples": len(examples), "wall_seconds": result.wall_seconds,
        "examples_per_second": result.examples_per_second,
        "batch_latency_p50_s": float(np.percentile(latencies, 50)),
        "batch_latency_p95_s": float(np.percentile(latencies, 95)),
        "batch_latency_p99_s": float(np.percentile(latencies, 99)),
        "peak_rss_bytes": result.peak_rss_bytes, "parameter_count": result.parameter_count,
        "size_bytes": result.size_bytes,
    }
    labels = list(result.labels)
    rows = [
        Prediction(run_id=run.pk, example_id=example[0], unsafe_prob=float(result.unsafe_prob[i]),
                   probs=[round(float(p), 6) for p in result.probs[i]],
                   predicted_label=labels[int(result.predicted_label_index[i])],
                   decision_unsafe=bool(result.decision[i]))
        for i, example in enumerate(examples)
    ]
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            raise JobCancelled(f"evaluation {run.pk} is {locked.status}")
        Prediction.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
        now = timezone.now()
        locked.metrics, locked.runtime = metrics, runtime
        locked.status, locked.progress_stage, locked.progress_percent = RunStatus.SUCCEEDED, "done", 100
        locked.finished_at = now
        locked.wall_seconds = (now - locked.started_at).total_seconds()
        locked.save()
        ledger_append(
            actor=None, action="evaluation.succeeded", object_type=OBJECT_TYPE, object_id=run.pk,
            payload={"metrics_digest": digest(metrics), "overall": metrics["overall"], "examples": len(examples)},
        )


def evaluation_predictions(run: EvaluationRun) -> dict[int, tuple[float, bool]]:
    """example id -> (unsafe probability, decision) for a finished run."""
    out: dict[int, tuple[float, bool]] = defaultdict(tuple)  # type: ignore[arg-type]
    for example_id, prob, decision in Prediction.objects.filter(run=run).values_list(
        "example_id", "unsafe_prob", "decision_unsafe"
    ):
        out[example_id] = (prob, decision)
    return dict(out)
