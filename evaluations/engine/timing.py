"""Runtime of a baseline and a candidate measured side by side: same job, same process, interleaved batches.

A latency or throughput ratio is only evidence when both models ran under the same load. Evaluations may be
reused across releases (their predictions are identical), but their timings come from other times and other
load, so a comparison measures its runtime here instead: both models loaded in one process, one warm-up batch
each, then every batch run by both models back to back, the order alternating (baseline first on even
batches, candidate first on odd ones), under the deployment profile of the evaluation.
"""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compression.engine.cpu import compute_platform
from compression.engine.errors import EngineError
from evaluations.engine.metrics.runtime import runtime_summary
from evaluations.engine.predict import BatchRunner, PredictionConfig, batch_order, load_for_inference

__all__ = ["PairedRuntime", "paired_runtime", "timing_sample"]


@dataclass(frozen=True)
class PairedRuntime:
    """Per model: runtime_summary figures (latency percentiles, examples/s) of the same batches."""

    baseline: dict
    candidate: dict
    examples: int
    batches: int
    warmup_batches: int
    host: str
    platform: dict

    def as_dict(self) -> dict:
        return {
            "method": "paired: one job, one process, batches interleaved (order alternating), after a warm-up",
            "examples": self.examples,
            "batches": self.batches,
            "warmup_batches": self.warmup_batches,
            "host": self.host,
            "platform": self.platform,
            "baseline": self.baseline,
            "candidate": self.candidate,
        }


def timing_sample(n: int, limit: int) -> np.ndarray:
    """Indexes of at most ``limit`` examples spread evenly over ``n`` (all of them when n <= limit)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, num=limit).round().astype(np.int64))


def paired_runtime(
    baseline_dir: Path, candidate_dir: Path, texts: Sequence[str], config: PredictionConfig, *, warmup_batches: int = 1
) -> PairedRuntime:
    """Time both models on ``texts`` (batched as the profile says), interleaved batch by batch."""
    if not texts:
        raise EngineError("empty_input", "no texts to time")
    texts = list(texts)
    runners = [BatchRunner(load_for_inference(d, config), config) for d in (baseline_dir, candidate_dir)]
    size = config.effective_batch_size
    lengths = runners[0].lengths(texts) if config.batching == "length_sorted" else [0] * len(texts)
    order = batch_order(lengths, config.batching)
    batches = [[texts[i] for i in order[s : s + size]] for s in range(0, len(order), size)]
    latencies: list[list[float]] = [[], []]
    previous_threads = torch.get_num_threads()
    try:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        with torch.inference_mode():
            for batch in batches[:warmup_batches]:
                for runner in runners:
                    runner.probs(batch)
            for number, batch in enumerate(batches):
                for which in (0, 1) if number % 2 == 0 else (1, 0):
                    started = time.perf_counter()
                    runners[which].probs(batch)
                    latencies[which].append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous_threads)
    sizes = [len(batch) for batch in batches]
    baseline, candidate = (dict(runtime_summary(latencies[i], sizes)) for i in (0, 1))
    return PairedRuntime(
        baseline=baseline,
        candidate=candidate,
        examples=len(texts),
        batches=len(batches),
        warmup_batches=min(warmup_batches, len(batches)),
        host=socket.gethostname() or platform.node(),
        platform=compute_platform(config.device),
    )
