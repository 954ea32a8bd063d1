"""Batch inference of a classifier artifact over texts, with the binary safety decision and runtime figures."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compression.engine.common import peak_rss_bytes
from compression.engine.errors import EngineError
from compression.engine.loading import load_classifier
from compression.engine.manifest import dir_size
from compression.engine.parameters import count_parameters

__all__ = ["PredictionConfig", "Predictions", "predict"]


@dataclass(frozen=True)
class PredictionConfig:
    """How to run inference; ``unsafe_labels`` name the classes whose probabilities sum to the unsafe
    probability, and a text is decided unsafe when that probability is >= ``decision_threshold``."""

    batch_size: int = 32
    max_length: int = 64
    device: str = "cpu"
    threads: int | None = None
    unsafe_labels: tuple[str, ...] = ("hatespeech", "offensive")
    decision_threshold: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "unsafe_labels", tuple(self.unsafe_labels))
        checks: list[tuple[bool, str, str]] = [
            (type(self.batch_size) is int and self.batch_size >= 1, "batch_size", "an integer >= 1"),
            (type(self.max_length) is int and self.max_length >= 2, "max_length", "an integer >= 2"),
            (isinstance(self.device, str) and bool(self.device), "device", "a device name such as 'cpu'"),
            (
                self.threads is None or (type(self.threads) is int and self.threads >= 1),
                "threads",
                "None or an integer >= 1",
            ),
            (
                bool(self.unsafe_labels)
                and all(isinstance(name, str) for name in self.unsafe_labels)
                and len(set(self.unsafe_labels)) == len(self.unsafe_labels),
                "unsafe_labels",
                "a non-empty tuple of distinct label names",
            ),
            (
                isinstance(self.decision_threshold, (int, float))
                and not isinstance(self.decision_threshold, bool)
                and 0.0 <= float(self.decision_threshold) <= 1.0,
                "decision_threshold",
                "a number in [0, 1]",
            ),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise EngineError("invalid_parameter", f"{name} must be {expected}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Predictions:
    """Per-example outputs in input order plus runtime figures.

    ``probs`` is float64 (n, C) over ``labels``; ``wall_seconds`` and ``examples_per_second`` cover
    tokenisation and inference (not model loading, which is ``load_seconds``); ``peak_rss_bytes`` is
    the process peak (ru_maxrss). ``batch_sizes`` pairs with ``batch_latencies_s`` (for
    evaluations.engine.metrics.runtime_summary).
    """

    labels: tuple[str, ...]
    probs: np.ndarray
    unsafe_prob: np.ndarray
    decision: np.ndarray
    predicted_label_index: np.ndarray
    batch_latencies_s: tuple[float, ...]
    wall_seconds: float
    examples_per_second: float
    peak_rss_bytes: int
    parameter_count: int
    size_bytes: int
    load_seconds: float
    batch_sizes: tuple[int, ...] = ()


@functools.lru_cache(maxsize=2)
def _cached_classifier(model_dir: str, device: str):
    """Artifacts are immutable (content-addressed folders), so a worker that evaluates many chunks
    of the same model loads it once. Two entries: a baseline and a candidate."""
    return load_classifier(Path(model_dir), device=device)


def predict(
    model_dir: Path,
    texts: Sequence[str],
    config: PredictionConfig,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Classify ``texts`` in order, in batches of ``config.batch_size``, calling progress(done, total)
    after each batch. Raises EngineError("invalid_parameter") for an unsafe label the model lacks or a
    non-string text, and the loader's errors for a bad artifact."""
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise EngineError("invalid_parameter", "texts must be a sequence of strings")
    load_started = time.perf_counter()
    loaded = _cached_classifier(str(Path(model_dir).resolve()), config.device)
    load_seconds = time.perf_counter() - load_started
    unknown = [name for name in config.unsafe_labels if name not in loaded.labels]
    if unknown:
        raise EngineError(
            "invalid_parameter", f"unsafe label(s) {unknown!r} are not classes of this model {list(loaded.labels)!r}"
        )
    unsafe_columns = [loaded.labels.index(name) for name in config.unsafe_labels]
    device = torch.device(config.device)
    input_names = list(getattr(loaded.tokenizer, "model_input_names", ["input_ids", "attention_mask"]))

    total = len(texts)
    chunks: list[np.ndarray] = []
    latencies: list[float] = []
    sizes: list[int] = []
    previous_threads = torch.get_num_threads()
    started = time.perf_counter()
    try:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        with torch.inference_mode():
            for start in range(0, total, config.batch_size):
                batch_started = time.perf_counter()
                batch = list(texts[start : start + config.batch_size])
                encoded = loaded.tokenizer(
                    batch, padding=True, truncation=True, max_length=config.max_length, return_tensors="pt"
                )
                inputs = {name: encoded[name].to(device) for name in input_names if name in encoded}
                logits = loaded.model(**inputs).logits
                # Softmax in float64 so rows sum to 1 to machine precision for the metrics downstream.
                chunks.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
                latencies.append(time.perf_counter() - batch_started)
                sizes.append(len(batch))
                if progress is not None:
                    progress(min(start + config.batch_size, total), total)
    finally:
        torch.set_num_threads(previous_threads)
    wall_seconds = time.perf_counter() - started

    probs = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, len(loaded.labels)), dtype=np.float64)
    unsafe_prob = probs[:, unsafe_columns].sum(axis=1)
    return Predictions(
        labels=loaded.labels,
        probs=probs,
        unsafe_prob=unsafe_prob,
        decision=unsafe_prob >= float(config.decision_threshold),
        predicted_label_index=probs.argmax(axis=1).astype(np.int64) if total else np.zeros(0, dtype=np.int64),
        batch_latencies_s=tuple(latencies),
        wall_seconds=wall_seconds,
        examples_per_second=total / wall_seconds if total and wall_seconds > 0 else 0.0,
        peak_rss_bytes=peak_rss_bytes(),
        parameter_count=count_parameters(loaded.model),
        size_bytes=dir_size(Path(model_dir)),
        load_seconds=load_seconds,
        batch_sizes=tuple(sizes),
    )
