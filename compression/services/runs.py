"""Requesting, executing and cancelling compression runs."""

import logging
import re
import resource
import shutil
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, PermissionDenied, ValidationFailed
from accounts.models import Role
from compression.capabilities import capabilities_load
from compression.engine.errors import EngineError
from compression.engine.kinds import MODEL_KIND_CHAT, MODEL_KIND_CLASSIFIER, check_model_kind, model_kind_from_config
from compression.engine.methods import METHOD_DATA, SUPPORTED_METHODS, validate_parameters, validate_student
from compression.error_codes import CompressionErrorCode
from compression.models import CompressionRun, Experiment, RunStatus
from compression.selectors import jobs_orphaned
from ledger.services import ledger_append

from .artifacts import artifact_dir, artifact_ingest, artifact_store, artifact_verified, scratch_dir
from .behaviour import (
    BEHAVIOURAL_DISTILL,
    behaviour_dependencies,
    behaviour_run_check,
    behaviour_run_inputs,
    compression_run_record_round,
)
from .data import compression_data
from .jobs import JobCancelled, job_claim, job_fail, job_progress
from .provenance import hardware, package_versions, provenance_statement, sign_statement, torch_settings
from .signatures import system_signature_prepare, system_signature_record
from .workers import device_queue, device_worker_check

logger = logging.getLogger(__name__)
OBJECT_TYPE = "compression_run"


def _base_config(experiment: Experiment, method: str) -> dict:
    import json

    # Only config.json is read here (in the web process); the worker verifies every byte before use.
    try:
        config = json.loads((artifact_dir(experiment.base_artifact) / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        config = None  # missing from the store, unreadable or not JSON
    if not isinstance(config, dict):
        raise ValidationFailed(
            "The base artifact's config.json cannot be read from the artifact store.",
            code=CompressionErrorCode.CORRUPT_ARTIFACT,
            details={"experiment": ["The base artifact's config.json is missing or not a JSON object."]},
        )
    kind = model_kind_from_config(config)
    architectures = config.get("architectures") or []
    if kind == MODEL_KIND_CLASSIFIER and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValidationFailed(
            f"The base model ({architectures or config.get('model_type')}) is neither a sequence classifier nor a "
            "chat model.",
            code=CompressionErrorCode.UNSUPPORTED_ARCHITECTURE,
            details={"experiment": ["The base artifact has no sequence-classification or causal-LM head."]},
        )
    try:
        check_model_kind(method, kind)
    except EngineError as exc:
        raise ValidationFailed(exc.message, code=exc.code, details={"method": [exc.message]}) from exc
    if kind == MODEL_KIND_CHAT and not experiment.base_artifact.chat_template_digest:
        raise ValidationFailed(
            "The base chat model has no chat template: its compressed copy could not be evaluated on prompts.",
            code=CompressionErrorCode.NO_CHAT_TEMPLATE,
            details={
                "experiment": ["The base artifact has no chat template (tokenizer_config.json or chat_template.jinja)."]
            },
        )
    return config


def compression_run_request(
    *,
    actor,
    experiment_id: int,
    method: str,
    parameters: dict | None = None,
    seed: int = 0,
    data_suite_version_id: int | None = None,
    device: str | None = None,
    queue_anyway: bool = False,
) -> CompressionRun:
    """Queue a compression run; the worker task is enqueued only once the row has committed.
    Everything that can be checked before the run is checked here (a 400 naming the field).
    `device`: run on this device ('cpu', 'cuda', 'cuda:1'), on its queue; a device other than cpu needs a live
    worker on that queue (400 `no_worker_for_device` naming `device`) unless `queue_anyway`. None: the default
    queue, on the worker's own SAFESHRINK_DEVICE."""
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None:
        raise ValidationFailed("Unknown experiment.", details={"experiment": [f"No experiment {experiment_id}."]})
    if actor.role not in (Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only engineers request compression runs.")
    if method not in SUPPORTED_METHODS:
        raise ValidationFailed(
            f"Unknown method {method!r}.",
            code=CompressionErrorCode.UNKNOWN_METHOD,
            details={"method": [f"Choose one of: {', '.join(sorted(SUPPORTED_METHODS))}."]},
        )
    parameters = dict(parameters or {})
    capabilities_load()  # what start-up found about the optional methods (never probes here)
    try:
        validate_parameters(method, parameters)
    except EngineError as exc:
        raise ValidationFailed(exc.message, code=exc.code, details={"parameters": [exc.message]}) from exc
    if device is not None:
        _check_device(device, queue_anyway)
    base_config = _base_config(experiment, method)
    data_source = None
    if method == BEHAVIOURAL_DISTILL:
        if data_suite_version_id is not None:
            raise ValidationFailed(
                "behavioural_distill takes its prompts from its stress_set and heldback_split parameters.",
                details={"data_suite_version": ["Not used by behavioural_distill: give parameters.stress_set."]},
            )
        data_source = behaviour_run_check(base=experiment.base_artifact, parameters=parameters, base_config=base_config)
    if method == "distill":
        try:
            validate_student(parameters, base_config)
        except EngineError as exc:
            raise ValidationFailed(exc.message, code=exc.code, details={"parameters": [exc.message]}) from exc
    if METHOD_DATA.get(method) or data_suite_version_id is not None:
        if data_suite_version_id is None:
            raise ValidationFailed(
                f"{method} needs calibration/training data from a registered suite.",
                details={"data_suite_version": ["Required for this method."]},
            )
        _, data_source = compression_data(
            suite_version_id=data_suite_version_id,
            labels=experiment.base_artifact.labels,
            unsafe_labels=experiment.unsafe_labels,
        )
        empty = [f for f in METHOD_DATA.get(method, ()) if not data_source["counts"][f]]
        if empty:
            raise ValidationFailed(
                f"The suite has no {' or '.join(empty)} examples for {method}.",
                code=CompressionErrorCode.EMPTY_SUITE,
                details={"data_suite_version": [f"No {f} examples in this suite." for f in empty]},
            )
    with transaction.atomic():
        run = CompressionRun.objects.create(
            experiment=experiment,
            method=method,
            parameters=parameters,
            seed=seed,
            device=device or "",
            requested_by=actor,
            data_source=data_source,
        )
        ledger_append(
            actor=actor,
            action="run.requested",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={
                "experiment": experiment.pk,
                "method": method,
                "parameters": parameters,
                "seed": seed,
                "base_artifact": experiment.base_artifact.digest,
                "data": data_source,
                **({"device": device} if device else {}),  # runs requested without one record what they did
            },
        )
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _check_device(device: str, queue_anyway: bool) -> None:
    """A 400 naming `device` unless it names a device a queue runs (and, but for cpu, a live worker serves)."""
    if not isinstance(device, str) or not re.fullmatch(r"[a-z]+(:[0-9]+)?", device) or len(device) > 32:
        raise ValidationFailed(
            f"{device!r} is not a device name.", details={"device": ["A device such as 'cpu', 'cuda' or 'cuda:1'."]}
        )
    device_worker_check(device=device, field="device", queue_anyway=queue_anyway)


def compression_run_queue(run_id: int) -> str:
    """The queue of the run's requested device (the default queue when it requested none). Every delivery
    (the request's, the orphan sweep's) goes there; a stored device no queue runs stays on the default queue."""
    device = CompressionRun.objects.values_list("device", flat=True).get(pk=run_id)
    if not device:
        return settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        return device_queue(device, field="device")
    except ValidationFailed:
        return settings.CELERY_TASK_DEFAULT_QUEUE


def _enqueue(run_id: int) -> None:
    from compression.tasks import execute_compression_run

    execute_compression_run.apply_async((run_id,), queue=compression_run_queue(run_id))


def compression_run_cancel(*, actor, run_id: int) -> CompressionRun:
    with transaction.atomic():
        run = CompressionRun.objects.select_for_update().get(pk=run_id)
        if actor.role not in (Role.ENGINEER, Role.ADMIN) or (
            actor.role == Role.ENGINEER and run.requested_by_id != actor.pk
        ):
            raise PermissionDenied("Only the engineer who requested a run may cancel it.")
        if run.is_terminal:
            raise Conflict(f"Run {run.pk} is already {run.status}.", code=CompressionErrorCode.RUN_FINISHED)
        run.status = RunStatus.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        ledger_append(actor=actor, action="run.cancelled", object_type=OBJECT_TYPE, object_id=run.pk, payload={})
    return run


def compression_run_execute(*, run_id: int) -> None:
    """Run the method on the base model, store the artifact and finish the run. Idempotent."""
    run = job_claim(CompressionRun, run_id, object_type=OBJECT_TYPE)
    if run is None:
        return
    workdir = scratch_dir(f"run-{run.pk}")
    try:
        _execute(run, workdir)
    except JobCancelled:
        logger.info("compression run %s was cancelled", run.pk)
    except EngineError as exc:
        job_fail(CompressionRun, run.pk, object_type=OBJECT_TYPE, code=exc.code, reason=exc.message)
    except SoftTimeLimitExceeded:
        job_fail(
            CompressionRun,
            run.pk,
            object_type=OBJECT_TYPE,
            code=CompressionErrorCode.TIME_LIMIT,
            reason="The run exceeded its time limit.",
        )
    except Exception as exc:  # noqa: BLE001 - any failure must end as a readable FAILED state
        logger.exception("compression run %s failed", run.pk)
        job_fail(
            CompressionRun,
            run.pk,
            object_type=OBJECT_TYPE,
            code=CompressionErrorCode.INTERNAL_ERROR,
            reason=f"Unexpected error: {type(exc).__name__}: {exc}",
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _execute(run: CompressionRun, workdir: Path) -> None:
    from compression.engine import CompressionRequest, compress  # torch: imported only by workers

    base = run.experiment.base_artifact
    device, threads = torch_settings()
    device = run.device or device  # the requested device; else this worker's own
    started = timezone.now()

    def progress(stage: str, fraction: float) -> None:
        job_progress(CompressionRun, run.pk, stage=stage, percent=fraction * 100)

    data, data_digest, behaviour = None, "", {}
    if run.method == BEHAVIOURAL_DISTILL:
        behaviour = behaviour_run_inputs(run)
        data_digest = run.data_source["data_digest"] if run.data_source else ""
    elif run.data_source:
        data, source = compression_data(
            suite_version_id=run.data_source["suite_version"],
            labels=base.labels,
            unsafe_labels=run.experiment.unsafe_labels,
        )
        if source["data_digest"] != run.data_source["data_digest"]:
            raise EngineError(
                CompressionErrorCode.CORRUPT_ARTIFACT, "The suite's data changed since the run was requested."
            )
        data_digest = source["data_digest"]
    # The stored base must still be the registered bytes (EngineError corrupt_artifact otherwise), and
    # still be after the method has read it; the digest recorded in the provenance is the one checked.
    source_dir, verified = artifact_verified(base)
    result = compress(
        CompressionRequest(
            method=run.method,
            source_dir=source_dir,
            output_dir=workdir / "out",
            parameters=run.parameters,
            seed=run.seed,
            data=data,
            data_digest=data_digest,
            device=device,
            **_behaviour_request(run, behaviour),
        ),
        progress=progress,
    )
    _, verified_after = artifact_verified(base)
    finished = timezone.now()
    stored = artifact_store(result.output_dir, move=True)  # copy and upload before taking the run's lock
    signature = system_signature_prepare(stored.digest)  # SafeShrink's model-signing signature (None: has one)
    with transaction.atomic():
        locked = CompressionRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            raise JobCancelled(f"run {run.pk} is {locked.status}")
        artifact, _ = artifact_ingest(
            stored=stored,
            name=f"{base.name} · {run.method} (run {run.pk})",
            actor=run.requested_by,
            parent=base,
            parameter_count=result.parameter_count,
        )
        system_signature_record(artifact, signature)
        locked.provenance = provenance_statement(
            subject_name=artifact.name,
            subject_digest=artifact.digest,
            build_type=f"https://safeshrink.dev/compression/{run.method}@v1",
            external_parameters={"method": run.method, "parameters": run.parameters},
            internal_parameters={"seed": run.seed, "device": device, "threads": threads},
            dependencies=[
                {
                    "name": "base_model",
                    "uri": f"artifact:{base.pk}",
                    "digest": {"sha256": verified.digest},
                    "annotations": {
                        "verified": "sha256 of every stored file, before and after use",
                        "files": verified.files,
                        "files_hashed": verified.hashed + verified_after.hashed,
                        "files_from_cache": verified.cached + verified_after.cached,
                    },
                }
            ]
            + _data_dependencies(run, behaviour),
            run_id=run.pk,
            started_on=started.isoformat(),
            finished_on=finished.isoformat(),
            byproducts={
                "packages": package_versions(),
                "hardware": hardware(device, threads),
                "wall_seconds": result.wall_seconds,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "size_bytes": result.size_bytes,
                "source_size_bytes": result.source_size_bytes,
                "dtypes": result.dtypes,
                "sparsity": result.sparsity,
                "parameter_count": result.parameter_count,
                "nonzero_parameter_count": result.nonzero_parameter_count,
                "source_parameter_count": result.source_parameter_count,
                "details": result.details,
            },
        )
        locked.provenance_envelope = sign_statement(locked.provenance)
        locked.output_artifact = artifact
        locked.status = RunStatus.SUCCEEDED
        locked.progress_stage, locked.progress_percent = "done", 100
        locked.finished_at = finished
        assert locked.started_at is not None  # job_claim stamps started_at when the run starts running
        locked.wall_seconds = (finished - locked.started_at).total_seconds()
        locked.save()
        ledger_append(
            actor=None,
            action="run.succeeded",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={
                "output_artifact": artifact.digest,
                "size_bytes": result.size_bytes,
                "wall_seconds": locked.wall_seconds,
            },
        )


def _behaviour_request(run: CompressionRun, behaviour: dict) -> dict:
    """The CompressionRequest fields of a behavioural_distill run (none for other methods)."""
    if not behaviour:
        return {}
    return {
        "behaviour_data": behaviour["behaviour_data"],
        "judge": behaviour["judge"],
        "teachers": behaviour["teachers"],
        "system_prompt": (run.experiment.generation or {}).get("system_prompt"),
        "on_round": lambda record: compression_run_record_round(run.pk, record),
    }


def _data_dependencies(run: CompressionRun, behaviour: dict) -> list[dict]:
    """The provenance's data dependencies: a behavioural_distill run's teachers, judge and prompt sets, else
    the calibration/training suite version (none without data)."""
    if behaviour:
        return behaviour_dependencies(run, behaviour["verified"])
    if not run.data_source:
        return []
    return [
        {
            "name": "data",
            "uri": f"suite-version:{run.data_source['suite_version']}",
            "digest": {"sha256": run.data_source["data_digest"]},
            "annotations": {"suite_digest": run.data_source["suite_digest"], "counts": run.data_source["counts"]},
        }
    ]


def compression_runs_requeue_orphaned() -> list[int]:
    """Re-enqueue runs whose worker died (lease expired); the next delivery takes them over."""
    run_ids = jobs_orphaned(CompressionRun)
    for run_id in run_ids:
        _enqueue(run_id)
    return run_ids
