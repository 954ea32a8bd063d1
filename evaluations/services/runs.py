"""Evaluation runs: one artifact on one suite version, per-example predictions and metrics.

A run is split into chunks of examples, each a Celery task (so several workers share a large
suite). The fan-in is the run row itself: each chunk stores its predictions as a Parquet file in the
artifact store (services.prediction_files), then records the file's digest and adds its index to
`chunks_done` under a row lock; the chunk that completes the set merges the files into the run's one
predictions file and computes the metrics from it. No result backend is needed, and a chunk delivered
twice does nothing twice.

A run that finishes (succeeded or failed) is announced, after its commit, to the task named
RUN_FINISHED_TASK: a higher layer (governance) registers a task under that name to complete what
waits on the run. The task is looked up by name, so this module imports nothing above it.
Beat re-enqueues whatever a killed worker lost (`evaluation_runs_requeue_orphaned`).
"""

import datetime as dt
import logging
import math
from typing import Any

import numpy as np
import pyarrow as pa
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.errors import ValidationFailed
from compression.engine.cpu import compute_platform
from compression.engine.errors import EngineError
from compression.models import ModelArtifact, RunStatus
from compression.selectors import jobs_orphaned
from compression.services.artifacts import artifact_path
from compression.services.jobs import job_fail
from evaluations.engine.metrics import metrics_by_group, runtime_summary
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import EvaluationRun, Example, SuiteVersion
from evaluations.services.chat_runs import (
    chat_chunk_examples,
    chat_chunk_predict,
    chat_group_options,
    chat_runtime,
    is_chat,
)
from evaluations.services.prediction_files import (
    chunk_file_put,
    example_arrays,
    predictions_merge,
    predictions_table,
    run_outputs,
)
from evaluations.services.profiles import (
    DEFAULT_STABILITY_SEED,
    config_profile,
    deployment_profile,
    prediction_settings,
)
from ledger.canonical import canonical_json, digest
from ledger.services import ledger_append

logger = logging.getLogger(__name__)
OBJECT_TYPE = "evaluation_run"
DEFAULT_CONFIG = {"decision_threshold": 0.5, "ece_bins": 15, "stability_seed": DEFAULT_STABILITY_SEED}
MIN_SUBGROUP_N = 30
STABILITY_METHOD = (
    "second pass: every example predicted again in batches drawn at random (seeded; the same for both models of "
    "a comparison), same batch size, padding, length, threads and kernels; unstable = the decision changed"
)
# The task a finished run is announced to, by name (registered by governance; see the module docstring).
RUN_FINISHED_TASK = "evaluation.finished"


def evaluation_config(
    *, unsafe_labels: list[str], profile: dict | None = None, required_profile: dict | None = None, **overrides
) -> dict:
    """An evaluation's configuration (its digest identifies the evaluation): the deployment profile (this
    installation's defaults, a policy's ``required_profile``, then the requested ``profile``; a 400 naming
    the field when it is malformed or breaks the requirement), the decision threshold, the calibration
    bins, the unsafe labels and the seed of the stability pass (None: no stability pass)."""
    chosen = deployment_profile(profile, required=required_profile)
    return {
        **DEFAULT_CONFIG,
        "profile": chosen.as_dict(),
        "unsafe_labels": sorted(unsafe_labels),
        **overrides,
    }


def evaluation_run_request(
    *, actor, artifact: ModelArtifact, suite_version: SuiteVersion, config: dict
) -> EvaluationRun:
    """The evaluation of this artifact on this suite with this config: reused if it exists."""
    config_digest = digest(config)
    with transaction.atomic():
        run, created = EvaluationRun.objects.get_or_create(
            artifact=artifact,
            suite_version=suite_version,
            config_digest=config_digest,
            defaults={"config": config, "requested_by": actor},
        )
        if created:
            ledger_append(
                actor=actor,
                action="evaluation.requested",
                object_type=OBJECT_TYPE,
                object_id=run.pk,
                payload={"artifact": artifact.digest, "suite_version": suite_version.digest, "config": config},
            )
    return run


def group_masks(slices: np.ndarray, subgroups: np.ndarray, *, min_subgroup_n: int = 1) -> dict[str, np.ndarray]:
    """Boolean masks for 'overall', each 'slice:<name>' and each 'subgroup:<name>' with enough examples."""
    masks = {"overall": np.ones(len(slices), dtype=bool)}
    for name in sorted(set(slices.tolist())):
        masks[f"slice:{name}"] = slices == name
    for name in sorted(set(subgroups.tolist()) - {""}):
        mask = subgroups == name
        if mask.sum() >= min_subgroup_n:
            masks[f"subgroup:{name}"] = mask
    return masks


def evaluation_run_start(*, run_id: int) -> EvaluationRun:
    """Split the run into chunks and enqueue them. Idempotent: a started or finished run is left alone."""
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().get(pk=run_id)
        if run.is_terminal or run.chunks_total:
            return run
        size = settings.SAFESHRINK.get("CHAT_EVAL_CHUNK_SIZE" if is_chat(run.config) else "EVAL_CHUNK_SIZE", 2000)
        count = Example.objects.filter(suite_version=run.suite_version).count()
        now = timezone.now()
        run.chunk_size, run.chunks_total = size, max(1, math.ceil(count / size))
        run.status, run.started_at, run.heartbeat_at, run.attempts = RunStatus.RUNNING, now, now, run.attempts + 1
        run.progress_stage, run.progress_percent = "queued chunks", 1
        run.save()
        ledger_append(
            actor=None,
            action="run.started",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={"chunks": run.chunks_total, "chunk_size": size, "examples": count},
        )
        transaction.on_commit(lambda: _enqueue_chunks(run.pk, range(run.chunks_total)))
    return run


def evaluation_queue(run_id: int) -> str:
    """The queue every task of this evaluation goes to (start, chunks, the announcement of its end, its
    comparison): the one of its profile's device, so all its chunks run on one hardware class (int8 results
    differ by instruction set). A stored device no queue runs stays on the default queue, where it fails."""
    from compression.services.workers import device_queue

    config = EvaluationRun.objects.values_list("config", flat=True).get(pk=run_id)
    try:
        return device_queue(config_profile(config)["device"])
    except ValidationFailed:
        return settings.CELERY_TASK_DEFAULT_QUEUE


def _enqueue_chunks(run_id: int, chunks) -> None:
    from evaluations.tasks import evaluate_chunk

    queue = evaluation_queue(run_id)
    for index in chunks:
        evaluate_chunk.apply_async((run_id, index), queue=queue)


def evaluation_chunk_execute(*, run_id: int, chunk: int) -> None:
    """Predict one chunk's examples, store and record them, finish the run if last."""
    run = EvaluationRun.objects.select_related("artifact").get(pk=run_id)
    if run.is_terminal or chunk in run.chunks_done:
        return
    try:
        predictions, timings = _predict_chunk(run, chunk)
        evaluation_chunk_record(run_id=run_id, chunk=chunk, predictions=predictions, timings=timings)
    except EngineError as exc:
        _fail(run_id, code=exc.code, reason=exc.message)
    except SoftTimeLimitExceeded:
        _fail(run_id, code=EvaluationsErrorCode.TIME_LIMIT, reason=f"Chunk {chunk} exceeded its time limit.")
    except Exception as exc:  # noqa: BLE001 - any failure must end as a readable FAILED state
        logger.exception("evaluation run %s chunk %s failed", run_id, chunk)
        _fail(
            run_id,
            code=EvaluationsErrorCode.INTERNAL_ERROR,
            reason=f"Unexpected error in chunk {chunk}: {type(exc).__name__}: {exc}",
        )


def _fail(run_id: int, *, code: str, reason: str) -> None:
    job_fail(EvaluationRun, run_id, object_type=OBJECT_TYPE, code=code, reason=reason)
    transaction.on_commit(lambda: _announce_finished(run_id), robust=True)


def _announce_finished(run_id: int) -> None:
    """Enqueue the RUN_FINISHED_TASK for this run (after commit). Sent more than once it does its
    work once; if it is lost, governance's beat sweep of releases stuck in `evaluating` catches up."""
    from celery import current_app

    if RUN_FINISHED_TASK not in current_app.tasks:
        current_app.loader.import_default_modules()  # autodiscovery (a worker has done it at start)
    task = current_app.tasks.get(RUN_FINISHED_TASK)
    if task is None:
        logger.warning("no task %r is registered: nothing waits on evaluation run %s", RUN_FINISHED_TASK, run_id)
        return
    task.apply_async((run_id,), queue=evaluation_queue(run_id))


NOTHING_TIMED = {"latencies": [], "sizes": [], "load_seconds": 0.0, "peak_rss_bytes": 0}


def _predict_chunk(run: EvaluationRun, chunk: int) -> tuple[pa.Table, dict]:
    """The chunk's predictions (a table of prediction_files.PREDICTIONS_SCHEMA, in position order) and timings."""
    from evaluations.engine.predict import PredictionConfig, predict  # torch: imported only by workers

    lo, hi = chunk * run.chunk_size, (chunk + 1) * run.chunk_size
    if is_chat(run.config):
        prompts = chat_chunk_examples(run, lo, hi)
        if not prompts:
            return predictions_table({"position": []}), dict(NOTHING_TIMED)
        return chat_chunk_predict(run, prompts, _check_platform)
    examples = list(
        Example.objects.filter(suite_version=run.suite_version, position__gte=lo, position__lt=hi)
        .order_by("position")
        .values_list("pk", "text", "position")
    )
    if not examples:
        return predictions_table({"position": []}), dict(NOTHING_TIMED)
    settings_ = prediction_settings(run.config)
    platform = compute_platform(settings_["device"])
    _check_platform(config_profile(run.config), platform)
    result = predict(artifact_path(run.artifact), [e[1] for e in examples], PredictionConfig(**settings_))
    labels = list(result.labels)
    table = predictions_table(
        {
            "position": [e[2] for e in examples],
            "example_id": [e[0] for e in examples],
            "unsafe_prob": np.asarray(result.unsafe_prob, dtype=np.float64),
            "probs": [[round(float(p), 6) for p in row] for row in result.probs],
            "predicted_label": [labels[int(i)] for i in result.predicted_label_index],
            "decision_unsafe": np.asarray(result.decision, dtype=bool),
            "recomposed_unsafe_prob": None
            if result.recomposed_unsafe_prob is None
            else np.asarray(result.recomposed_unsafe_prob, dtype=np.float64),
            "stable": None if result.stable is None else np.asarray(result.stable, dtype=bool),
        }
    )
    return table, {
        "platform": platform,
        "latencies": list(result.batch_latencies_s),
        "recompose_seconds": result.recompose_seconds,
        "sizes": list(result.batch_sizes),
        "load_seconds": result.load_seconds,
        "peak_rss_bytes": result.peak_rss_bytes,
        "parameter_count": result.parameter_count,
        "size_bytes": result.size_bytes,
    }


def _check_platform(profile: dict, platform: dict) -> None:
    """A worker runs an evaluation only on the CPU its profile declares (int8 kernels, and some int8
    decisions, differ by instruction set); profiles before this check declared none."""
    declared = profile.get("isa") or []
    if declared and profile.get("device", "cpu") == "cpu" and list(platform["isa"]) != list(declared):
        raise EngineError(
            "unsupported_platform",
            f"this worker's CPU ({platform['cpu_model']}) has the instruction sets {platform['isa']}; the "
            f"evaluation's deployment profile declares {declared}. Run it on a worker with that CPU.",
        )


def evaluation_chunk_record(*, run_id: int, chunk: int, predictions: pa.Table, timings: dict) -> None:
    """Store a chunk's predictions as a Parquet file in the artifact store (and the shared storage), then record
    its digest on the run under the row lock; the chunk that completes the run finishes it. A chunk recorded
    already is left as it is (a second delivery stores nothing new and records nothing)."""
    _record_chunk(run_id, chunk, timings, chunk_file_put(predictions))


def _record_chunk(run_id: int, chunk: int, timings: dict, stored: dict) -> None:
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().get(pk=run_id)
        if run.is_terminal or chunk in run.chunks_done:
            return
        run.chunks_done = sorted({*run.chunks_done, chunk})
        run.chunk_timings = {**run.chunk_timings, str(chunk): timings}
        run.chunk_files = {**run.chunk_files, str(chunk): stored}
        run.heartbeat_at = timezone.now()
        run.progress_stage = f"{len(run.chunks_done)} of {run.chunks_total} chunks"
        run.progress_percent = min(99, round(100 * len(run.chunks_done) / run.chunks_total))
        run.save(
            update_fields=[
                "chunks_done",
                "chunk_timings",
                "chunk_files",
                "heartbeat_at",
                "progress_stage",
                "progress_percent",
            ]
        )
        if len(run.chunks_done) == run.chunks_total:
            _finish(run)
            transaction.on_commit(lambda: _announce_finished(run_id), robust=True)


def stability_summary(stable: np.ndarray | None, masks: dict[str, np.ndarray]) -> dict | None:
    """Share of decisions that changed when the batches were recomposed, overall and per group."""
    if stable is None:
        return None

    def share(mask: np.ndarray) -> dict:
        n, unstable = int(mask.sum()), int((~stable[mask]).sum())
        return {"n": n, "unstable": unstable, "unstable_rate": unstable / n if n else None}

    return {**share(masks["overall"]), "groups": {key: share(mask) for key, mask in masks.items()}}


def _distinct(records: list[dict]) -> list[dict]:
    """The distinct records, in first-seen order (chunks of one run may run on several machines)."""
    seen: dict[str, dict] = {}
    for record in records:
        seen.setdefault(canonical_json(record), record)
    return list(seen.values())


def _finish(run: EvaluationRun) -> None:
    """Merge the chunks' files into the run's predictions file and compute every metric per group from it; the
    run succeeds. (Locked row.)"""
    labels = run.artifact.labels
    predictions, stored = predictions_merge(run)
    run.predictions_digest, run.predictions_bytes = stored.digest, stored.size
    run.predictions_rows = predictions.num_rows
    a = example_arrays(run.suite_version, labels)
    out = run_outputs(run, a["example_id"], predictions)
    chat = chat_group_options(run, a["example_id"], out["predicted_class"], predictions) if is_chat(run.config) else {}
    metrics = metrics_by_group(
        a["y"],
        out["decision"],
        out["unsafe_prob"],
        group_masks(a["slice"], a["subgroup"]),
        true_class=a["true_class"],
        predicted_class=out["predicted_class"],
        n_classes=len(labels),
        source_index=a["source_index"] if (a["source_index"] >= 0).any() else None,
        subgroup=a["subgroup"],
        min_subgroup_n=MIN_SUBGROUP_N,
        bins=run.config.get("ece_bins", 15),
        **chat,
    )
    timings = list(run.chunk_timings.values())
    latencies = [x for t in timings for x in t["latencies"]]
    sizes = [x for t in timings for x in t["sizes"]]
    runtime: dict[str, Any] = dict(runtime_summary(latencies, sizes))
    runtime.update(
        {
            "chunks": run.chunks_total,
            "load_seconds": sum(t["load_seconds"] for t in timings),
            "peak_rss_bytes": max((t["peak_rss_bytes"] for t in timings), default=0),
            "parameter_count": next((t["parameter_count"] for t in timings if "parameter_count" in t), None),
            "size_bytes": next((t["size_bytes"] for t in timings if "size_bytes" in t), run.artifact.size_bytes),
            # Where the predictions were computed: int8 kernels (and some int8 decisions) differ by CPU.
            "platforms": _distinct([t["platform"] for t in timings if "platform" in t]),
        }
    )
    if chat:  # generation speed, and the capability figure kept beside the runtime (its ratio is judged)
        runtime.update(chat_runtime(timings), perplexity=metrics["overall"].get("perplexity"))
    stability = stability_summary(out["stable"], group_masks(a["slice"], a["subgroup"], min_subgroup_n=MIN_SUBGROUP_N))
    if stability is not None:
        stability = {
            "seed": run.config.get("stability_seed"),
            "method": STABILITY_METHOD,
            "seconds": sum(t.get("recompose_seconds", 0.0) for t in timings),
            **stability,
        }
    now = timezone.now()
    run.metrics, run.runtime, run.stability = metrics, runtime, stability
    run.status, run.progress_stage, run.progress_percent = RunStatus.SUCCEEDED, "done", 100
    run.finished_at = now
    assert run.started_at is not None  # set by evaluation_run_start, before any chunk exists
    run.wall_seconds = (now - run.started_at).total_seconds()
    run.save()
    overall = {k: v for k, v in metrics["overall"].items() if k not in ("reliability", "subgroups")}
    ledger_append(
        actor=None,
        action="evaluation.succeeded",
        object_type=OBJECT_TYPE,
        object_id=run.pk,
        payload={
            "metrics_digest": digest(metrics),
            "overall": overall,
            "examples": len(a["y"]),
            "predictions_digest": stored.digest,
            "unstable_rate": None if stability is None else stability["unstable_rate"],
        },
    )


def evaluation_runs_requeue_orphaned() -> list[int]:
    """Called by beat. Re-enqueue the missing chunks of runs whose workers stopped reporting (lease
    expired), and the start of runs still queued a lease after they were requested (their start
    message was lost with a killed worker). Idempotent: a chunk or start delivered twice does its
    work once; the touched heartbeat keeps the next tick from enqueueing them again within a lease."""
    requeued = []
    for run_id in jobs_orphaned(EvaluationRun):
        run = EvaluationRun.objects.get(pk=run_id)
        missing = [i for i in range(run.chunks_total) if i not in run.chunks_done]
        if missing:
            EvaluationRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
            _enqueue_chunks(run_id, missing)
            requeued.append(run_id)
    cutoff = timezone.now() - dt.timedelta(seconds=settings.SAFESHRINK["RUN_LEASE_SECONDS"])
    unstarted = EvaluationRun.objects.filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cutoff),
        status=RunStatus.QUEUED,
        chunks_total=0,
        created_at__lt=cutoff,
    )
    for run_id in unstarted.values_list("pk", flat=True):
        if EvaluationRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(heartbeat_at=timezone.now()):
            evaluation_run_enqueue(run_id)
            requeued.append(run_id)
    return requeued


def evaluation_run_enqueue(run_id: int) -> None:
    """Enqueue the start of an evaluation run (call after commit) on its device's queue."""
    from evaluations.tasks import start_evaluation_run

    start_evaluation_run.apply_async((run_id,), queue=evaluation_queue(run_id))
