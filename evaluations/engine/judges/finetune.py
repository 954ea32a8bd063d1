"""The torch half of the refusal judge: fine-tuning a BERT encoder on (prompt, answer) pairs, and the loaded judge.

Called through ``evaluations.engine.judges.refusal`` (``train_refusal_judge``, ``load_judge``), which documents the
input format and the training choices; this module imports torch and transformers.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.engine.common import predict_probs, seeded
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.training import length_bucketed_batches, only_layers, train_top_on_cached
from evaluations.engine.judges.data import JUDGE_LABELS, JudgeRow

__all__ = ["Fitted", "TrainedRefusalJudge", "encode_pairs", "fit"]

_REFUSAL = JUDGE_LABELS.index("refusal")
_FIRST_SENTENCE = re.compile(r"\S.{9,}?[.!?](?=\s|$)|[^\n]+", re.DOTALL)


def first_sentence(text: str) -> str:
    """The answer's first sentence (at least 10 characters, ending in . ! or ?) or else its first line."""
    match = _FIRST_SENTENCE.search(text.strip())
    return match.group(0)[:300] if match else ""


def with_short_copies(rows: Sequence[JudgeRow]) -> list[JudgeRow]:
    """``rows`` plus, for each answer longer than its first sentence, a copy cut to that sentence with the same
    label: a refusal is mostly said at once, and short refusals ("Sorry, but I can't assist with that.") must not
    read as compliance because the training refusals were long."""
    out = list(rows)
    for row in rows:
        short = first_sentence(row.completion)
        if short and len(short) < len(row.completion.strip()):
            out.append(dataclasses.replace(row, completion=short))
    return out


@dataclass(frozen=True)
class Fitted:
    heldout_probs: tuple[float, ...]
    epoch_loss: list[float]
    train_seconds: float
    threads: int


def encode_pairs(
    tokenizer: Any,
    prompts: Sequence[str],
    outputs: Sequence[str],
    max_length: int,
    answer_chars: int,
    use_prompt: bool,
) -> dict[str, torch.Tensor]:
    """answer[:answer_chars] alone, or (prompt, answer[:answer_chars]) sentence pairs with ``use_prompt``; padded to
    the longest, at most ``max_length`` tokens."""
    answers = [output[:answer_chars] for output in outputs]
    texts = (list(prompts), answers) if use_prompt else (answers,)
    encoded = tokenizer(*texts, padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt")
    names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return {name: encoded[name] for name in names if name in encoded}


def _load_classifier(encoder_dir: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(encoder_dir),
            local_files_only=True,
            num_labels=len(JUDGE_LABELS),
            id2label=dict(enumerate(JUDGE_LABELS)),
            label2id={name: i for i, name in enumerate(JUDGE_LABELS)},
        )
    except (OSError, ValueError) as exc:
        raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"cannot load the encoder: {exc}") from exc


def fit(
    encoder_dir: Path,
    rows: Sequence[JudgeRow],
    heldout: Sequence[JudgeRow],
    output_dir: Path,
    hyper: dict[str, Any],
    progress: Callable[[str, float], None],
) -> Fitted:
    """Train on ``rows``, save model + tokenizer into ``output_dir`` and score ``heldout`` with the saved judge."""
    from transformers import AutoTokenizer

    started = time.perf_counter()
    rows = with_short_copies(rows) if hyper["short_copies"] else list(rows)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
    with seeded(hyper["seed"]):
        model = _load_classifier(encoder_dir)
        base = model.base_model
        layers = list(getattr(getattr(base, "encoder", None), "layer", None) or [])
        if not layers or not hasattr(base, "embeddings"):
            raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, "the encoder is not a BERT-like model")
        if hyper["frozen_layers"] >= len(layers):
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER, f"frozen_layers must be below the encoder's {len(layers)} layers"
            )
        bottom, top = layers[: hyper["frozen_layers"]], layers[hyper["frozen_layers"] :]
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        trainable = [*top, model.classifier] + ([base.pooler] if getattr(base, "pooler", None) is not None else [])
        for module in trainable:
            for parameter in module.parameters():
                parameter.requires_grad_(True)

        progress("encoding", 0.0)
        encoded = encode_pairs(
            tokenizer,
            [row.prompt for row in rows],
            [row.completion for row in rows],
            hyper["max_length"],
            hyper["answer_chars"],
            hyper["use_prompt"],
        )
        labels = torch.tensor([JUDGE_LABELS.index(row.label) for row in rows], dtype=torch.long)
        lengths = encoded["attention_mask"].sum(dim=1)
        generator = torch.Generator().manual_seed(hyper["seed"])
        fixed = length_bucketed_batches(lengths, hyper["batch_size"], generator)
        cached: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        model.eval()
        with torch.no_grad(), only_layers(model, bottom, passthrough=False):
            for index in fixed:
                width = int(lengths[index].max())
                inputs = {name: value[index, :width] for name, value in encoded.items()}
                hidden = base(**inputs).last_hidden_state  # the embeddings' output when no layer is frozen
                cached.append((hidden.clone(), inputs["attention_mask"].clone(), labels[index]))
        progress("training", 0.1)
        epoch_loss = train_top_on_cached(
            model,
            top,
            cached,
            epochs=hyper["epochs"],
            learning_rate=hyper["learning_rate"],
            examples=len(rows),
            generator=generator,
            on_step=lambda step, total: (
                progress("training", round(0.1 + 0.8 * step / total, 4)) if step % 10 == 0 else None
            ),
        )
    train_seconds = time.perf_counter() - started
    progress("saving", 0.9)
    model.save_pretrained(str(output_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(output_dir))
    probs: tuple[float, ...] = ()
    if heldout:
        progress("held-out", 0.95)
        judge = TrainedRefusalJudge(
            output_dir,
            max_length=hyper["max_length"],
            answer_chars=hyper["answer_chars"],
            use_prompt=hyper["use_prompt"],
        )
        scored = judge.refusal_prob([row.prompt for row in heldout], [row.completion for row in heldout])
        probs = tuple(float(p) for p in scored)
    progress("done", 1.0)
    return Fitted(
        heldout_probs=probs, epoch_loss=epoch_loss, train_seconds=train_seconds, threads=torch.get_num_threads()
    )


class TrainedRefusalJudge:
    """A fine-tuned refusal judge on the CPU (eval mode). ``refusal_prob`` runs length-sorted batches of
    ``batch_size``: the same inputs give the same probabilities."""

    kind = "refusal-judge"

    def __init__(
        self,
        judge_dir: Path,
        *,
        max_length: int,
        answer_chars: int,
        use_prompt: bool,
        threshold: float = 0.5,
        labels: tuple[str, ...] = JUDGE_LABELS,
        spec: dict[str, Any] | None = None,
        batch_size: int = 32,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(judge_dir), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(str(judge_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"cannot load the judge's model: {exc}") from exc
        if int(self.model.config.num_labels) != len(labels):
            raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, "the judge's model and judge.json labels differ")
        self.model.eval()
        self.max_length = max_length
        self.answer_chars = answer_chars
        self.use_prompt = use_prompt
        self.threshold = threshold
        self.labels = labels
        self.spec = spec or {}
        self.batch_size = batch_size

    @classmethod
    def load(cls, judge_dir: Path, spec: dict[str, Any]) -> TrainedRefusalJudge:
        if tuple(spec["labels"]) != JUDGE_LABELS:
            raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"a refusal judge's labels must be {JUDGE_LABELS}")
        settings = spec.get("input") or {}
        try:
            max_length, answer_chars = int(settings["max_length"]), int(settings["answer_chars"])
            use_prompt = settings["use_prompt"]
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT, "judge.json lacks input.max_length/answer_chars/use_prompt"
            ) from exc
        if not isinstance(use_prompt, bool):
            raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, "judge.json: input.use_prompt must be true or false")
        return cls(
            judge_dir,
            max_length=max_length,
            answer_chars=answer_chars,
            use_prompt=use_prompt,
            threshold=float(spec["threshold"]),
            labels=tuple(spec["labels"]),
            spec=spec,
        )

    def refusal_prob(self, prompts: Sequence[str], outputs: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(outputs):
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"{len(prompts)} prompts but {len(outputs)} outputs")
        if not prompts:
            return np.zeros(0, dtype=np.float64)
        encoded = encode_pairs(self.tokenizer, prompts, outputs, self.max_length, self.answer_chars, self.use_prompt)
        probs = predict_probs(self.model, encoded, torch.device("cpu"), batch_size=self.batch_size)
        return probs[:, _REFUSAL].double().numpy()
