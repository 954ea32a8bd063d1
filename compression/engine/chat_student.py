"""A chat student cut from its teacher: decoder layers kept evenly spaced, optionally a narrower feed-forward.

The student is a deep copy of the teacher (so tied embeddings stay tied and the generation config is kept)
with ``layers_kept`` decoder layers, first and last included, evenly spaced in between. The config says how
many layers remain (``num_hidden_layers``, and ``layer_types`` sliced to the kept layers where the model has
one) and every kept attention module is renumbered (``layer_idx``) so the key/value cache indexes it by its
new position. A narrower ``intermediate_size`` keeps, in each kept layer, the feed-forward neurons with the
largest |gate row| * |up row| * |down column| norms, in their original order. No randomness: the same
teacher and sizes give the same weights.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from compression.engine.errors import EngineError, EngineErrorCode

__all__ = ["build_chat_student", "kept_layer_indices", "decoder_layers"]


def kept_layer_indices(total: int, kept: int) -> list[int]:
    """``kept`` layer indices out of ``total``, evenly spaced with the first and the last included (only the
    first when ``kept`` is 1)."""
    if not 1 <= kept <= total:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"parameter 'layers_kept' = {kept}: the teacher has {total} decoder layers (keep 1 to {total})",
        )
    if kept == 1:
        return [0]
    step = (total - 1) / (kept - 1)
    return [math.floor(i * step + 0.5) for i in range(kept)]


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder layers (``model.model.layers`` for Llama, Qwen, Gemma, SmolLM...)."""
    inner = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"{type(model).__name__} has no list of decoder layers (model.layers) to cut a student from",
        )
    return layers


def _renumber(layer: torch.nn.Module, index: int) -> None:
    for module in layer.modules():
        if isinstance(getattr(module, "layer_idx", None), int):
            setattr(module, "layer_idx", index)  # noqa: B010 - an attribute torch's Module types as Tensor | Module


def _sliced_linear(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    weight = linear.weight.detach().index_select(dim, index).clone()
    out_features, in_features = weight.shape
    bias = linear.bias is not None
    sliced = torch.nn.Linear(in_features, out_features, bias=bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        sliced.weight.copy_(weight)
        if linear.bias is not None:
            sliced.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach().index_select(0, index))
    return sliced


def _narrow_mlp(mlp: Any, width: int) -> None:
    """Keep the ``width`` neurons of a gated MLP (gate_proj, up_proj, down_proj) with the largest norms."""
    parts = [getattr(mlp, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    if not all(isinstance(part, torch.nn.Linear) for part in parts):
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"{type(mlp).__name__} is not a gated MLP (gate_proj, up_proj, down_proj): cannot narrow it",
        )
    gate, up, down = parts
    assert isinstance(gate, torch.nn.Linear) and isinstance(up, torch.nn.Linear) and isinstance(down, torch.nn.Linear)
    score = gate.weight.detach().norm(dim=1) * up.weight.detach().norm(dim=1) * down.weight.detach().norm(dim=0)
    keep = torch.sort(torch.topk(score.double(), width).indices).values
    mlp.gate_proj = _sliced_linear(gate, keep, 0)
    mlp.up_proj = _sliced_linear(up, keep, 0)
    mlp.down_proj = _sliced_linear(down, keep, 1)
    if isinstance(getattr(mlp, "intermediate_size", None), int):
        setattr(mlp, "intermediate_size", width)  # noqa: B010 - see _renumber


def build_chat_student(
    teacher: Any, layers_kept: int | None, intermediate_size: int | None
) -> tuple[Any, dict[str, Any]]:
    """(student, shape) cut from ``teacher`` (a transformers causal LM, left unchanged).

    ``layers_kept`` None: half the teacher's layers, rounded up. ``intermediate_size`` None: the teacher's.
    ``shape``: {"layers_kept", "kept_layer_indices", "intermediate_size", "parameters"}. EngineError
    "invalid_parameter" for sizes larger than the teacher's, "unsupported_architecture" for a model without
    decoder layers or (when narrowing) a gated MLP."""
    config: Any = teacher.config
    total = int(config.num_hidden_layers)
    kept_count = math.ceil(total / 2) if layers_kept is None else int(layers_kept)
    indices = kept_layer_indices(total, kept_count)
    width = int(config.intermediate_size)
    narrow = intermediate_size is not None and int(intermediate_size) != width
    if intermediate_size is not None and not 1 <= int(intermediate_size) <= width:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"parameter 'intermediate_size' = {intermediate_size}: the teacher's feed-forward width is {width}",
        )
    student = copy.deepcopy(teacher)
    layers = decoder_layers(student)
    kept = torch.nn.ModuleList([layers[i] for i in indices])
    for position, layer in enumerate(kept):
        _renumber(layer, position)
        if narrow:
            assert intermediate_size is not None
            _narrow_mlp(layer.mlp, int(intermediate_size))
    inner = student.get_decoder() if hasattr(student, "get_decoder") else student.model
    inner.layers = kept
    student_config: Any = student.config
    layer_types = getattr(student_config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == total:
        student_config.layer_types = [layer_types[i] for i in indices]
    student_config.num_hidden_layers = kept_count
    if narrow:
        student_config.intermediate_size = int(intermediate_size)  # type: ignore[arg-type]
    student.eval()
    shape = {
        "layers_kept": kept_count,
        "kept_layer_indices": indices,
        "intermediate_size": int(student_config.intermediate_size),
        "parameters": sum(p.numel() for p in student.parameters()),
    }
    return student, shape
