"""Counting a model's learned weights (packed quantized and torchao weights included) and its tensors' dtypes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["count_parameters", "count_nonzero_parameters", "state_dict_dtypes"]


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
    total, seen = 0, set()  # a tied weight (lm_head = embeddings) is one set of weights: counted once
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel()
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
    total, seen = 0, set()
    with torch.no_grad():
        for module in model.modules():
            for parameter in module.parameters(recurse=False):
                if id(parameter) not in seen:
                    seen.add(id(parameter))
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
