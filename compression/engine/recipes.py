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

__all__ = ["apply_recipe", "quiet_quantization_warnings", "flatten_subclass_state", "torchao_int8_quantize"]

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
    with quiet_quantization_warnings():
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)


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
        raise EngineError(
            EngineErrorCode.METHOD_UNAVAILABLE, f"torchao is not usable here ({type(exc).__name__}: {exc})"
        ) from exc
    quantize_(model, Int8WeightOnlyConfig())
    return model
