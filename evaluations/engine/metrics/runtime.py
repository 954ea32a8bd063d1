"""Runtime summary of an evaluation: latency percentiles per batch and per example, and throughput."""

from __future__ import annotations

import numpy as np

from compression.engine.errors import EngineError

__all__ = ["runtime_summary"]


def runtime_summary(
    batch_latencies_s: object, batch_sizes: object, wall_seconds: float | None = None
) -> dict[str, float | int | None]:
    """Latency percentiles per batch and per example, and throughput.

    Per-example latency is the batch latency divided by its size, counted once per example (so the
    percentiles are over examples). Throughput = examples / ``wall_seconds`` (default: the sum of
    the batch latencies). Percentiles use numpy's linear interpolation; None when there are no batches.
    """
    latencies = np.asarray(batch_latencies_s, dtype=np.float64)
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    if latencies.ndim != 1 or sizes.shape != latencies.shape:
        raise EngineError("invalid_parameter", "batch_latencies_s and batch_sizes must be 1-D and of equal length")
    if latencies.size and (latencies.min() < 0 or sizes.min() < 1):
        raise EngineError("invalid_parameter", "latencies must be >= 0 and batch sizes >= 1")
    examples = int(sizes.sum())
    wall = float(latencies.sum()) if wall_seconds is None else float(wall_seconds)
    result: dict[str, float | int | None] = {"batches": int(latencies.size), "examples": examples, "wall_seconds": wall}
    per_example = np.repeat(latencies / np.maximum(sizes, 1), sizes) if latencies.size else latencies
    for q in (50, 95, 99):
        result[f"batch_latency_p{q}_s"] = float(np.percentile(latencies, q)) if latencies.size else None
        result[f"example_latency_p{q}_s"] = float(np.percentile(per_example, q)) if latencies.size else None
    result["examples_per_second"] = examples / wall if examples and wall > 0 else None
    return result
