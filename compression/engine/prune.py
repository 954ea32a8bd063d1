"""Pruning: unstructured magnitude pruning and structured (heads + feed-forward neurons) pruning.

``magnitude_prune`` zeroes the smallest-magnitude weights of the encoder's nn.Linear layers (biases,
embeddings, pooler and classifier untouched) and saves a normal hf-dir: the file is no smaller and
dense kernels are no faster, the zeros are only a starting point for sparse kernels. On a chat model
(causal LM) the targets are the decoder layers' nn.Linear layers (embeddings, norms and lm_head untouched)
and recipe.json records that ("model_kind", "lm_head").

``semi_structured_24`` (chat models) zeroes, in every group of 4 consecutive input weights of each target
nn.Linear, the 2 of smallest magnitude (ties: the earlier one), the 2:4 pattern sparse GPU kernels accept;
stored densely as an hf-dir whose recipe.json records the pattern.

``structured_prune`` physically removes attention heads and feed-forward neurons. Importance is
gradient-based (first-order Taylor, Michel et al. 2019): the score of a unit (head h / neuron j) is
sum over calibration batches of |sum(dL/dW * W)| over the columns of the layer's output projection
that read that unit (attention output dense columns of head h, output dense column j), which equals
|dL/d mask_unit| for a multiplicative mask on the unit, with L the cross-entropy on the calibration
labels. With scope "global", scores are divided by their layer's L2 norm and ranked across layers;
"layer" removes the same share in every layer. Each layer keeps at least one head and one neuron.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compression.engine.chat import chat_recipe, copy_chat_files, is_chat
from compression.engine.common import (
    MethodContext,
    MethodOutput,
    batches,
    copy_config,
    copy_tokenizer_files,
    encode,
    predict_probs,
    save_hf_dir,
    seeded,
)
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.formats import FORMAT_HF_DIR, FORMAT_HF_PRUNED, RECIPE_FILE, WEIGHTS_FILE
from compression.engine.parameters import count_parameters
from compression.engine.structure import encoder_layers, head_size, prune_layer
from compression.engine.training import KDConfig, train_kd
from trust.canonical import canonical_bytes

__all__ = [
    "run_magnitude_prune",
    "run_structured_prune",
    "run_semi_structured_24",
    "semi_structured_mask",
    "magnitude_targets",
    "unit_importance",
    "select_units",
    "IMPORTANCE",
]

IMPORTANCE = "gradient_taylor"


def magnitude_targets(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The encoder's (a decoder's: its layers') nn.Linear layers (qualified names), in module order."""
    base = getattr(model, "base_model", model)
    for name in ("encoder", "transformer", "layers"):
        encoder = getattr(base, name, None)
        if isinstance(encoder, nn.Module):
            targets = [
                (f"{name}.{child}", module)
                for child, module in encoder.named_modules()
                if isinstance(module, nn.Linear)
            ]
            if targets:
                return targets
    raise EngineError(
        EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"{type(model).__name__} has no encoder with nn.Linear layers"
    )


def _zero_smallest(values: torch.Tensor, count: int) -> torch.Tensor:
    """A boolean mask (flat) of the ``count`` smallest |values|; ties broken by position (stable sort)."""
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    if count > 0:
        order = torch.sort(values.detach().abs().flatten().float().cpu(), stable=True).indices
        mask[order[:count]] = True
    return mask


def run_magnitude_prune(ctx: MethodContext) -> MethodOutput:
    sparsity = float(ctx.parameters["sparsity"])
    scope = ctx.parameters["scope"]
    model = ctx.loaded.model
    targets = magnitude_targets(model)
    ctx.report("pruning", 0.5)
    with torch.no_grad():
        if scope == "global":
            flat = torch.cat([module.weight.detach().flatten() for _, module in targets])
            mask = _zero_smallest(flat, round(sparsity * flat.numel()))
            offset = 0
            for _, module in targets:
                size = module.weight.numel()
                module.weight[mask[offset : offset + size].view_as(module.weight)] = 0.0
                offset += size
        else:
            for _, module in targets:
                size = module.weight.numel()
                mask = _zero_smallest(module.weight, round(sparsity * size))
                module.weight[mask.view_as(module.weight)] = 0.0
    per_layer = {
        name: round(1.0 - int(torch.count_nonzero(module.weight)) / module.weight.numel(), 6)
        for name, module in targets
    }
    total = sum(module.weight.numel() for _, module in targets)
    zeros = sum(module.weight.numel() - int(torch.count_nonzero(module.weight)) for _, module in targets)
    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    save_hf_dir(model, ctx.source_dir, ctx.output_dir)
    if is_chat(ctx.loaded):
        recipe = {"method": "magnitude_prune", "format": FORMAT_HF_DIR, "sparsity": sparsity, "scope": scope}
        _write_chat_extras(ctx, chat_recipe({**recipe, "targets": [name for name, _ in targets]}, lm_head="unpruned"))
    return MethodOutput(
        FORMAT_HF_DIR,
        {
            "target_sparsity": sparsity,
            "scope": scope,
            "pruned_weight_count": total,
            "pruned_weight_zeros": zeros,
            "pruned_weight_sparsity": zeros / total,
            "per_layer_sparsity": per_layer,
            "note": "zeros are stored densely: no size or speed gain without sparse kernels",
        },
    )


def _write_chat_extras(ctx: MethodContext, recipe: dict[str, Any]) -> None:
    copy_chat_files(ctx.source_dir, ctx.output_dir)
    (ctx.output_dir / RECIPE_FILE).write_bytes(canonical_bytes(recipe))


def semi_structured_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Boolean mask (weight's shape) of the ``n`` smallest |w| in every group of ``m`` consecutive input
    weights (the last dimension), ties broken by position. The input size must be a multiple of ``m``."""
    groups = weight.detach().abs().float().reshape(-1, m)
    order = torch.sort(groups, dim=1, stable=True).indices[:, :n]
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask.reshape(weight.shape)


def run_semi_structured_24(ctx: MethodContext) -> MethodOutput:
    """2:4 sparsity of the decoder layers' nn.Linear weights; a dense hf-dir with the pattern in recipe.json."""
    model = ctx.loaded.model
    targets = magnitude_targets(model)
    odd = [f"{name} ({module.in_features})" for name, module in targets if module.in_features % 4]
    if odd:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"2:4 sparsity needs input sizes that are multiples of 4; not: {', '.join(odd[:5])}",
        )
    ctx.report("pruning", 0.5)
    with torch.no_grad():
        for _, module in targets:
            module.weight[semi_structured_mask(module.weight)] = 0.0
    total = sum(module.weight.numel() for _, module in targets)
    zeros = sum(module.weight.numel() - int(torch.count_nonzero(module.weight)) for _, module in targets)
    pattern = {
        "n": 2,
        "m": 4,
        "axis": "input",
        "rule": "in every group of 4 consecutive input weights of each target Linear, the 2 of smallest "
        "magnitude are zero (ties: the earlier one)",
    }
    recipe = chat_recipe(
        {
            "method": "semi_structured_24",
            "format": FORMAT_HF_DIR,
            "pattern": pattern,
            "storage": "dense (zeros stored); sparse 2:4 kernels need a GPU",
            "targets": [name for name, _ in targets],
        },
        lm_head="unpruned",
    )
    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    save_hf_dir(model, ctx.source_dir, ctx.output_dir)
    _write_chat_extras(ctx, recipe)
    return MethodOutput(
        FORMAT_HF_DIR,
        {
            "pattern": "2:4",
            "pruned_weight_count": total,
            "pruned_weight_zeros": zeros,
            "pruned_weight_sparsity": zeros / total,
            "targets": len(targets),
            "note": "zeros are stored densely: no size or speed gain on the CPU",
        },
    )


def _calibration_tensors(
    ctx: MethodContext, rows: tuple[tuple[str, int], ...]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    encoded = encode(ctx.loaded.tokenizer, [text for text, _ in rows], ctx.parameters["max_length"])
    labels = torch.tensor([label for _, label in rows], dtype=torch.long)
    return encoded, labels


def unit_importance(
    model: nn.Module,
    encoded: dict[str, torch.Tensor],
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer (head scores, neuron scores), gradient-based (see the module docstring); CPU float64."""
    parts = encoder_layers(model)
    head_scores = [torch.zeros(p.query.out_features // head_size(p), dtype=torch.float64) for p in parts]
    neuron_scores = [torch.zeros(p.intermediate.out_features, dtype=torch.float64) for p in parts]
    watched = [p.attention_output.weight for p in parts] + [p.output.weight for p in parts]
    previous = {id(param): param.requires_grad for param in model.parameters()}
    model.eval()  # no dropout: scores must not depend on the RNG
    try:
        for param in model.parameters():
            param.requires_grad_(False)
        for weight in watched:
            weight.requires_grad_(True)
        count = labels.shape[0]
        for start in range(0, count, batch_size):
            index = torch.arange(start, min(count, start + batch_size))
            logits = model(**batches(encoded, index, device)).logits.float()
            loss = F.cross_entropy(logits, labels[index].to(device), reduction="sum")
            grads = torch.autograd.grad(loss, watched)
            with torch.no_grad():
                _accumulate(parts, grads, head_scores, neuron_scores)
    finally:
        for param in model.parameters():
            param.requires_grad_(previous[id(param)])
    return head_scores, neuron_scores


def _accumulate(
    parts: list[Any],
    grads: tuple[torch.Tensor, ...],
    head_scores: list[torch.Tensor],
    neuron_scores: list[torch.Tensor],
) -> None:
    """Add one batch's |sum(g * w)| per head / neuron (see unit_importance)."""
    for layer, part in enumerate(parts):
        size = head_size(part)
        attention = (grads[layer] * part.attention_output.weight).sum(dim=0).double().cpu()
        head_scores[layer] += attention.view(-1, size).sum(dim=1).abs()
        ffn = (grads[len(parts) + layer] * part.output.weight).sum(dim=0).double().cpu()
        neuron_scores[layer] += ffn.abs()


def select_units(scores: list[torch.Tensor], fraction: float, scope: str) -> list[list[int]]:
    """Indices kept per layer after removing ``fraction`` of all units (lowest scores first, at least one
    kept per layer). "global": scores divided by their layer's L2 norm, ranked across layers; ties by
    (layer, index). "layer": round(fraction * n) removed in each layer."""
    sizes = [len(layer) for layer in scores]
    removed: list[set[int]] = [set() for _ in scores]
    if scope == "layer":
        for layer, values in enumerate(scores):
            count = min(sizes[layer] - 1, round(fraction * sizes[layer]))
            order = torch.sort(values, stable=True).indices.tolist()
            removed[layer] = set(order[:count])
    else:
        target = round(fraction * sum(sizes))
        ranked: list[tuple[float, int, int]] = []
        for layer, values in enumerate(scores):
            norm = float(values.norm()) or 1.0
            ranked.extend((float(value) / norm, layer, index) for index, value in enumerate(values.tolist()))
        ranked.sort()
        done = 0
        for _, layer, index in ranked:
            if done >= target:
                break
            if sizes[layer] - len(removed[layer]) <= 1:
                continue
            removed[layer].add(index)
            done += 1
    return [[index for index in range(size) if index not in removed[layer]] for layer, size in enumerate(sizes)]


def structured_prune_recipe(keep_heads: list[list[int]], keep_neurons: list[list[int]]) -> dict[str, Any]:
    """Return the recipe.json content of a structured prune: the heads and neurons kept in each layer."""
    return {
        "format": FORMAT_HF_PRUNED,
        "method": "structured_prune",
        "importance": IMPORTANCE,
        "layers": [
            {"heads": heads, "neurons": neurons} for heads, neurons in zip(keep_heads, keep_neurons, strict=True)
        ],
    }


def run_structured_prune(ctx: MethodContext) -> MethodOutput:
    params = ctx.parameters
    data = ctx.request.data
    model = ctx.loaded.model
    parts = encoder_layers(model)
    base = getattr(model, "base_model", model)
    before = count_parameters(model)
    heads_before = [p.query.out_features // head_size(p) for p in parts]
    neurons_before = [p.intermediate.out_features for p in parts]

    ctx.report("scoring", 0.2)
    encoded, labels = _calibration_tensors(ctx, data.calibration)
    teacher_probs = None
    recovery_rows: tuple[tuple[str, int], ...] = ()
    if params["recovery_epochs"] > 0:
        recovery_rows = data.train
        if params["recovery_max_examples"] and len(recovery_rows) > params["recovery_max_examples"]:
            recovery_rows = tuple(
                random.Random(ctx.request.seed).sample(recovery_rows, params["recovery_max_examples"])
            )
    model.to(ctx.device)
    with seeded(ctx.request.seed):
        head_scores, neuron_scores = unit_importance(model, encoded, labels, params["batch_size"], ctx.device)
        keep_heads = select_units(head_scores, params["head_fraction"], params["scope"])
        keep_neurons = select_units(neuron_scores, params["ffn_fraction"], params["scope"])
        recovery: dict[str, Any] = {}
        if recovery_rows:
            # Soft labels of the unpruned model, computed before it is cut.
            train_encoded, train_labels = _calibration_tensors(ctx, recovery_rows)
            temperature = 2.0
            teacher_probs = predict_probs(model, train_encoded, ctx.device, temperature=temperature)
        ctx.report("pruning", 0.4)
        for index, part in enumerate(parts):
            prune_layer(part, base.encoder.layer[index], keep_heads[index], keep_neurons[index])
        if teacher_probs is not None:
            ctx.report("recovery", 0.5)
            config = KDConfig(
                temperature=temperature,
                alpha=0.5,
                epochs=params["recovery_epochs"],
                batch_size=params["batch_size"],
                lr=params["recovery_lr"],
            )
            generator = torch.Generator().manual_seed(ctx.request.seed)
            history = train_kd(
                model,
                train_encoded,
                train_labels,
                teacher_probs,
                None,
                config,
                device=ctx.device,
                generator=generator,
                on_epoch=lambda epoch, loss: ctx.report("recovery", 0.5 + 0.3 * (epoch + 1) / config.epochs),
            )
            recovery = {**history, "examples": len(recovery_rows)}
    model.to("cpu").eval()
    after = count_parameters(model)
    recipe = structured_prune_recipe(keep_heads, keep_neurons)
    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    from safetensors.torch import save_file

    copy_config(ctx.source_dir, ctx.output_dir)
    copy_tokenizer_files(ctx.source_dir, ctx.output_dir)
    (ctx.output_dir / RECIPE_FILE).write_bytes(canonical_bytes(recipe))
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(ctx.output_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    return MethodOutput(
        FORMAT_HF_PRUNED,
        {
            "importance": IMPORTANCE,
            "calibration_examples": len(data.calibration),
            "heads_before": heads_before,
            "heads_kept_per_layer": [len(h) for h in keep_heads],
            "heads_total_before": sum(heads_before),
            "heads_total_after": sum(len(h) for h in keep_heads),
            "neurons_before": neurons_before,
            "neurons_kept_per_layer": [len(n) for n in keep_neurons],
            "neurons_total_before": sum(neurons_before),
            "neurons_total_after": sum(len(n) for n in keep_neurons),
            "parameter_count_before": before,
            "parameter_count_after": after,
            "parameter_reduction": round(1 - after / before, 6),
            "head_scores": [[round(float(v), 8) for v in layer] for layer in head_scores],
            "recovery": recovery,
        },
    )
