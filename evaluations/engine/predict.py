"""Batch inference of a classifier artifact over texts under a deployment profile, with the binary safety
decision, runtime figures and, optionally, a second pass with the batches recomposed (the stability pass)."""

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
from evaluations.engine.profile import Batching, PaddingSide

__all__ = [
    "BatchRunner",
    "PredictionConfig",
    "Predictions",
    "batch_order",
    "load_for_inference",
    "predict",
    "recomposed_order",
]


@dataclass(frozen=True)
class PredictionConfig:
    """How to run inference; ``unsafe_labels`` name the classes whose probabilities sum to the unsafe
    probability, and a text is decided unsafe when that probability is >= ``decision_threshold``.

    ``batching``, ``padding_side`` and ``quantized_engine`` are the deployment profile's
    (evaluations.engine.profile); ``recompose_seed`` (None: no second pass) asks for the stability pass:
    every text predicted again in batches drawn at random (seeded) with everything else unchanged."""

    batch_size: int = 32
    max_length: int = 64
    device: str = "cpu"
    threads: int | None = None
    unsafe_labels: tuple[str, ...] = ("hatespeech", "offensive")
    decision_threshold: float = 0.5
    batching: str = Batching.FIXED.value
    padding_side: str = PaddingSide.RIGHT.value
    quantized_engine: str | None = None
    recompose_seed: int | None = None

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
            (self.batching in [b.value for b in Batching], "batching", f"one of {[b.value for b in Batching]}"),
            (self.padding_side in [p.value for p in PaddingSide], "padding_side", "'right' or 'left'"),
            (
                self.recompose_seed is None or (type(self.recompose_seed) is int and self.recompose_seed >= 0),
                "recompose_seed",
                "None or an integer >= 0",
            ),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise EngineError("invalid_parameter", f"{name} must be {expected}, got {getattr(self, name)!r}")

    @property
    def effective_batch_size(self) -> int:
        return 1 if self.batching == Batching.SINGLE else self.batch_size


@dataclass(frozen=True)
class Predictions:
    """Per-example outputs in input order plus runtime figures.

    ``probs`` is float64 (n, C) over ``labels``; ``wall_seconds`` and ``examples_per_second`` cover
    tokenisation and inference of the main pass (not model loading, which is ``load_seconds``, nor the
    stability pass, which is ``recompose_seconds``); ``peak_rss_bytes`` is the process peak (ru_maxrss).
    ``batch_sizes`` pairs with ``batch_latencies_s`` (for evaluations.engine.metrics.runtime_summary).
    ``recomposed_unsafe_prob`` and ``recomposed_decision`` are the stability pass's (None without one).
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
    recomposed_unsafe_prob: np.ndarray | None = None
    recomposed_decision: np.ndarray | None = None
    recompose_seconds: float = 0.0

    @property
    def stable(self) -> np.ndarray | None:
        """Per example: the decision is the same in both passes (None without a stability pass)."""
        return None if self.recomposed_decision is None else self.recomposed_decision == self.decision


@functools.lru_cache(maxsize=2)
def _cached_classifier(model_dir: str, device: str, quantized_engine: str | None):
    """Artifacts are immutable (content-addressed folders), so a worker that evaluates many chunks
    of the same model loads it once. Two entries: a baseline and a candidate. The quantized engine is
    part of the key: int8 weights are packed for the engine active when they are loaded."""
    return load_classifier(Path(model_dir), device=device)


def _use_quantized_engine(name: str | None) -> None:
    if name is None:
        return
    supported = list(torch.backends.quantized.supported_engines)
    if name not in supported:
        raise EngineError(
            "unsupported_platform", f"torch's quantized engine {name!r} is not available here (supported: {supported})"
        )
    torch.backends.quantized.engine = name


def load_for_inference(model_dir: Path, config: PredictionConfig):
    """The (cached) loaded classifier, with the profile's quantized engine active."""
    _use_quantized_engine(config.quantized_engine)
    return _cached_classifier(str(Path(model_dir).resolve()), config.device, config.quantized_engine)


def batch_order(lengths: Sequence[int], batching: str) -> np.ndarray:
    """The order texts are batched in: suite order, or by token length (stable, shortest first)."""
    if batching == Batching.LENGTH_SORTED:
        return np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    return np.arange(len(lengths))


def recomposed_order(n: int, seed: int) -> np.ndarray:
    """The stability pass's order: a seeded random permutation, so every text gets new neighbours (the same
    seed gives both models of a comparison the same recomposed batches)."""
    return np.random.default_rng(seed).permutation(n)


class BatchRunner:
    """Tokenise + forward + softmax of one batch, the same for every pass and for paired timing."""

    def __init__(self, loaded, config: PredictionConfig) -> None:
        self.loaded, self.config = loaded, config
        self.device = torch.device(config.device)
        self.input_names = list(getattr(loaded.tokenizer, "model_input_names", ["input_ids", "attention_mask"]))

    def lengths(self, texts: Sequence[str]) -> list[int]:
        encoded = self.loaded.tokenizer(list(texts), truncation=True, max_length=self.config.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def probs(self, batch: list[str]) -> np.ndarray:
        tokenizer = self.loaded.tokenizer
        previous_side = tokenizer.padding_side
        tokenizer.padding_side = self.config.padding_side
        try:
            encoded = tokenizer(
                batch, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
            )
        finally:
            tokenizer.padding_side = previous_side
        inputs = {name: encoded[name].to(self.device) for name in self.input_names if name in encoded}
        logits = self.loaded.model(**inputs).logits
        # Softmax in float64 so rows sum to 1 to machine precision for the metrics downstream.
        return torch.softmax(logits.double(), dim=-1).cpu().numpy()


def _run_pass(
    runner: BatchRunner,
    texts: Sequence[str],
    order: np.ndarray,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[float], list[int]]:
    """Probabilities in input order, predicted in batches along ``order``; per-batch latencies and sizes."""
    size = runner.config.effective_batch_size
    out = np.zeros((len(texts), len(runner.loaded.labels)), dtype=np.float64)
    latencies: list[float] = []
    sizes: list[int] = []
    for start in range(0, len(order), size):
        started = time.perf_counter()
        index = order[start : start + size]
        out[index] = runner.probs([texts[i] for i in index])
        latencies.append(time.perf_counter() - started)
        sizes.append(len(index))
        if progress is not None:
            progress(min(start + size, len(order)))
    return out, latencies, sizes


def predict(
    model_dir: Path,
    texts: Sequence[str],
    config: PredictionConfig,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Classify ``texts`` under the profile in ``config`` (outputs in input order), calling
    progress(done, total) after each batch (the stability pass counts as a second half). Raises
    EngineError("invalid_parameter") for an unsafe label the model lacks or a non-string text, and the
    loader's errors for a bad artifact."""
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise EngineError("invalid_parameter", "texts must be a sequence of strings")
    texts = list(texts)
    load_started = time.perf_counter()
    loaded = load_for_inference(model_dir, config)
    load_seconds = time.perf_counter() - load_started
    unknown = [name for name in config.unsafe_labels if name not in loaded.labels]
    if unknown:
        raise EngineError(
            "invalid_parameter", f"unsafe label(s) {unknown!r} are not classes of this model {list(loaded.labels)!r}"
        )
    unsafe_columns = [loaded.labels.index(name) for name in config.unsafe_labels]
    total = len(texts)
    passes = 1 if config.recompose_seed is None else 2

    def report(offset: int) -> Callable[[int], None] | None:
        if progress is None:
            return None
        return lambda done: progress(offset + done, passes * total)

    runner = BatchRunner(loaded, config)
    previous_threads = torch.get_num_threads()
    recomposed = None
    recompose_seconds = 0.0
    try:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        with torch.inference_mode():
            lengths = runner.lengths(texts) if config.batching == Batching.LENGTH_SORTED and total else [0] * total
            started = time.perf_counter()
            probs, latencies, sizes = _run_pass(runner, texts, batch_order(lengths, config.batching), report(0))
            wall_seconds = time.perf_counter() - started
            if config.recompose_seed is not None:
                started = time.perf_counter()
                recomposed, _, _ = _run_pass(
                    runner, texts, recomposed_order(total, config.recompose_seed), report(total)
                )
                recompose_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)

    unsafe_prob = probs[:, unsafe_columns].sum(axis=1)
    threshold = float(config.decision_threshold)
    recomposed_prob = None if recomposed is None else recomposed[:, unsafe_columns].sum(axis=1)
    return Predictions(
        labels=loaded.labels,
        probs=probs,
        unsafe_prob=unsafe_prob,
        decision=unsafe_prob >= threshold,
        predicted_label_index=probs.argmax(axis=1).astype(np.int64) if total else np.zeros(0, dtype=np.int64),
        batch_latencies_s=tuple(latencies),
        wall_seconds=wall_seconds,
        examples_per_second=total / wall_seconds if total and wall_seconds > 0 else 0.0,
        peak_rss_bytes=peak_rss_bytes(),
        parameter_count=count_parameters(loaded.model),
        size_bytes=dir_size(Path(model_dir)),
        load_seconds=load_seconds,
        batch_sizes=tuple(sizes),
        recomposed_unsafe_prob=recomposed_prob,
        recomposed_decision=None if recomposed_prob is None else recomposed_prob >= threshold,
        recompose_seconds=recompose_seconds,
    )
