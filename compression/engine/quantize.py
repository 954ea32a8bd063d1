"""Compression methods that produce a "torch-quantized" artifact (today: dynamic int8)."""

from __future__ import annotations

import json
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from compression.engine.errors import EngineError
from compression.engine.loading import (
    CONFIG_FILE,
    FORMAT_HF_DIR,
    FORMAT_TORCH_QUANTIZED,
    RECIPE_FILE,
    STATE_FILE,
    apply_recipe,
    count_parameters,
    load_classifier,
    quiet_quantization_warnings,
    state_dict_dtypes,
)
from compression.engine.manifest import dir_size
from compression.engine.methods import validate_parameters
from compression.engine.types import CompressionRequest, CompressionResult

__all__ = ["compress", "TOKENIZER_FILES"]

# Copied byte-for-byte from the source so the tokenizer (and the digest) cannot drift.
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spm.model",
    "tokenizer.model",
)

Progress = Callable[[str, float], None]


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _dynamic_int8_recipe(parameters: dict[str, Any]) -> dict[str, Any]:
    """Return the recipe.json content for dynamic_int8 with these (validated) parameters."""
    modules = ["Embedding", "Linear"] if parameters.get("quantize_embeddings", False) else ["Linear"]
    return {"method": "dynamic_int8", "format": FORMAT_TORCH_QUANTIZED, "dtype": "qint8", "modules": modules}


def _write_artifact(model: torch.nn.Module, recipe: dict[str, Any], source_dir: Path, output_dir: Path) -> None:
    """Write config, tokenizer files, recipe.json and model_state.pt into the (new) ``output_dir``."""
    for name in (CONFIG_FILE, *TOKENIZER_FILES):
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, output_dir / name)
    (output_dir / RECIPE_FILE).write_bytes(canonical_json(recipe))
    with quiet_quantization_warnings():
        torch.save(model.state_dict(), output_dir / STATE_FILE)


def compress(request: CompressionRequest, progress: Progress | None = None) -> CompressionResult:
    """Apply ``request.method`` to the classifier in ``request.source_dir`` and write a new artifact.

    ``request.output_dir`` must not exist; it is created here and removed again if anything fails, so
    no half-written artifact remains. Progress is reported as ("loading", 0.1), ("quantizing", 0.5),
    ("saving", 0.8), ("done", 1.0). The same request and seed give byte-identical files.
    Raises EngineError ("unknown_method", "invalid_parameter", "model_not_found",
    "unsupported_architecture", "corrupt_artifact").
    """
    started = time.perf_counter()
    report: Progress = progress or (lambda stage, fraction: None)
    validate_parameters(request.method, request.parameters)
    if type(request.seed) is not int:
        raise EngineError("invalid_parameter", f"seed must be an integer, got {type(request.seed).__name__}")
    parameters = dict(request.parameters)
    source_dir = Path(request.source_dir)
    output_dir = Path(request.output_dir)
    if output_dir.exists():
        raise EngineError("invalid_parameter", f"output_dir {str(output_dir)!r} already exists")
    if output_dir.resolve() == source_dir.resolve() or source_dir.resolve() in output_dir.resolve().parents:
        raise EngineError("invalid_parameter", "output_dir must not be inside source_dir")

    report("loading", 0.1)
    loaded = load_classifier(source_dir, device="cpu")
    if loaded.format != FORMAT_HF_DIR:
        raise EngineError(
            "unsupported_architecture", f"source is already a {loaded.format!r} artifact; compress an hf-dir model"
        )
    source_size = dir_size(source_dir)

    report("quantizing", 0.5)
    recipe = _dynamic_int8_recipe(parameters)
    # Dynamic int8 is deterministic; seeding keeps any future stochastic method reproducible too.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(request.seed)
        try:
            compressed = apply_recipe(loaded.model, recipe)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(
                "unsupported_architecture", f"{request.method} failed on this architecture ({type(exc).__name__}: {exc})"
            ) from exc
    compressed.eval()

    report("saving", 0.8)
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        output_dir.mkdir()
    except OSError as exc:
        raise EngineError("invalid_parameter", f"output_dir {str(output_dir)!r} cannot be created ({exc.strerror})") from exc
    try:
        try:
            _write_artifact(compressed, recipe, source_dir, output_dir)
        except OSError as exc:
            raise EngineError("corrupt_artifact", f"writing the artifact failed ({exc.strerror or exc})") from exc
        # Prove the artifact round-trips through the loader before calling it a success.
        reloaded = load_classifier(output_dir, device="cpu")
        result = CompressionResult(
            output_dir=output_dir,
            format=FORMAT_TORCH_QUANTIZED,
            method=request.method,
            parameters=parameters,
            size_bytes=dir_size(output_dir),
            source_size_bytes=source_size,
            parameter_count=count_parameters(reloaded.model),
            dtypes=state_dict_dtypes(reloaded.model.state_dict()),
            wall_seconds=time.perf_counter() - started,
            peak_rss_bytes=peak_rss_bytes(),
        )
    except BaseException:
        # Also on cancellation (SoftTimeLimitExceeded, KeyboardInterrupt): never leave half an artifact.
        shutil.rmtree(output_dir, ignore_errors=True)
        raise
    report("done", 1.0)
    return result
