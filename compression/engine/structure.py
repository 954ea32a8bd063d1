"""Physical removal of attention heads and feed-forward neurons from BERT-family encoders.

transformers 5 has no ``prune_heads``: a head is removed by slicing the query/key/value output rows
and the attention output dense's input columns, then updating the self-attention's
``num_attention_heads`` / ``all_head_size`` (its forward reshapes with -1 heads). A neuron is removed
by slicing ``intermediate.dense`` rows and ``output.dense`` columns. Per-layer counts do not fit a
standard config, so the kept indices are saved in recipe.json and re-applied by the loader.

Supported: every model whose ``base_model.encoder.layer[i]`` has ``attention.self.{query,key,value}``,
``attention.output.dense``, ``intermediate.dense`` and ``output.dense`` (BERT, RoBERTa, XLM-R, ELECTRA,
CamemBERT, ...). Others raise EngineError("unsupported_architecture").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compression.engine.errors import EngineError, EngineErrorCode

__all__ = ["LayerParts", "encoder_layers", "prune_layer", "apply_structure", "head_size"]


@dataclass(frozen=True)
class LayerParts:
    """The modules of one encoder layer that structured pruning touches."""

    # The self-attention nn.Module (has query/key/value); Any because prune_layer also rewrites its
    # plain-int head counts, which nn.Module's __setattr__ stub does not allow.
    attention: Any
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear
    intermediate: nn.Linear
    output: nn.Linear


def encoder_layers(model: nn.Module) -> list[LayerParts]:
    """Return the prunable parts of every encoder layer; raise unsupported_architecture otherwise."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, (nn.ModuleList, Sequence)) or len(layers) == 0:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"{type(model).__name__} has no BERT-style encoder.layer list to prune",
        )
    parts: list[LayerParts] = []
    for index, layer in enumerate(layers):
        try:
            attention = layer.attention.self
            item = LayerParts(
                attention=attention,
                query=attention.query,
                key=attention.key,
                value=attention.value,
                attention_output=layer.attention.output.dense,
                intermediate=layer.intermediate.dense,
                output=layer.output.dense,
            )
        except AttributeError as exc:
            raise EngineError(
                EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
                f"encoder layer {index} of {type(model).__name__} is not BERT-shaped ({exc})",
            ) from exc
        for name in ("query", "key", "value", "attention_output", "intermediate", "output"):
            if not isinstance(getattr(item, name), nn.Linear):
                raise EngineError(
                    EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"encoder layer {index} {name} is not an nn.Linear"
                )
        parts.append(item)
    return parts


def head_size(parts: LayerParts) -> int:
    """The per-head dimension of a layer's self-attention."""
    size = getattr(parts.attention, "attention_head_size", None)
    if not isinstance(size, int) or size < 1:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE, "self-attention module has no integer attention_head_size"
        )
    return size


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping ``index`` along ``dim`` of the weight (0: outputs, 1: inputs)."""
    index = index.to(linear.weight.device)
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = None
    if linear.bias is not None:
        bias = linear.bias.detach().clone() if dim == 1 else linear.bias.detach().index_select(0, index).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    new.weight.requires_grad_(linear.weight.requires_grad)
    return new


def prune_layer(parts: LayerParts, layer: Any, keep_heads: Sequence[int], keep_neurons: Sequence[int]) -> None:
    """Keep only heads ``keep_heads`` (indices into the layer's current heads) and FFN neurons
    ``keep_neurons`` of ``layer`` (in place). At least one head and one neuron must remain.
    ``layer`` is the BERT-style encoder layer nn.Module (typed Any: its submodules are dynamic attributes)."""
    size = head_size(parts)
    current_heads = parts.query.out_features // size
    current_neurons = parts.intermediate.out_features
    heads = sorted(set(int(h) for h in keep_heads))
    neurons = sorted(set(int(n) for n in keep_neurons))
    if not heads or heads[0] < 0 or heads[-1] >= current_heads or len(heads) != len(keep_heads):
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"kept heads {list(keep_heads)} are not distinct indices in [0, {current_heads})",
        )
    if not neurons or neurons[0] < 0 or neurons[-1] >= current_neurons or len(neurons) != len(keep_neurons):
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"kept neurons are not distinct indices in [0, {current_neurons})"
        )
    if len(heads) < current_heads:
        rows = torch.tensor([h * size + i for h in heads for i in range(size)], dtype=torch.long)
        attention = parts.attention
        attention.query = _slice_linear(parts.query, rows, 0)
        attention.key = _slice_linear(parts.key, rows, 0)
        attention.value = _slice_linear(parts.value, rows, 0)
        layer.attention.output.dense = _slice_linear(parts.attention_output, rows, 1)
        attention.num_attention_heads = len(heads)
        attention.all_head_size = len(heads) * size
    if len(neurons) < current_neurons:
        index = torch.tensor(neurons, dtype=torch.long)
        layer.intermediate.dense = _slice_linear(parts.intermediate, index, 0)
        layer.output.dense = _slice_linear(parts.output, index, 1)


def apply_structure(model: nn.Module, layers_recipe: Any) -> nn.Module:
    """Re-apply a recipe's per-layer kept heads/neurons ({"heads": [...], "neurons": [...]} per layer)
    to a freshly built full-size ``model`` (in place; returned). Raises corrupt_artifact on a bad recipe."""
    parts = encoder_layers(model)
    base: Any = getattr(model, "base_model", model)  # dynamic HF submodules
    if not isinstance(layers_recipe, list) or len(layers_recipe) != len(parts):
        raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"recipe 'layers' must list {len(parts)} encoder layers")
    for index, (item, entry) in enumerate(zip(parts, layers_recipe, strict=True)):
        if (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get("heads"), list)
            or not isinstance(entry.get("neurons"), list)
            or any(type(v) is not int for v in entry["heads"] + entry["neurons"])
        ):
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT, f"recipe layer {index} lacks integer 'heads' / 'neurons' lists"
            )
        prune_layer(item, base.encoder.layer[index], entry["heads"], entry["neurons"])
    return model
