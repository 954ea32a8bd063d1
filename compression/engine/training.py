"""The knowledge-distillation training loop shared by ``distill`` and structured-pruning recovery."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from compression.engine.common import batches


class Passthrough(torch.nn.Module):
    """Stands in for an encoder's embeddings: returns the cached hidden states given as ``inputs_embeds``."""

    def forward(self, inputs_embeds: Any = None, **_: Any) -> Any:
        return inputs_embeds


@contextmanager
def only_layers(model: Any, layers: list[Any], passthrough: bool) -> Iterator[None]:
    """Run a BERT-family classifier's encoder with only ``layers`` (and, with ``passthrough``, its embeddings
    replaced by a Passthrough): how the reference teacher and the refusal judge cache the output of their frozen
    lower layers once and train the top ones on it."""
    base = model.base_model
    saved_layers, saved_embeddings = base.encoder.layer, base.embeddings
    base.encoder.layer = torch.nn.ModuleList(layers)
    if passthrough:
        base.embeddings = Passthrough()
    try:
        yield
    finally:
        base.encoder.layer = saved_layers
        base.embeddings = saved_embeddings


__all__ = ["KDConfig", "Passthrough", "train_kd", "train_top_on_cached", "length_bucketed_batches", "only_layers"]


def train_top_on_cached(
    model: Any,
    top: list[Any],
    cached: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    learning_rate: float,
    examples: int,
    generator: torch.Generator,
    on_step: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Train a classifier's ``top`` layers (and whatever else requires grad) on ``cached`` batches of (hidden states
    of the frozen lower layers, attention mask, labels): AdamW (weight decay 0.01), linear warm-up over the first
    tenth of the steps then linear decay, gradients clipped at 1.0, batches reshuffled every epoch with
    ``generator``. ``on_step(step, total)`` after each step; returns each epoch's mean loss over ``examples``.
    The model is left in eval mode with every parameter requiring grad again."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01, foreach=False)
    total = len(cached) * epochs
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    model.train()
    epoch_losses: list[float] = []
    step = 0
    with only_layers(model, top, passthrough=True):
        for _epoch in range(epochs):
            running = 0.0
            for position in torch.randperm(len(cached), generator=generator).tolist():
                hidden, mask, target = cached[position]
                logits = model(inputs_embeds=hidden, attention_mask=mask).logits
                loss = F.cross_entropy(logits, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0, foreach=False)
                optimizer.step()
                scheduler.step()
                running += float(loss.detach()) * len(target)
                step += 1
                if on_step is not None:
                    on_step(step, total)
            epoch_losses.append(round(running / examples, 6))
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return epoch_losses


@dataclass(frozen=True)
class KDConfig:
    """Loss per example: with a soft label (kd_mask True): alpha * T^2 * KL(teacher_T || student_T) +
    (1 - alpha) * CE(student, hard label); without one (rejected soft label): CE(student, hard label)."""

    temperature: float
    alpha: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    warmup_fraction: float = 0.1


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffle, sort by length inside pools of 16 batches, then shuffle the batches (less padding)."""
    order = torch.randperm(len(lengths), generator=generator)
    pool = batch_size * 16
    out: list[torch.Tensor] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [out[i] for i in torch.randperm(len(out), generator=generator).tolist()]


def train_kd(
    model: torch.nn.Module,
    encoded: dict[str, torch.Tensor],
    labels: torch.Tensor,
    soft_targets: torch.Tensor | None,
    kd_mask: torch.Tensor | None,
    config: KDConfig,
    *,
    device: torch.device,
    generator: torch.Generator,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` in place; return {"epoch_loss": per-epoch mean loss, "step_loss": a sampled per-step
    curve (at most ~100 points)}. ``soft_targets`` are teacher probabilities at temperature T (rows
    where ``kd_mask`` is False are ignored); None trains on hard labels only."""
    count = int(labels.shape[0])
    lengths = encoded["attention_mask"].sum(dim=1)
    steps_per_epoch = math.ceil(count / config.batch_size)
    total_steps = max(1, steps_per_epoch * config.epochs)
    warmup = max(1, int(total_steps * config.warmup_fraction))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, foreach=False)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))),
    )
    every = max(1, total_steps // 100)
    epoch_losses: list[float] = []
    step_losses: list[float] = []
    temperature = config.temperature
    model.train()
    step = 0
    for epoch in range(config.epochs):
        running, seen = 0.0, 0
        for index in length_bucketed_batches(lengths, config.batch_size, generator):
            inputs = batches(encoded, index, device)
            logits = model(**inputs).logits.float()
            target = labels[index].to(device)
            ce = F.cross_entropy(logits, target, reduction="none")
            if soft_targets is not None and config.alpha > 0:
                soft = soft_targets[index].to(device)
                log_student = F.log_softmax(logits / temperature, dim=-1)
                kl = (soft * (torch.log(soft.clamp_min(1e-12)) - log_student)).sum(dim=-1) * temperature**2
                use_kd = kd_mask[index].to(device) if kd_mask is not None else torch.ones_like(ce, dtype=torch.bool)
                loss_rows = torch.where(use_kd, config.alpha * kl + (1 - config.alpha) * ce, ce)
            else:
                loss_rows = ce
            loss = loss_rows.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm, foreach=False)
            optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            running += value * len(index)
            seen += len(index)
            if step % every == 0:
                step_losses.append(round(value, 6))
            step += 1
        epoch_losses.append(round(running / max(1, seen), 6))
        if on_epoch is not None:
            on_epoch(epoch, epoch_losses[-1])
    model.eval()
    return {"epoch_loss": epoch_losses, "step_loss": step_losses}
