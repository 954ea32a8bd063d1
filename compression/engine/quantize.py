"""Quantization and weight casts: dynamic_int8 (torch.ao), fp16 / bf16 casts, int8_weight_only (torchao)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from compression.engine.common import (
    TOKENIZER_FILES,
    MethodContext,
    MethodOutput,
    copy_config,
    copy_tokenizer_files,
    save_hf_dir,
)
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.formats import (
    CONFIG_FILE,
    FORMAT_HF_DIR,
    FORMAT_TORCH_QUANTIZED,
    FORMAT_TORCHAO_INT8,
    RECIPE_FILE,
    STATE_FILE,
    TORCHAO_STATE_FILE,
)
from compression.engine.recipes import (
    apply_recipe,
    flatten_subclass_state,
    quiet_quantization_warnings,
    torchao_int8_quantize,
)
from trust.canonical import canonical_bytes

__all__ = [
    "run_dynamic_int8",
    "run_cast",
    "run_int8_weight_only",
]


def _dynamic_int8_recipe(parameters: dict[str, Any]) -> dict[str, Any]:
    """Return the recipe.json content for dynamic_int8 with these (validated) parameters."""
    modules = ["Embedding", "Linear"] if parameters.get("quantize_embeddings", False) else ["Linear"]
    return {"method": "dynamic_int8", "format": FORMAT_TORCH_QUANTIZED, "dtype": "qint8", "modules": modules}


def _int8_weight_only_recipe(library_version: str) -> dict[str, Any]:
    """Return the recipe.json content for int8_weight_only made with torchao ``library_version``."""
    return {
        "method": "int8_weight_only",
        "format": FORMAT_TORCHAO_INT8,
        "library": "torchao",
        "library_version": library_version,
        "config": "Int8WeightOnlyConfig",
        "modules": ["Linear"],
    }


def _write_artifact(model: torch.nn.Module, recipe: dict[str, Any], source_dir: Path, output_dir: Path) -> None:
    """Write config, tokenizer files, recipe.json and model_state.pt into the (new) ``output_dir``."""
    for name in (CONFIG_FILE, *TOKENIZER_FILES):
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, output_dir / name)
    (output_dir / RECIPE_FILE).write_bytes(canonical_bytes(recipe))
    with quiet_quantization_warnings():
        torch.save(model.state_dict(), output_dir / STATE_FILE)


def _write_or_fail(write: Any, *args: Any) -> None:
    try:
        write(*args)
    except OSError as exc:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"writing the artifact failed ({exc.strerror or exc})"
        ) from exc


def run_dynamic_int8(ctx: MethodContext) -> MethodOutput:
    """Dynamic qint8 of every nn.Linear (and embeddings on request); saved as "torch-quantized"."""
    ctx.report("quantizing", 0.5)
    recipe = _dynamic_int8_recipe(ctx.parameters)
    try:
        compressed = apply_recipe(ctx.loaded.model, recipe)
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"dynamic_int8 failed on this architecture ({type(exc).__name__}: {exc})",
        ) from exc
    compressed.eval()
    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    # Looked up at call time so tests can substitute a failing writer.
    _write_or_fail(_write_artifact, compressed, recipe, ctx.source_dir, ctx.output_dir)
    return MethodOutput(FORMAT_TORCH_QUANTIZED, {"quantized_modules": recipe["modules"], "dtype": "qint8"})


_CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def run_cast(ctx: MethodContext) -> MethodOutput:
    """Cast every floating-point weight to float16 / bfloat16; saved as a plain hf-dir (config dtype set)."""
    dtype = _CAST_DTYPES[ctx.request.method]
    ctx.report("casting", 0.5)
    model = ctx.loaded.model.to(dtype)
    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    _write_or_fail(save_hf_dir, model, ctx.source_dir, ctx.output_dir)
    return MethodOutput(FORMAT_HF_DIR, {"cast_dtype": str(dtype).removeprefix("torch.")})


def run_int8_weight_only(ctx: MethodContext) -> MethodOutput:
    """torchao int8 weight-only quantization of every nn.Linear; saved as "torchao-int8"."""
    import torchao

    ctx.report("quantizing", 0.5)
    model = torchao_int8_quantize(ctx.loaded.model)
    model.eval()
    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    recipe = _int8_weight_only_recipe(str(torchao.__version__))

    def write() -> None:
        from safetensors.torch import save_file

        copy_config(ctx.source_dir, ctx.output_dir)
        copy_tokenizer_files(ctx.source_dir, ctx.output_dir)
        (ctx.output_dir / RECIPE_FILE).write_bytes(canonical_bytes(recipe))
        save_file(flatten_subclass_state(model), str(ctx.output_dir / TORCHAO_STATE_FILE), metadata={"format": "pt"})

    _write_or_fail(write)
    return MethodOutput(FORMAT_TORCHAO_INT8, {"torchao_version": recipe["library_version"], "dtype": "int8"})
