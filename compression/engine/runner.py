"""``compress``: validate a CompressionRequest, run its method, verify the artifact, build the result."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from compression.engine.common import MethodContext, MethodOutput, Progress, peak_rss_bytes
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.formats import FORMAT_HF_DIR
from compression.engine.kinds import MODEL_KIND_CHAT, check_model_kind, model_kind
from compression.engine.loading import load_classifier, resolve_device
from compression.engine.manifest import dir_size, manifest_digest
from compression.engine.methods import required_data, resolve_parameters
from compression.engine.parameters import count_nonzero_parameters, count_parameters, state_dict_dtypes
from compression.engine.types import DATA_FIELDS, CompressionData, CompressionRequest, CompressionResult

__all__ = ["compress", "CPU_ONLY_METHODS"]

CPU_ONLY_METHODS: frozenset[str] = frozenset({"dynamic_int8", "int8_weight_only", "int4_weight_only"})
# Methods that move the model to the requested device (training or scoring on it); the others transform the loaded
# CPU copy whatever device was asked for, so their result records "cpu" (where the work was done).
DEVICE_METHODS: frozenset[str] = frozenset({"distill", "structured_prune", "behavioural_distill"})
# Methods that read extra teacher folders (request.teachers; source_dir is always the first teacher).
TEACHER_METHODS: frozenset[str] = frozenset({"distill", "behavioural_distill"})
# Methods whose data is not labelled texts (CompressionData): no class-index check applies.
UNLABELLED_METHODS: frozenset[str] = frozenset({"behavioural_distill"})


def _implementation(method: str) -> Callable[[MethodContext], MethodOutput]:
    from compression.engine import quantize

    if method == "dynamic_int8":
        return quantize.run_dynamic_int8
    if method in ("fp16", "bf16"):
        return quantize.run_cast
    if method == "int8_weight_only":
        return quantize.run_int8_weight_only
    if method == "int4_weight_only":
        return quantize.run_int4_weight_only
    if method in ("magnitude_prune", "structured_prune", "semi_structured_24"):
        from compression.engine import prune

        return {
            "magnitude_prune": prune.run_magnitude_prune,
            "structured_prune": prune.run_structured_prune,
            "semi_structured_24": prune.run_semi_structured_24,
        }[method]
    if method == "behavioural_distill":
        from compression.engine import behaviour_distill

        return behaviour_distill.run_behavioural_distill
    from compression.engine import distill

    return distill.run_distill


def _required_data(method: str, parameters: dict) -> list[str]:
    return required_data(method, parameters)


def _load(model_dir: Path, kind: str) -> Any:
    """The model in ``model_dir`` on the CPU: a LoadedChatModel for a chat model, else a LoadedModel."""
    if kind == MODEL_KIND_CHAT:
        from compression.engine.chat import load_chat_model

        return load_chat_model(model_dir, device="cpu")
    return load_classifier(model_dir, device="cpu")


def _check_data(request: CompressionRequest, parameters: dict, num_labels: int | None) -> None:
    data = request.data
    if data is not None and not isinstance(data, CompressionData):
        raise EngineError(EngineErrorCode.INVALID_INPUT, "request.data must be a CompressionData")
    for name in _required_data(request.method, parameters):
        if data is None or not getattr(data, name):
            raise EngineError(EngineErrorCode.EMPTY_INPUT, f"method {request.method!r} needs a non-empty data.{name}")
    if data is not None and num_labels is not None:
        for name in DATA_FIELDS:
            bad = [label for _, label in getattr(data, name) if label >= num_labels]
            if bad:
                raise EngineError(
                    EngineErrorCode.INVALID_INPUT,
                    f"data.{name} has label index {bad[0]} but the model has {num_labels} classes",
                )


def compress(request: CompressionRequest, progress: Progress | None = None) -> CompressionResult:
    """Apply ``request.method`` to the model in ``request.source_dir`` and write a new artifact.

    The source's kind (``kinds.model_kind``: a classifier or a chat model) decides how it is loaded; a method
    that does not apply to that kind (``kinds.METHOD_KINDS``) is refused with "unsupported_architecture".

    ``request.output_dir`` must not exist; it is created here and removed again if anything fails
    (including an exception raised by ``progress``, which is re-raised), so no half-written artifact
    remains. Progress starts with ("loading", 0.1), ends with ("done", 1.0); methods report their own
    stages in between (dynamic_int8: "quantizing" 0.5, "saving" 0.8). Deterministic methods give
    byte-identical files for the same request and seed on the same machine.
    Raises EngineError ("unknown_method", "invalid_parameter", "method_unavailable", "empty_input",
    "invalid_input", "model_not_found", "unsupported_architecture", "corrupt_artifact", and for a chat
    model "no_chat_template").
    """
    started = time.perf_counter()
    report: Progress = progress or (lambda stage, fraction: None)
    parameters = resolve_parameters(request.method, request.parameters)
    if type(request.seed) is not int:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER, f"seed must be an integer, got {type(request.seed).__name__}"
        )
    if not isinstance(request.device, str) or not request.device:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "device must be a device name such as 'cpu' or 'cuda'")
    device = resolve_device(request.device)
    if device.type != "cpu" and request.method in CPU_ONLY_METHODS:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER, f"device {request.device!r}: {request.method} runs on the CPU only"
        )
    if request.teachers and request.method not in TEACHER_METHODS:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"teachers are only used by methods {', '.join(repr(m) for m in sorted(TEACHER_METHODS))}",
        )
    source_dir = Path(request.source_dir)
    output_dir = Path(request.output_dir)
    if output_dir.exists():
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"output_dir {str(output_dir)!r} already exists")
    if output_dir.resolve() == source_dir.resolve() or source_dir.resolve() in output_dir.resolve().parents:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "output_dir must not be inside source_dir")

    kind = model_kind(source_dir)
    check_model_kind(request.method, kind)
    try:
        report("loading", 0.1)
        loaded = _load(source_dir, kind)
        if loaded.format != FORMAT_HF_DIR:
            raise EngineError(
                EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
                f"source is already a {loaded.format!r} artifact; compress an hf-dir model",
            )
        labelled = kind != MODEL_KIND_CHAT and request.method not in UNLABELLED_METHODS
        _check_data(request, parameters, len(loaded.labels) if labelled else None)
        source_size = dir_size(source_dir)
        source_parameters = count_parameters(loaded.model)
        context = MethodContext(
            request=request,
            parameters=parameters,
            loaded=loaded,
            source_dir=source_dir,
            output_dir=output_dir,
            device=device,
            report=report,
        )
        output = _implementation(request.method)(context)
        if not output_dir.is_dir():
            raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"method {request.method!r} wrote no artifact")
        # Prove the artifact round-trips through the loader before calling it a success.
        reloaded = _load(output_dir, kind)
        if reloaded.format != output.format:
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT, f"artifact reloads as {reloaded.format!r}, not {output.format!r}"
            )
        total = count_parameters(reloaded.model)
        nonzero = count_nonzero_parameters(reloaded.model)
        data_digest = request.data_digest or (request.data.digest() if request.data is not None else "")
        details = {
            "effective_parameters": parameters,
            "torch_threads": torch.get_num_threads(),
            "data_counts": request.data.counts() if request.data is not None else {},
            "model_kind": kind,
            **output.details,
        }
        if kind == MODEL_KIND_CHAT:
            details["chat_template_digest"] = reloaded.chat_template_digest
        result = CompressionResult(
            output_dir=output_dir,
            format=output.format,
            method=request.method,
            parameters=dict(request.parameters),
            size_bytes=dir_size(output_dir),
            source_size_bytes=source_size,
            parameter_count=total,
            dtypes=state_dict_dtypes(reloaded.model.state_dict()),
            wall_seconds=time.perf_counter() - started,
            peak_rss_bytes=peak_rss_bytes(),
            nonzero_parameter_count=nonzero,
            sparsity=1.0 - nonzero / total if total else 0.0,
            source_parameter_count=source_parameters,
            manifest_digest=manifest_digest(output_dir),
            data_digest=data_digest,
            seed=request.seed,
            device=str(device) if request.method in DEVICE_METHODS else "cpu",
            details=details,
        )
        report("done", 1.0)
    except BaseException:
        # Also on cancellation (a raising progress callback, SoftTimeLimitExceeded, KeyboardInterrupt):
        # never leave half an artifact. output_dir did not exist before, so it is ours to remove.
        shutil.rmtree(output_dir, ignore_errors=True)
        raise
    return result
