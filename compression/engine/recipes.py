"""Quantization recipes: applying recipe.json's dynamic int8 (torch.ao) and torchao int8 weight-only, and
flattening torchao's tensor subclasses into plain tensors for safetensors."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from compression.engine.errors import EngineError, EngineErrorCode

__all__ = [
    "apply_recipe",
    "quiet_quantization_warnings",
    "flatten_subclass_state",
    "torchao_int8_quantize",
    "torchao_quantize",
    "keep_float_modules",
    "TORCHAO_CONFIGS",
]

# Recipe "modules" names -> (module class, qconfig factory name); Embedding needs per-row float qparams.
_QUANTIZABLE_MODULES: Mapping[str, type[nn.Module]] = {"Linear": nn.Linear, "Embedding": nn.Embedding}


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
    ("Linear", optionally "Embedding" with quint8 per-row weights), except the modules named in the
    optional "keep_float" list (qualified names, e.g. a chat model's "lm_head"), which stay in floating
    point. Raises EngineError("corrupt_artifact") for a recipe it cannot interpret.
    """
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
        quantize_dynamic,
    )

    method = recipe.get("method")
    if method != "dynamic_int8" or recipe.get("dtype") != "qint8":
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"recipe method {method!r} / dtype {recipe.get('dtype')!r} is not supported",
        )
    modules = recipe.get("modules")
    if (
        not isinstance(modules, list)
        or not modules
        or any(not isinstance(name, str) or name not in _QUANTIZABLE_MODULES for name in modules)
    ):
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"recipe modules {modules!r} are not a list of {sorted(_QUANTIZABLE_MODULES)}",
        )
    spec: dict[type[nn.Module], Any] = {}
    for name in modules:
        spec[_QUANTIZABLE_MODULES[name]] = (
            float_qparams_weight_only_qconfig if name == "Embedding" else default_dynamic_qconfig
        )
    qconfig_spec: dict[Any, Any] = dict(spec)
    for name in keep_float_modules(recipe):
        qconfig_spec[name] = None  # a module name outranks its type in torch.ao's qconfig propagation
    with quiet_quantization_warnings():
        return quantize_dynamic(model, qconfig_spec, dtype=torch.qint8, inplace=False)


def keep_float_modules(recipe: Mapping[str, Any]) -> tuple[str, ...]:
    """The recipe's "keep_float" module names (absent: none); corrupt_artifact when it is not a list of names."""
    names = recipe.get("keep_float", [])
    if not isinstance(names, list) or any(not isinstance(name, str) or not name for name in names):
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"recipe keep_float {names!r} is not a list of module names"
        )
    return tuple(names)


def flatten_subclass_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each tensor-subclass value (torchao) replaced by its inner plain tensors
    under "<key>.<inner name>"; plain tensors are kept (contiguous clones, for safetensors). A plain tensor
    that is the same memory as an earlier key (tied weights: a chat model's lm_head and its embeddings) is
    stored once, under the earlier key; the model ties them again when it is rebuilt from its config."""
    flat: dict[str, torch.Tensor] = {}
    seen: set[tuple[Any, ...]] = set()
    for key, value in model.state_dict().items():
        if type(value) in (torch.Tensor, nn.Parameter) or not hasattr(value, "__tensor_flatten__"):
            alias = (value.data_ptr(), tuple(value.shape), tuple(value.stride()), value.dtype)
            if value.numel() and alias in seen:
                continue
            seen.add(alias)
            flat[key] = value.detach().contiguous().clone()
            continue
        inner_names, _ = value.__tensor_flatten__()
        for name in inner_names:
            flat[f"{key}.{name}"] = getattr(value, name).detach().contiguous().clone()
    return flat


def torchao_int8_quantize(model: nn.Module, keep_float: tuple[str, ...] = ()) -> nn.Module:
    """Apply torchao int8 weight-only quantization to every nn.Linear of ``model`` (in place), except the
    modules named in ``keep_float``."""
    return torchao_quantize(model, {"config": "Int8WeightOnlyConfig", "keep_float": list(keep_float)})


# recipe "config" -> what it means. IntxWeightOnlyConfig is torchao's int4 weight-only path that runs on the
# CPU: int4 values (-8..7) with one scale per group of ``group_size`` input weights, stored unpacked in int8
# containers. Int4WeightOnlyConfig's packed formats need CUDA or the mslk kernels on torchao 0.18.
TORCHAO_CONFIGS: tuple[str, ...] = ("Int8WeightOnlyConfig", "IntxWeightOnlyConfig")


def torchao_quantize(model: nn.Module, recipe: Mapping[str, Any]) -> nn.Module:
    """Apply the recipe's torchao weight-only quantization to every nn.Linear of ``model`` (in place) except
    the "keep_float" modules. "config": "Int8WeightOnlyConfig" (int8 per channel) or "IntxWeightOnlyConfig"
    with "weight_dtype": "int4" and "group_size". EngineError "method_unavailable" when torchao is not usable,
    "corrupt_artifact" for a recipe it cannot interpret."""
    name = recipe.get("config")
    if name not in TORCHAO_CONFIGS:
        raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"recipe torchao config {name!r} is not supported")
    keep = set(keep_float_modules(recipe))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
            from torchao.quantization.granularity import PerGroup
    except Exception as exc:  # ImportError or a torch/torchao mismatch
        raise EngineError(
            EngineErrorCode.METHOD_UNAVAILABLE, f"torchao is not usable here ({type(exc).__name__}: {exc})"
        ) from exc
    config: Any
    if name == "Int8WeightOnlyConfig":
        config = Int8WeightOnlyConfig()
    else:
        group_size = recipe.get("group_size")
        if recipe.get("weight_dtype") != "int4" or type(group_size) is not int or group_size < 1:
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT,
                f"recipe weight_dtype {recipe.get('weight_dtype')!r} / group_size {group_size!r} are not int4 groups",
            )
        config = IntxWeightOnlyConfig(
            weight_dtype=torch.int4,  # type: ignore[attr-defined]  # torch's stubs lack int4
            granularity=PerGroup(group_size),
        )

    def chosen(module: nn.Module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and fqn not in keep

    quantize_(model, config, filter_fn=chosen)
    return model
