"""Load a sequence classifier artifact for inference, in any of the formats of ``formats``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.formats import (
    CONFIG_FILE,
    FORMAT_HF_DIR,
    FORMAT_HF_PRUNED,
    FORMAT_TORCH_QUANTIZED,
    FORMAT_TORCHAO_INT4,
    FORMAT_TORCHAO_INT8,
    RECIPE_FILE,
    STATE_FILE,
    TORCHAO_STATE_FILE,
    WEIGHTS_FILE,
    read_json_object,
    read_recipe,
)
from compression.engine.recipes import (
    apply_recipe,
    flatten_subclass_state,
    quiet_quantization_warnings,
    torchao_quantize,
)

__all__ = ["LoadedModel", "load_classifier", "resolve_device", "CPU_ONLY_FORMATS"]

# Formats whose kernels run on the CPU only (int8 / int4).
CPU_ONLY_FORMATS: tuple[str, ...] = (FORMAT_TORCH_QUANTIZED, FORMAT_TORCHAO_INT8, FORMAT_TORCHAO_INT4)


@dataclass(frozen=True)
class LoadedModel:
    """A classifier ready for inference (eval mode); ``labels`` are class names in logit index order."""

    model: Any
    tokenizer: Any
    labels: tuple[str, ...]
    format: str


def resolve_device(device: str) -> torch.device:
    """Parse ``device`` and check it is usable here; raise EngineError("invalid_parameter") otherwise."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"device {device!r} is not a valid torch device") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"device {device!r} requested but CUDA is not available")
    if resolved.type not in {"cpu", "cuda", "mps"}:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"device type {resolved.type!r} is not supported")
    return resolved


def _load_config(model_dir: Path) -> Any:
    """Load and check the config: it must describe a sequence-classification architecture."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"no {CONFIG_FILE} in {str(model_dir)!r}")
    raw = read_json_object(config_path, "config")
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"{CONFIG_FILE} names no model_type")
    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError) as exc:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"model_type {model_type!r} is not known to transformers"
        ) from exc
    except (OSError, TypeError) as exc:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"{CONFIG_FILE} could not be loaded ({type(exc).__name__})"
        ) from exc
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"model_type {model_type!r} has no sequence-classification architecture",
        )
    architectures = raw.get("architectures")
    # A bare encoder (e.g. "BertModel") would get a randomly initialised head: refuse rather than guess.
    if (
        isinstance(architectures, list)
        and architectures
        and not any(isinstance(name, str) and name.endswith("ForSequenceClassification") for name in architectures)
    ):
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"architectures {architectures!r} contain no sequence classifier (a classification head is required)",
        )
    return config


def _labels(config: Any) -> tuple[str, ...]:
    """Return class names in index order from config.id2label; raise corrupt_artifact when incomplete."""
    id2label = {int(key): str(value) for key, value in (config.id2label or {}).items()}
    count = int(config.num_labels)
    if sorted(id2label) != list(range(count)):
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"id2label {id2label!r} does not name classes 0..{count - 1}"
        )
    labels = tuple(id2label[index] for index in range(count))
    if len(set(labels)) != len(labels):
        raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"id2label has duplicate class names {labels!r}")
    return labels


def _load_tokenizer(model_dir: Path) -> Any:
    """Load the tokenizer stored in the artifact; raise corrupt_artifact when it cannot be built."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types here; all mean an unusable tokenizer.
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"tokenizer files in {str(model_dir)!r} could not be loaded ({type(exc).__name__})",
        ) from exc


def _auto_class(auto_class: Any) -> Any:
    """``auto_class`` or, by default, AutoModelForSequenceClassification (chat models pass AutoModelForCausalLM)."""
    if auto_class is not None:
        return auto_class
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def _load_hf_dir(model_dir: Path, config: Any, auto_class: Any = None) -> nn.Module:
    """Load a save_pretrained directory; missing or mismatched weights count as a corrupt artifact."""

    weight_files = [
        name
        for name in (
            "model.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
        )
        if (model_dir / name).is_file()
    ]
    if not weight_files:
        raise EngineError(
            EngineErrorCode.MODEL_NOT_FOUND,
            f"no weights file (model.safetensors / pytorch_model.bin) in {str(model_dir)!r}",
        )
    try:
        model, info = _auto_class(auto_class).from_pretrained(
            str(model_dir),
            config=config,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=weight_files[0].startswith("model.safetensors"),
            output_loading_info=True,
        )
    except Exception as exc:  # safetensors/torch/transformers each raise their own types for bad bytes.
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"weights {weight_files[0]} in {str(model_dir)!r} are unreadable or truncated ({type(exc).__name__})",
        ) from exc
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or mismatched:
        # Missing tensors would be silently random-initialised: never serve such a model.
        names = ", ".join(str(name) for name in (missing + mismatched)[:5])
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"weights do not match the config (missing/mismatched: {names})"
        )
    return model


def _load_torch_quantized(model_dir: Path, config: Any, auto_class: Any = None) -> nn.Module:
    """Rebuild the architecture from config, re-apply recipe.json, then load model_state.pt strictly."""
    recipe = read_json_object(model_dir / RECIPE_FILE, "recipe")
    if recipe.get("format") != FORMAT_TORCH_QUANTIZED:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"recipe format {recipe.get('format')!r} is not {FORMAT_TORCH_QUANTIZED!r}",
        )
    state_path = model_dir / STATE_FILE
    if not state_path.is_file():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"no {STATE_FILE} in {str(model_dir)!r}")
    model = apply_recipe(_skeleton(config, auto_class), recipe)
    try:
        with quiet_quantization_warnings():
            state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError for damaged archives.
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"{STATE_FILE} in {str(model_dir)!r} is unreadable or truncated ({type(exc).__name__})",
        ) from exc
    if not isinstance(state, Mapping):
        raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"{STATE_FILE} does not hold a state dict")
    try:
        with quiet_quantization_warnings():
            model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"{STATE_FILE} does not match config.json and recipe.json ({type(exc).__name__})",
        ) from exc
    return model


def _skeleton(config: Any, auto_class: Any = None) -> nn.Module:
    """A randomly initialised model of ``config`` (the caller's RNG is left untouched)."""
    # fork_rng: the throw-away random init must not disturb the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        skeleton = _auto_class(auto_class).from_config(config)
    skeleton.eval()
    return skeleton


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"no {path.name} in {str(path.parent)!r}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad bytes.
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"{path.name} in {str(path.parent)!r} is unreadable or truncated ({type(exc).__name__})",
        ) from exc


def _load_hf_pruned(model_dir: Path, config: Any, recipe: Mapping[str, Any]) -> nn.Module:
    """Rebuild the full architecture, slice it to recipe.json's kept heads/neurons, load weights strictly."""
    from compression.engine.structure import apply_structure

    state = _load_safetensors(model_dir / WEIGHTS_FILE)
    model = apply_structure(_skeleton(config), recipe.get("layers"))
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"{WEIGHTS_FILE} does not match config.json and recipe.json ({type(exc).__name__})",
        ) from exc
    dtypes = {tensor.dtype for tensor in state.values() if tensor.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    return model


def _load_torchao(model_dir: Path, config: Any, recipe: Mapping[str, Any], auto_class: Any = None) -> nn.Module:
    """Re-quantize a fresh skeleton with torchao as recipe.json says (int8 or int4 weight-only, the modules
    kept in floating point), then copy the stored inner tensors into it exactly."""
    state = _load_safetensors(model_dir / TORCHAO_STATE_FILE)
    model = torchao_quantize(_skeleton(config, auto_class), recipe)
    expected = flatten_subclass_state(model)
    if set(expected) != set(state) or any(
        expected[k].shape != state[k].shape or expected[k].dtype != state[k].dtype for k in expected
    ):
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"{TORCHAO_STATE_FILE} does not match config.json and recipe.json"
        )
    with torch.no_grad():
        for key, value in model.state_dict(keep_vars=True).items():
            if type(value) in (torch.Tensor, nn.Parameter) or not hasattr(value, "__tensor_flatten__"):
                if key in state:  # absent: a tied weight, stored once under the key it shares memory with
                    value.copy_(state[key])
            else:
                inner_names, _ = value.__tensor_flatten__()
                for name in inner_names:
                    getattr(value, name).copy_(state[f"{key}.{name}"])
    return model


def load_classifier(model_dir: Path, device: str = "cpu") -> LoadedModel:
    """Load the classifier in ``model_dir`` in eval mode, offline. The format is recipe.json's "format"
    ("torch-quantized", "hf-pruned", "torchao-int8") when recipe.json is present, else "hf-dir".

    Raises EngineError: "model_not_found" (missing dir/config/weights), "unsupported_architecture"
    (not a sequence classifier), "corrupt_artifact" (unreadable files), "invalid_parameter" (device),
    "method_unavailable" (a torchao artifact where torchao is not usable).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"model directory {str(model_dir)!r} does not exist")
    resolved = resolve_device(device)
    config = _load_config(model_dir)
    labels = _labels(config)
    recipe = read_recipe(model_dir)
    fmt = FORMAT_HF_DIR if recipe is None else str(recipe["format"])
    if fmt in CPU_ONLY_FORMATS and resolved.type != "cpu":
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"{fmt} (int8) models run on the CPU only")
    tokenizer = _load_tokenizer(model_dir)
    if fmt == FORMAT_TORCH_QUANTIZED:
        model = _load_torch_quantized(model_dir, config)
    elif fmt == FORMAT_HF_PRUNED:
        model = _load_hf_pruned(model_dir, config, recipe or {})
    elif fmt in (FORMAT_TORCHAO_INT8, FORMAT_TORCHAO_INT4):
        model = _load_torchao(model_dir, config, recipe or {})
    else:
        model = _load_hf_dir(model_dir, config)
    model.to(resolved)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, labels=labels, format=fmt)
