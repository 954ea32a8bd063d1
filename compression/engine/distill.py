"""Knowledge distillation into a smaller student, with safety options.

Teachers: ``source_dir`` plus ``request.teachers``; their probabilities at temperature T are averaged
(each teacher tokenizes with its own tokenizer; all must share the class names). The student copies
the first teacher's config with fewer layers (and optionally a smaller hidden size or feed-forward
width); with the teacher's hidden size it starts from the teacher's embeddings, pooler, classifier
and the encoder layers ``init_layers`` (a narrower feed-forward keeps each layer's largest neurons,
as structured pruning would without data); with another hidden size it starts fresh (seeded).

Safety options:
- ``use_stress``: data.stress (edge-case + adversarial examples) joins the training set.
- ``reject`` ("confidence": max prob < threshold, "entropy": entropy in nats > threshold; teachers'
  averaged probabilities at T = 1): an unsure soft label is dropped and that example trains on its
  hard label only (cross-entropy). Counts are reported per source.
- ``rounds`` N: after each round the student is evaluated on data.heldout_adversarial; its failures
  (not added before) join the training set and training continues from the current student for
  ``epochs`` more epochs. Round results after round 1 are measured on a split partly trained on, so
  they track how many failures remain, not unbiased accuracy (details say so).

On the CPU, with deterministic algorithms and the same thread count, the same request and seed give
byte-identical files.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from compression.engine.common import (
    MethodContext,
    MethodOutput,
    encode,
    predict_logits,
    predict_probs,
    save_hf_dir,
    seeded,
)
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.loading import LoadedModel, load_classifier
from compression.engine.methods import validate_student
from compression.engine.parameters import count_parameters
from compression.engine.training import KDConfig, train_kd

__all__ = ["run_distill", "build_student", "teacher_probabilities"]


def build_student(teacher: torch.nn.Module, parameters: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The student model (seeded by the caller) and its shape (see methods.validate_student)."""
    from transformers import AutoModelForSequenceClassification

    teacher_config: Any = teacher.config  # a transformers PretrainedConfig (untyped for mypy)
    shape = validate_student(parameters, teacher_config.to_dict())
    config = type(teacher_config).from_dict(teacher_config.to_dict())
    config.num_hidden_layers = shape["num_layers"]
    config.hidden_size = shape["hidden_size"]
    config.num_attention_heads = shape["num_attention_heads"]
    config.intermediate_size = shape["intermediate_size"]
    config.architectures = [type(teacher).__name__]
    student = AutoModelForSequenceClassification.from_config(config)
    if shape["init_layers"] is not None:
        source = teacher.state_dict()
        prefix = f"{teacher.base_model_prefix}.encoder.layer."
        kept = _kept_neurons(teacher, shape)
        mapped: dict[str, torch.Tensor] = {}
        for key, target in student.state_dict().items():
            layer = None
            if key.startswith(prefix):
                layer, rest = key[len(prefix) :].split(".", 1)
                teacher_key = f"{prefix}{shape['init_layers'][int(layer)]}.{rest}"
            else:
                teacher_key = key
            if teacher_key not in source:
                raise EngineError(
                    EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
                    f"teacher has no weight {teacher_key!r} to initialise the student",
                )
            value = source[teacher_key].detach()
            if kept is not None and layer is not None and rest in _FFN_SLICES:
                value = value.index_select(_FFN_SLICES[rest], kept[int(layer)])
            if value.shape != target.shape:
                raise EngineError(
                    EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
                    f"teacher weight {teacher_key!r} has shape {tuple(value.shape)}, the student needs "
                    f"{tuple(target.shape)}",
                )
            mapped[key] = value.clone()
        student.load_state_dict(mapped, strict=True)
    return student, shape


# Feed-forward weights of a BERT-style layer and the dimension that indexes its neurons.
_FFN_SLICES = {"intermediate.dense.weight": 0, "intermediate.dense.bias": 0, "output.dense.weight": 1}


def _kept_neurons(teacher: torch.nn.Module, shape: dict[str, Any]) -> list[torch.Tensor] | None:
    """For a student narrower than the teacher's feed-forward: per student layer, the indices (in
    order) of the source layer's largest neurons, scored |intermediate row| * |output column|."""
    from compression.engine.structure import encoder_layers

    parts = encoder_layers(teacher)
    if shape["intermediate_size"] == parts[0].intermediate.out_features:
        return None
    kept = []
    for source in shape["init_layers"]:
        layer = parts[source]
        score = layer.intermediate.weight.detach().norm(dim=1) * layer.output.weight.detach().norm(dim=0)
        top = torch.topk(score, shape["intermediate_size"]).indices
        kept.append(torch.sort(top).values)
    return kept


def teacher_probabilities(
    teachers: list[LoadedModel], texts: list[str], max_length: int, temperature: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(averaged probs at T, averaged probs at T = 1) of ``teachers`` for ``texts``."""
    soft = []
    plain = []
    for teacher in teachers:
        encoded = encode(teacher.tokenizer, texts, max_length)
        run_on = device if teacher.format in ("hf-dir", "hf-pruned") else torch.device("cpu")
        teacher.model.to(run_on)
        logits = predict_logits(teacher.model, encoded, run_on)
        soft.append(torch.softmax(logits / temperature, dim=-1))
        plain.append(torch.softmax(logits, dim=-1))
    return torch.stack(soft).mean(dim=0), torch.stack(plain).mean(dim=0)


def _rejected(probs: torch.Tensor, reject: str, threshold: float | None) -> torch.Tensor:
    if reject == "confidence":
        assert threshold is not None  # validate_parameters requires a threshold unless reject is "none"
        return probs.max(dim=-1).values < threshold
    if reject == "entropy":
        assert threshold is not None  # validate_parameters requires a threshold unless reject is "none"
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1)
        return entropy > threshold
    return torch.zeros(probs.shape[0], dtype=torch.bool)


def run_distill(ctx: MethodContext) -> MethodOutput:
    params = ctx.parameters
    data = ctx.request.data
    device = ctx.device
    primary = ctx.loaded
    # Refuse a student larger than the teacher before any work.
    validate_student(params, primary.model.config.to_dict())
    teachers = [primary]
    for path in ctx.request.teachers:
        extra = load_classifier(path, device="cpu")
        if extra.labels != primary.labels:
            raise EngineError(
                EngineErrorCode.INVALID_INPUT,
                f"teachers: {str(path)!r} has classes {list(extra.labels)} but the source has {list(primary.labels)}",
            )
        teachers.append(extra)

    rng = random.Random(ctx.request.seed)
    train_rows = list(data.train)
    if params["max_train_examples"] and len(train_rows) > params["max_train_examples"]:
        train_rows = rng.sample(train_rows, params["max_train_examples"])
    rows: list[tuple[str, int, str]] = [(text, label, "train") for text, label in train_rows]
    if params["use_stress"]:
        rows.extend((text, label, "stress") for text, label in data.stress)
    heldout = list(data.heldout_adversarial)
    temperature = float(params["temperature"])
    reject, threshold = params["reject"], params["reject_threshold"]

    ctx.report("teacher_outputs", 0.15)
    all_texts = [text for text, _, _ in rows] + [text for text, _ in heldout]
    soft_all, plain_all = teacher_probabilities(teachers, all_texts, params["max_length"], temperature, device)
    rejected_all = _rejected(plain_all, reject, threshold)
    count = len(rows)
    soft, rejected = soft_all[:count], rejected_all[:count]
    heldout_soft, heldout_rejected = soft_all[count:], rejected_all[count:]
    heldout_labels = torch.tensor([label for _, label in heldout], dtype=torch.long)
    teacher_heldout_accuracy = (
        float((plain_all[count:].argmax(dim=-1) == heldout_labels).double().mean()) if heldout else None
    )
    teacher_train_agreement = float(
        (plain_all[:count].argmax(dim=-1) == torch.tensor([label for _, label, _ in rows])).double().mean()
    )

    tokenizer = primary.tokenizer
    heldout_encoded = encode(tokenizer, [text for text, _ in heldout], params["max_length"]) if heldout else None
    config = KDConfig(
        temperature=temperature,
        alpha=float(params["alpha"]),
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        lr=float(params["lr"]),
    )
    rounds = params["rounds"]
    per_round: list[dict[str, Any]] = []
    added: set[int] = set()
    span = 0.6 / rounds
    with seeded(ctx.request.seed):
        student, shape = build_student(primary.model, params)
        student.to(device)
        generator = torch.Generator().manual_seed(ctx.request.seed)
        for round_index in range(rounds):
            texts = [text for text, _, _ in rows] + [heldout[i][0] for i in sorted(added)]
            labels = torch.tensor(
                [label for _, label, _ in rows] + [heldout[i][1] for i in sorted(added)], dtype=torch.long
            )
            order = sorted(added)
            round_soft = torch.cat([soft, heldout_soft[order]]) if order else soft
            round_kd = ~torch.cat([rejected, heldout_rejected[order]]) if order else ~rejected
            encoded = encode(tokenizer, texts, params["max_length"])
            low = 0.2 + span * round_index

            def on_epoch(epoch: int, loss: float, low: float = low) -> None:
                ctx.report("training", round(low + span * 0.9 * (epoch + 1) / config.epochs, 6))

            curves = train_kd(
                student,
                encoded,
                labels,
                round_soft,
                round_kd,
                config,
                device=device,
                generator=generator,
                on_epoch=on_epoch,
            )
            entry: dict[str, Any] = {
                "round": round_index + 1,
                "train_examples": len(texts),
                "added_failures_in_training": len(order),
                "epoch_loss": curves["epoch_loss"],
                "step_loss": curves["step_loss"],
            }
            if heldout_encoded is not None:
                ctx.report("evaluating", round(low + span * 0.95, 6))
                predicted = predict_probs(student, heldout_encoded, device).argmax(dim=-1)
                failures = [i for i in range(len(heldout)) if int(predicted[i]) != heldout[i][1]]
                new = [i for i in failures if i not in added]
                entry.update(
                    heldout_examples=len(heldout),
                    heldout_accuracy=round(1 - len(failures) / len(heldout), 6),
                    heldout_failures=len(failures),
                    heldout_contaminated=round_index > 0,
                )
                if round_index < rounds - 1:
                    added.update(new)
                    entry["failures_added_next_round"] = len(new)
                    entry["rejected_among_added"] = int(heldout_rejected[new].sum()) if new else 0
            per_round.append(entry)
    student.to("cpu").eval()

    ctx.report("saving", 0.8)
    ctx.make_output_dir()
    save_hf_dir(student, ctx.source_dir, ctx.output_dir)
    sources = [source for _, _, source in rows]
    rejected_counts = {
        name: int(sum(1 for i, source in enumerate(sources) if source == name and bool(rejected[i])))
        for name in ("train", "stress")
    }
    rejected_counts["heldout_added"] = int(sum(bool(heldout_rejected[i]) for i in added))
    return MethodOutput(
        "hf-dir",
        {
            "student": {key: value for key, value in shape.items()},
            "initialisation": "teacher_layers" if shape["init_layers"] is not None else "fresh",
            "teacher_count": len(teachers),
            "teacher_parameter_count": count_parameters(primary.model),
            "teachers": [str(ctx.source_dir)] + [str(path) for path in ctx.request.teachers],
            "train_examples": sum(1 for s in sources if s == "train"),
            "stress_examples": sum(1 for s in sources if s == "stress"),
            "reject": reject,
            "reject_threshold": threshold,
            "reject_action": "soft label dropped; hard-label cross-entropy only",
            "rejected": rejected_counts,
            "rejected_total": rejected_counts["train"] + rejected_counts["stress"] + rejected_counts["heldout_added"],
            "teacher_train_agreement": round(teacher_train_agreement, 6),
            "teacher_heldout_accuracy": None
            if teacher_heldout_accuracy is None
            else round(teacher_heldout_accuracy, 6),
            "rounds": per_round,
            "loss_curve": [loss for entry in per_round for loss in entry["epoch_loss"]],
            "temperature": temperature,
            "alpha": config.alpha,
            "deterministic": device.type == "cpu",
        },
    )
