"""Quantization and weight casts: dynamic_int8 (torch.ao), fp16 / bf16 casts, int8 and int4 weight-only (torchao).

Chat models (causal LMs) keep ``lm_head`` in floating point under every quantization (recipe.json's
"keep_float" and "lm_head" say so and why: ``chat.LM_HEAD_FP32_REASON``) and carry their chat template and
generation config into the artifact."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from compression.engine.chat import chat_recipe, copy_chat_files, is_chat
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
    FORMAT_TORCHAO_INT4,
    FORMAT_TORCHAO_INT8,
    RECIPE_FILE,
    STATE_FILE,
    TORCHAO_STATE_FILE,
)
from compression.engine.recipes import (
    apply_recipe,
    flatten_subclass_state,
    keep_float_modules,
    quiet_quantization_warnings,
    torchao_quantize,
)
from trust.canonical import canonical_bytes

__all__ = [
    "run_dynamic_int8",
    "run_cast",
    "run_int8_weight_only",
    "run_int4_weight_only",
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
    """Write config, tokenizer files (a chat model's template and generation config too), recipe.json and
    model_state.pt into the (new) ``output_dir``."""
    for name in (CONFIG_FILE, *TOKENIZER_FILES):
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, output_dir / name)
    copy_chat_files(source_dir, output_dir)
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
    """Dynamic qint8 of every nn.Linear (and embeddings on request; a chat model's lm_head stays in floating
    point); saved as "torch-quantized"."""
    ctx.report("quantizing", 0.5)
    recipe = _dynamic_int8_recipe(ctx.parameters)
    if is_chat(ctx.loaded):
        recipe = chat_recipe(recipe, lm_head="float")
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
    details: dict[str, Any] = {"quantized_modules": recipe["modules"], "dtype": "qint8"}
    if "keep_float" in recipe:
        details["kept_float"] = recipe["keep_float"]
    return MethodOutput(FORMAT_TORCH_QUANTIZED, details)


_CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def run_cast(ctx: MethodContext) -> MethodOutput:
    """Cast every floating-point weight to float16 / bfloat16; saved as a plain hf-dir (config dtype set)."""
    dtype = _CAST_DTYPES[ctx.request.method]
    ctx.report("casting", 0.5)
    model = ctx.loaded.model.to(dtype)
    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    _write_or_fail(save_hf_dir, model, ctx.source_dir, ctx.output_dir)
    if is_chat(ctx.loaded):
        recipe = chat_recipe(
            {"method": ctx.request.method, "format": FORMAT_HF_DIR, "dtype": str(dtype)[6:]}, lm_head="cast"
        )
        _write_or_fail(_write_chat_extras, recipe, ctx.source_dir, ctx.output_dir)
    return MethodOutput(FORMAT_HF_DIR, {"cast_dtype": str(dtype).removeprefix("torch.")})


def _write_chat_extras(recipe: dict[str, Any], source_dir: Path, output_dir: Path) -> None:
    copy_chat_files(source_dir, output_dir)
    (output_dir / RECIPE_FILE).write_bytes(canonical_bytes(recipe))


def _run_torchao(ctx: MethodContext, recipe: dict[str, Any]) -> torch.nn.Module:
    """Quantize the source as ``recipe`` says and write the artifact (config, tokenizer and chat files, recipe,
    the inner tensors in model_state.safetensors)."""
    ctx.report("quantizing", 0.5)
    model = torchao_quantize(ctx.loaded.model, recipe)
    model.eval()
    ctx.report("saving", 0.8)
    ctx.make_output_dir()

    def write() -> None:
        from safetensors.torch import save_file

        copy_config(ctx.source_dir, ctx.output_dir)
        copy_tokenizer_files(ctx.source_dir, ctx.output_dir)
        copy_chat_files(ctx.source_dir, ctx.output_dir)
        (ctx.output_dir / RECIPE_FILE).write_bytes(canonical_bytes(recipe))
        save_file(flatten_subclass_state(model), str(ctx.output_dir / TORCHAO_STATE_FILE), metadata={"format": "pt"})

    _write_or_fail(write)
    return model


def _torchao_version() -> str:
    import torchao

    return str(torchao.__version__)


def run_int8_weight_only(ctx: MethodContext) -> MethodOutput:
    """torchao int8 weight-only quantization of every nn.Linear (a chat model's lm_head stays in floating
    point); saved as "torchao-int8"."""
    recipe = _int8_weight_only_recipe(_torchao_version())
    if is_chat(ctx.loaded):
        recipe = chat_recipe(recipe, lm_head="float")
    _run_torchao(ctx, recipe)
    details: dict[str, Any] = {"torchao_version": recipe["library_version"], "dtype": "int8"}
    if "keep_float" in recipe:
        details["kept_float"] = recipe["keep_float"]
    return MethodOutput(FORMAT_TORCHAO_INT8, details)


def run_int4_weight_only(ctx: MethodContext) -> MethodOutput:
    """torchao int4 weight-only quantization (groups of ``group_size`` input weights, symmetric, one scale per
    group) of a chat model's nn.Linear layers except lm_head; saved as "torchao-int4". torchao's CPU path
    (IntxWeightOnlyConfig) keeps the int4 values unpacked in int8 tensors: the file is about int8's size."""
    group_size = int(ctx.parameters["group_size"])
    recipe = chat_recipe(
        {
            "method": "int4_weight_only",
            "format": FORMAT_TORCHAO_INT4,
            "library": "torchao",
            "library_version": _torchao_version(),
            "config": "IntxWeightOnlyConfig",
            "weight_dtype": "int4",
            "group_size": group_size,
            "mapping": "symmetric",
            "storage": "int4 values unpacked in int8 tensors (torchao IntxUnpackedToInt8Tensor)",
            "modules": ["Linear"],
        },
        lm_head="float",
    )
    keep = set(keep_float_modules(recipe))
    for name, module in ctx.loaded.model.named_modules():
        if isinstance(module, torch.nn.Linear) and name not in keep and module.in_features % group_size:
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER,
                f"parameter 'group_size' = {group_size} does not divide the input size {module.in_features} of {name}",
            )
    _run_torchao(ctx, recipe)
    return MethodOutput(
        FORMAT_TORCHAO_INT4,
        {
            "torchao_version": recipe["library_version"],
            "dtype": "int4",
            "group_size": group_size,
            "kept_float": recipe["keep_float"],
            "storage": recipe["storage"],
        },
    )
