"""Load a sequence classifier artifact for inference.

Formats (``recipe.json``'s "format" decides; no recipe means a plain Hugging Face dir):
- "hf-dir": save_pretrained directory (fp32, fp16, bf16, magnitude-pruned, distilled students);
- "torch-quantized": dynamic int8 (torch.ao) state dict in model_state.pt, re-quantized skeleton;
- "hf-pruned": structurally pruned BERT-family model; recipe.json lists per-layer kept heads/neurons
  and the loader slices a fresh skeleton to those shapes before loading model.safetensors strictly;
- "torchao-int8": torchao int8 weight-only; model_state.safetensors holds each quantized weight's
  inner tensors (qdata/scale/zero_point) as plain tensors.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression.engine.errors import EngineError

__all__ = [
    "LoadedModel",
    "load_classifier",
    "apply_recipe",
    "quiet_quantization_warnings",
    "count_parameters",
    "state_dict_dtypes",
    "FORMAT_HF_DIR",
    "FORMAT_TORCH_QUANTIZED",
    "FORMAT_HF_PRUNED",
    "FORMAT_TORCHAO_INT8",
    "FORMATS",
    "count_nonzero_parameters",
    "flatten_subclass_state",
    "torchao_int8_quantize",
    "read_recipe",
    "RECIPE_FILE",
    "STATE_FILE",
]

FORMAT_HF_DIR = "hf-dir"
FORMAT_TORCH_QUANTIZED = "torch-quantized"
FORMAT_HF_PRUNED = "hf-pruned"
FORMAT_TORCHAO_INT8 = "torchao-int8"
FORMATS: tuple[str, ...] = (FORMAT_HF_DIR, FORMAT_TORCH_QUANTIZED, FORMAT_HF_PRUNED, FORMAT_TORCHAO_INT8)
WEIGHTS_FILE = "model.safetensors"
TORCHAO_STATE_FILE = "model_state.safetensors"
RECIPE_FILE = "recipe.json"
STATE_FILE = "model_state.pt"
CONFIG_FILE = "config.json"

# Recipe "modules" names -> (module class, qconfig factory name); Embedding needs per-row float qparams.
_QUANTIZABLE_MODULES: Mapping[str, type[nn.Module]] = {"Linear": nn.Linear, "Embedding": nn.Embedding}


@dataclass(frozen=True)
class LoadedModel:
    """A classifier ready for inference (eval mode); ``labels`` are class names in logit index order."""

    model: Any
    tokenizer: Any
    labels: tuple[str, ...]
    format: str


@contextmanager
def quiet_quantization_warnings() -> Iterator[None]:
    """Silence torch.ao's deprecation warnings, which are known and would flood worker logs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
        yield


def apply_recipe(model: nn.Module, recipe: Mapping[str, Any]) -> nn.Module:
    """Return a copy of ``model`` with the recipe's compression applied (the input is left untouched).

    Only method "dynamic_int8" exists: dynamic qint8 quantization of the listed module types
    ("Linear", optionally "Embedding" with quint8 per-row weights). Raises EngineError("corrupt_artifact")
    for a recipe it cannot interpret.
    """
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
        quantize_dynamic,
    )

    method = recipe.get("method")
    if method != "dynamic_int8" or recipe.get("dtype") != "qint8":
        raise EngineError("corrupt_artifact", f"recipe method {method!r} / dtype {recipe.get('dtype')!r} is not supported")
    modules = recipe.get("modules")
    if (
        not isinstance(modules, list)
        or not modules
        or any(not isinstance(name, str) or name not in _QUANTIZABLE_MODULES for name in modules)
    ):
        raise EngineError("corrupt_artifact", f"recipe modules {modules!r} are not a list of {sorted(_QUANTIZABLE_MODULES)}")
    spec: dict[type[nn.Module], Any] = {}
    for name in modules:
        spec[_QUANTIZABLE_MODULES[name]] = (
            float_qparams_weight_only_qconfig if name == "Embedding" else default_dynamic_qconfig
        )
    with quiet_quantization_warnings():
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)


def _packed_tensors(value: Any) -> Iterator[torch.Tensor]:
    """Yield the tensors inside a state-dict value (quantized packed params are tuples of tensors)."""
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, nn.Parameter) and hasattr(value, "__tensor_flatten__"):
            # A tensor subclass (torchao Int8Tensor): report its stored inner tensors (int8 qdata, scales).
            inner_names, _ = value.__tensor_flatten__()
            for name in inner_names:
                yield from _packed_tensors(getattr(value, name))
            return
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _packed_tensors(item)


def state_dict_dtypes(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """Count the tensors of a state dict per dtype name ("float32", "qint8", ...), keys sorted."""
    counts: dict[str, int] = {}
    for value in state_dict.values():
        for tensor in _packed_tensors(value):
            name = str(tensor.dtype).removeprefix("torch.")
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def count_parameters(model: nn.Module) -> int:
    """Count learned weights, including the packed weights/biases of quantized modules (not buffers)."""
    total = 0
    for module in model.modules():
        total += sum(parameter.numel() for parameter in module.parameters(recurse=False))
        # Quantized modules expose weight()/bias() as methods over packed params, not as Parameters.
        weight = getattr(module, "weight", None)
        if callable(weight) and not isinstance(weight, torch.Tensor):
            total += weight().numel()
            bias = getattr(module, "bias", None)
            if callable(bias) and not isinstance(bias, torch.Tensor):
                bias_value = bias()
                if bias_value is not None:
                    total += bias_value.numel()
    return total


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor with the values of ``tensor`` (quantized or torchao subclass tensors dequantized)."""
    if tensor.is_quantized:
        return tensor.int_repr()
    if type(tensor) not in (torch.Tensor, nn.Parameter) and hasattr(tensor, "dequantize"):
        return tensor.dequantize()
    return tensor


def count_nonzero_parameters(model: nn.Module) -> int:
    """Count learned weights that are not exactly zero (same weights as ``count_parameters``).

    Quantized weights count as zero when their integer representation is zero."""
    total = 0
    with torch.no_grad():
        for module in model.modules():
            for parameter in module.parameters(recurse=False):
                total += int(torch.count_nonzero(_dense(parameter.detach())))
            weight = getattr(module, "weight", None)
            if callable(weight) and not isinstance(weight, torch.Tensor):
                total += int(torch.count_nonzero(_dense(weight())))
                bias = getattr(module, "bias", None)
                if callable(bias) and not isinstance(bias, torch.Tensor):
                    bias_value = bias()
                    if bias_value is not None:
                        total += int(torch.count_nonzero(bias_value))
    return total


def _resolve_device(device: str) -> torch.device:
    """Parse ``device`` and check it is usable here; raise EngineError("invalid_parameter") otherwise."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EngineError("invalid_parameter", f"device {device!r} is not a valid torch device") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError("invalid_parameter", f"device {device!r} requested but CUDA is not available")
    if resolved.type not in {"cpu", "cuda", "mps"}:
        raise EngineError("invalid_parameter", f"device type {resolved.type!r} is not supported")
    return resolved


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object file; raise EngineError("corrupt_artifact") when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError("corrupt_artifact", f"{what} {path.name} is not readable JSON ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise EngineError("corrupt_artifact", f"{what} {path.name} is not a JSON object")
    return data


def _load_config(model_dir: Path) -> Any:
    """Load and check the config: it must describe a sequence-classification architecture."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise EngineError("model_not_found", f"no {CONFIG_FILE} in {str(model_dir)!r}")
    raw = _read_json(config_path, "config")
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise EngineError("unsupported_architecture", f"{CONFIG_FILE} names no model_type")
    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError) as exc:
        raise EngineError("unsupported_architecture", f"model_type {model_type!r} is not known to transformers") from exc
    except (OSError, TypeError) as exc:
        raise EngineError("corrupt_artifact", f"{CONFIG_FILE} could not be loaded ({type(exc).__name__})") from exc
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise EngineError(
            "unsupported_architecture", f"model_type {model_type!r} has no sequence-classification architecture"
        )
    architectures = raw.get("architectures")
    # A bare encoder (e.g. "BertModel") would get a randomly initialised head: refuse rather than guess.
    if isinstance(architectures, list) and architectures and not any(
        isinstance(name, str) and name.endswith("ForSequenceClassification") for name in architectures
    ):
        raise EngineError(
            "unsupported_architecture",
            f"architectures {architectures!r} contain no sequence classifier (a classification head is required)",
        )
    return config


def _labels(config: Any) -> tuple[str, ...]:
    """Return class names in index order from config.id2label; raise corrupt_artifact when incomplete."""
    id2label = {int(key): str(value) for key, value in (config.id2label or {}).items()}
    count = int(config.num_labels)
    if sorted(id2label) != list(range(count)):
        raise EngineError("corrupt_artifact", f"id2label {id2label!r} does not name classes 0..{count - 1}")
    labels = tuple(id2label[index] for index in range(count))
    if len(set(labels)) != len(labels):
        raise EngineError("corrupt_artifact", f"id2label has duplicate class names {labels!r}")
    return labels


def _load_tokenizer(model_dir: Path) -> Any:
    """Load the tokenizer stored in the artifact; raise corrupt_artifact when it cannot be built."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types here; all mean an unusable tokenizer.
        raise EngineError(
            "corrupt_artifact", f"tokenizer files in {str(model_dir)!r} could not be loaded ({type(exc).__name__})"
        ) from exc


def _load_hf_dir(model_dir: Path, config: Any) -> nn.Module:
    """Load a save_pretrained directory; missing or mismatched weights count as a corrupt artifact."""
    from transformers import AutoModelForSequenceClassification

    weight_files = [
        name
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
        if (model_dir / name).is_file()
    ]
    if not weight_files:
        raise EngineError("model_not_found", f"no weights file (model.safetensors / pytorch_model.bin) in {str(model_dir)!r}")
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir),
            config=config,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=weight_files[0].startswith("model.safetensors"),
            output_loading_info=True,
        )
    except Exception as exc:  # safetensors/torch/transformers each raise their own types for bad bytes.
        raise EngineError(
            "corrupt_artifact", f"weights {weight_files[0]} in {str(model_dir)!r} are unreadable or truncated ({type(exc).__name__})"
        ) from exc
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or mismatched:
        # Missing tensors would be silently random-initialised: never serve such a model.
        names = ", ".join(str(name) for name in (missing + mismatched)[:5])
        raise EngineError("corrupt_artifact", f"weights do not match the config (missing/mismatched: {names})")
    return model


def _load_torch_quantized(model_dir: Path, config: Any) -> nn.Module:
    """Rebuild the architecture from config, re-apply recipe.json, then load model_state.pt strictly."""
    from transformers import AutoModelForSequenceClassification

    recipe = _read_json(model_dir / RECIPE_FILE, "recipe")
    if recipe.get("format") != FORMAT_TORCH_QUANTIZED:
        raise EngineError("corrupt_artifact", f"recipe format {recipe.get('format')!r} is not {FORMAT_TORCH_QUANTIZED!r}")
    state_path = model_dir / STATE_FILE
    if not state_path.is_file():
        raise EngineError("model_not_found", f"no {STATE_FILE} in {str(model_dir)!r}")
    # fork_rng: the throw-away random init must not disturb the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        skeleton = AutoModelForSequenceClassification.from_config(config)
    skeleton.eval()
    model = apply_recipe(skeleton, recipe)
    try:
        with quiet_quantization_warnings():
            state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError for damaged archives.
        raise EngineError(
            "corrupt_artifact", f"{STATE_FILE} in {str(model_dir)!r} is unreadable or truncated ({type(exc).__name__})"
        ) from exc
    if not isinstance(state, Mapping):
        raise EngineError("corrupt_artifact", f"{STATE_FILE} does not hold a state dict")
    try:
        with quiet_quantization_warnings():
            model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise EngineError(
            "corrupt_artifact", f"{STATE_FILE} does not match config.json and recipe.json ({type(exc).__name__})"
        ) from exc
    return model


def read_recipe(model_dir: Path) -> dict[str, Any] | None:
    """Return recipe.json of ``model_dir`` (None when absent); corrupt_artifact for an unknown format."""
    path = Path(model_dir) / RECIPE_FILE
    if not path.is_file():
        return None
    recipe = _read_json(path, "recipe")
    if recipe.get("format") not in FORMATS[1:]:
        raise EngineError("corrupt_artifact", f"recipe format {recipe.get('format')!r} is not one of {list(FORMATS[1:])}")
    return recipe


def _skeleton(config: Any) -> nn.Module:
    """A randomly initialised model of ``config`` (the caller's RNG is left untouched)."""
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        skeleton = AutoModelForSequenceClassification.from_config(config)
    skeleton.eval()
    return skeleton


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise EngineError("model_not_found", f"no {path.name} in {str(path.parent)!r}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad bytes.
        raise EngineError(
            "corrupt_artifact", f"{path.name} in {str(path.parent)!r} is unreadable or truncated ({type(exc).__name__})"
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
            "corrupt_artifact", f"{WEIGHTS_FILE} does not match config.json and recipe.json ({type(exc).__name__})"
        ) from exc
    dtypes = {tensor.dtype for tensor in state.values() if tensor.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    return model


def flatten_subclass_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each tensor-subclass value (torchao) replaced by its inner plain tensors
    under "<key>.<inner name>"; plain tensors are kept (contiguous clones, for safetensors)."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if type(value) in (torch.Tensor, nn.Parameter) or not hasattr(value, "__tensor_flatten__"):
            flat[key] = value.detach().contiguous().clone()
            continue
        inner_names, _ = value.__tensor_flatten__()
        for name in inner_names:
            flat[f"{key}.{name}"] = getattr(value, name).detach().contiguous().clone()
    return flat


def torchao_int8_quantize(model: nn.Module) -> nn.Module:
    """Apply torchao int8 weight-only quantization to every nn.Linear of ``model`` (in place)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except Exception as exc:  # ImportError or a torch/torchao mismatch
        raise EngineError("method_unavailable", f"torchao is not usable here ({type(exc).__name__}: {exc})") from exc
    quantize_(model, Int8WeightOnlyConfig())
    return model


def _load_torchao_int8(model_dir: Path, config: Any, recipe: Mapping[str, Any]) -> nn.Module:
    """Re-quantize a fresh skeleton with torchao, then copy the stored inner tensors into it exactly."""
    state = _load_safetensors(model_dir / TORCHAO_STATE_FILE)
    model = torchao_int8_quantize(_skeleton(config))
    expected = flatten_subclass_state(model)
    if set(expected) != set(state) or any(expected[k].shape != state[k].shape or expected[k].dtype != state[k].dtype
                                          for k in expected):
        raise EngineError("corrupt_artifact", f"{TORCHAO_STATE_FILE} does not match config.json and recipe.json")
    with torch.no_grad():
        for key, value in model.state_dict(keep_vars=True).items():
            if type(value) in (torch.Tensor, nn.Parameter) or not hasattr(value, "__tensor_flatten__"):
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
        raise EngineError("model_not_found", f"model directory {str(model_dir)!r} does not exist")
    resolved = _resolve_device(device)
    config = _load_config(model_dir)
    labels = _labels(config)
    recipe = read_recipe(model_dir)
    fmt = FORMAT_HF_DIR if recipe is None else str(recipe["format"])
    if fmt in (FORMAT_TORCH_QUANTIZED, FORMAT_TORCHAO_INT8) and resolved.type != "cpu":
        raise EngineError("invalid_parameter", f"{fmt} (int8) models run on the CPU only")
    tokenizer = _load_tokenizer(model_dir)
    if fmt == FORMAT_TORCH_QUANTIZED:
        model = _load_torch_quantized(model_dir, config)
    elif fmt == FORMAT_HF_PRUNED:
        model = _load_hf_pruned(model_dir, config, recipe or {})
    elif fmt == FORMAT_TORCHAO_INT8:
        model = _load_torchao_int8(model_dir, config, recipe or {})
    else:
        model = _load_hf_dir(model_dir, config)
    model.to(resolved)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, labels=labels, format=fmt)
