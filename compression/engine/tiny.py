"""Build a tiny, reproducible BERT safety classifier from HateXplain for tests and demos (CPU, seconds)."""

from __future__ import annotations

import csv
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from compression.engine.errors import EngineError, EngineErrorCode

__all__ = ["TinyModelReport", "build_tiny_classifier", "TINY_LABELS"]

TINY_LABELS: tuple[str, ...] = ("normal", "hatespeech", "offensive")
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_VOCAB_SIZE = 3000
_BATCH_SIZE = 32
_LEARNING_RATE = 1e-3
_VAL_ROWS = 1000
_REQUIRED_COLUMNS = ("split", "text", "label")


@dataclass(frozen=True)
class TinyModelReport:
    """Outcome of a tiny build: where it was saved, its classes and how well/fast it trained."""

    out_dir: Path
    labels: tuple[str, ...]
    train_examples: int
    val_accuracy: float
    seconds: float


def _read_rows(data_csv: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Return (train, val) lists of (text, label index), dropping 'undecided' and rows with no split."""
    if not Path(data_csv).is_file():
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"data file {str(data_csv)!r} does not exist")
    label_index = {name: index for index, name in enumerate(TINY_LABELS)}
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    with open(data_csv, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in _REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"data file lacks column(s) {', '.join(missing)}")
        for row in reader:
            label = label_index.get(row["label"])
            if label is None or not row["text"].strip():
                continue
            if row["split"] == "train":
                train.append((row["text"], label))
            elif row["split"] == "val":
                val.append((row["text"], label))
    if not train or not val:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "data file has no usable train or val rows")
    return train, val


def _stratified_sample(rows: list[tuple[str, int]], size: int, seed: int) -> list[tuple[str, int]]:
    """Draw up to ``size`` rows with equal quotas per class (all of a class when it is short), shuffled."""
    rng = random.Random(seed)
    by_label: dict[int, list[tuple[str, int]]] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    classes = sorted(by_label)
    sample: list[tuple[str, int]] = []
    for position, label in enumerate(classes):
        quota = size // len(classes) + (1 if position < size % len(classes) else 0)
        pool = by_label[label]
        sample.extend(rng.sample(pool, min(quota, len(pool))))
    rng.shuffle(sample)
    return sample


def _build_vocab(texts: list[str]) -> list[str]:
    """Special tokens then the most frequent words, split exactly as the BERT tokenizer will split them."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    for token in SPECIAL_TOKENS:
        counts.pop(token.lower(), None)
    # Ties broken by the word itself so the vocabulary does not depend on dict ordering.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return list(SPECIAL_TOKENS) + [word for word, _ in ranked[: _VOCAB_SIZE - len(SPECIAL_TOKENS)]]


def _length_bucketed_batches(lengths: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffle, sort by length inside pools of 16 batches, then shuffle the batches.

    Rows of similar length share a batch, so trimming each batch to its longest row removes most
    padding (HateXplain posts average ~24 tokens but most random batches reach the 48-token cap).
    """
    order = torch.randperm(len(lengths), generator=generator)
    pool = _BATCH_SIZE * 16
    batches: list[torch.Tensor] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches.extend(chunk[i : i + _BATCH_SIZE] for i in range(0, len(chunk), _BATCH_SIZE))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def build_tiny_classifier(
    *,
    data_csv: Path,
    out_dir: Path,
    sample_size: int = 3000,
    seed: int = 0,
    epochs: int = 3,
    max_length: int = 48,
) -> TinyModelReport:
    """Train a 2-layer, hidden-64 BERT (labels normal/hatespeech/offensive) on a class-balanced sample of
    HateXplain train and save it with save_pretrained (safetensors) plus its tokenizer into ``out_dir``.

    ``out_dir`` may exist but must be empty. The same arguments give byte-identical files: training runs
    single-threaded with deterministic algorithms and its own seeded RNG (the caller's RNG state,
    thread count and determinism flag are restored afterwards).
    """
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    started = time.perf_counter()
    if sample_size < len(TINY_LABELS) or epochs < 1 or not 8 <= max_length <= 64:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER, "sample_size >= 3, epochs >= 1 and 8 <= max_length <= 64 are required"
        )
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER, f"out_dir {str(out_dir)!r} exists and is not an empty directory"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    train_rows, val_rows = _read_rows(Path(data_csv))
    sample = _stratified_sample(train_rows, sample_size, seed)
    val_rows = val_rows[:_VAL_ROWS]
    vocab = _build_vocab([text for text, _ in sample])
    vocab_path = out_dir / "vocab.txt"
    vocab_path.write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    # transformers 5 ignores `vocab_file=` (every token becomes [UNK]); `vocab=` takes the path.
    tokenizer = BertTokenizerFast(vocab=str(vocab_path), do_lower_case=True, model_max_length=max_length)

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=len(TINY_LABELS),
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={name: index for index, name in enumerate(TINY_LABELS)},
        pad_token_id=0,
        # No dropout: it costs ~15% of step time and 3 short epochs barely overfit.
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    encoded = tokenizer(
        [text for text, _ in sample], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    targets = torch.tensor([label for _, label in sample], dtype=torch.long)

    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BertForSequenceClassification(config)
            optimizer = torch.optim.AdamW(
                model.parameters(), lr=_LEARNING_RATE, weight_decay=0.01, foreach=False, fused=True
            )
            steps_per_epoch = -(-len(sample) // _BATCH_SIZE)
            total_steps = steps_per_epoch * epochs
            warmup_steps = max(1, total_steps // 10)
            # Warm-up then linear decay: without it a from-scratch BERT often collapses to the class prior.
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda step: min(
                    (step + 1) / warmup_steps, max(0.0, (total_steps - step) / (total_steps - warmup_steps))
                ),
            )
            generator = torch.Generator().manual_seed(seed)
            model.train()
            lengths = encoded["attention_mask"].sum(dim=1)
            for _ in range(epochs):
                for batch in _length_bucketed_batches(lengths, generator):
                    width = int(lengths[batch].max())
                    output = model(
                        input_ids=encoded["input_ids"][batch, :width],
                        attention_mask=encoded["attention_mask"][batch, :width],
                        token_type_ids=encoded["token_type_ids"][batch, :width],
                        labels=targets[batch],
                    )
                    optimizer.zero_grad(set_to_none=True)
                    output.loss.backward()
                    optimizer.step()
                    scheduler.step()
            model.eval()
        torch.set_num_threads(min(previous_threads, 2))
        val_encoded = tokenizer(
            [text for text, _ in val_rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            logits = torch.cat(
                [
                    model(**{key: value[start : start + 256] for key, value in val_encoded.items()}).logits
                    for start in range(0, len(val_rows), 256)
                ]
            )
        val_targets = torch.tensor([label for _, label in val_rows], dtype=torch.long)
        val_accuracy = float((logits.argmax(dim=-1) == val_targets).double().mean())
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)

    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return TinyModelReport(
        out_dir=out_dir,
        labels=TINY_LABELS,
        train_examples=len(sample),
        val_accuracy=val_accuracy,
        seconds=time.perf_counter() - started,
    )
