"""Artifact formats and file names, and reading recipe.json (torch-free: the web process uses it too).

Formats (``recipe.json``'s "format" decides; no recipe means a plain Hugging Face dir):
- "hf-dir": save_pretrained directory (fp32, fp16, bf16, magnitude-pruned, distilled students; a chat
  model's pruned or imported folder carries a recipe.json saying so, with format "hf-dir");
- "torch-quantized": dynamic int8 (torch.ao) state dict in model_state.pt, re-quantized skeleton;
- "hf-pruned": structurally pruned BERT-family model; recipe.json lists per-layer kept heads/neurons
  and the loader slices a fresh skeleton to those shapes before loading model.safetensors strictly;
- "torchao-int8": torchao int8 weight-only; model_state.safetensors holds each quantized weight's
  inner tensors (qdata/scale/zero_point) as plain tensors.
- "torchao-int4": torchao int4 weight-only (IntxWeightOnlyConfig, int4 values in groups, stored unpacked
  in int8 containers); stored like "torchao-int8".

Chat models (causal LMs, ``kinds.MODEL_KIND_CHAT``) use the same formats; their recipe.json also says
"model_kind": "causal-lm" and which modules were kept in floating point ("keep_float").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compression.engine.errors import EngineError, EngineErrorCode

__all__ = [
    "FORMAT_HF_DIR",
    "FORMAT_TORCH_QUANTIZED",
    "FORMAT_HF_PRUNED",
    "FORMAT_TORCHAO_INT8",
    "FORMAT_TORCHAO_INT4",
    "FORMATS",
    "FORMAT_JUDGE_RULES",
    "ARTIFACT_FORMATS",
    "WEIGHTS_FILE",
    "TORCHAO_STATE_FILE",
    "RECIPE_FILE",
    "STATE_FILE",
    "CONFIG_FILE",
    "read_json_object",
    "read_recipe",
]

FORMAT_HF_DIR = "hf-dir"
FORMAT_TORCH_QUANTIZED = "torch-quantized"
FORMAT_HF_PRUNED = "hf-pruned"
FORMAT_TORCHAO_INT8 = "torchao-int8"
FORMAT_TORCHAO_INT4 = "torchao-int4"
FORMATS: tuple[str, ...] = (
    FORMAT_HF_DIR,
    FORMAT_TORCH_QUANTIZED,
    FORMAT_HF_PRUNED,
    FORMAT_TORCHAO_INT8,
    FORMAT_TORCHAO_INT4,
)
# A judge of chat-model answers defined by rules only (judge.json, no weights: evaluations.engine.judges): an
# artifact format, though no compression loads or writes it.
FORMAT_JUDGE_RULES = "judge-rules"
ARTIFACT_FORMATS: tuple[str, ...] = (*FORMATS, FORMAT_JUDGE_RULES)
WEIGHTS_FILE = "model.safetensors"
TORCHAO_STATE_FILE = "model_state.safetensors"
RECIPE_FILE = "recipe.json"
STATE_FILE = "model_state.pt"
CONFIG_FILE = "config.json"


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object file; raise EngineError("corrupt_artifact") when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"{what} {path.name} is not readable JSON ({type(exc).__name__})"
        ) from exc
    if not isinstance(data, dict):
        raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"{what} {path.name} is not a JSON object")
    return data


def read_recipe(model_dir: Path) -> dict[str, Any] | None:
    """Return recipe.json of ``model_dir`` (None when absent); corrupt_artifact for an unknown format."""
    path = Path(model_dir) / RECIPE_FILE
    if not path.is_file():
        return None
    recipe = read_json_object(path, "recipe")
    if recipe.get("format") not in FORMATS:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"recipe format {recipe.get('format')!r} is not one of {list(FORMATS)}",
        )
    return recipe
