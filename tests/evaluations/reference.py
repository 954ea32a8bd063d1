"""Test-only reference implementations the engine is checked against (moved out of the engine: no
production code calls them).

- ``binary_metrics``: the overall binary metrics in one pass, checked against the single metrics.
- ``paired_bootstrap_delta``: the plain index bootstrap of one metric; ``evaluations.engine.bootstrap``'s
  ``method="index"`` draws the same RNG stream in the same chunks (``samplers.INDEX_CELLS_PER_CHUNK``),
  so one group's accuracy matches it bit for bit.
"""

from __future__ import annotations

import numpy as np

from compression.engine.errors import EngineError
from evaluations.engine import samplers
from evaluations.engine.estimates import DeltaEstimate
from evaluations.engine.metrics.inputs import bool_vector, decision_confidence, probabilities, same_length
from evaluations.engine.metrics.reliability import ECE_BINS, ece_value

__all__ = ["BOOTSTRAP_METRICS", "binary_metrics", "paired_bootstrap_delta"]

# The metrics the reference bootstrap supports (a subset of the catalogue's bootstrapped metrics).
BOOTSTRAP_METRICS: tuple[str, ...] = ("accuracy", "unsafe_recall", "benign_fpr")


def binary_metrics(
    y_unsafe: np.ndarray, decision: np.ndarray, unsafe_prob: np.ndarray
) -> dict[str, float | int | None]:
    """Return n, accuracy, unsafe_recall (None without unsafe examples), benign_fpr (None without safe
    examples), brier (on unsafe_prob), mean_confidence and ece (15 equal-width bins), both on the
    confidence of the binary decision. Every value but n is None when n == 0."""
    y = bool_vector(y_unsafe, "y_unsafe")
    d = bool_vector(decision, "decision")
    p = probabilities(unsafe_prob, "unsafe_prob")
    n = same_length(y_unsafe=y, decision=d, unsafe_prob=p)
    result: dict[str, float | int | None] = {
        "n": n,
        "accuracy": None,
        "unsafe_recall": None,
        "benign_fpr": None,
        "brier": None,
        "mean_confidence": None,
        "ece": None,
    }
    if n == 0:
        return result
    correct = y == d
    positives = int(y.sum())
    negatives = n - positives
    confidence = decision_confidence(d, p)
    ece = ece_value(correct, confidence, ECE_BINS)
    result.update(
        accuracy=float(correct.mean()),
        unsafe_recall=float((y & d).sum() / positives) if positives else None,
        benign_fpr=float((~y & d).sum() / negatives) if negatives else None,
        brier=float(np.mean((p - y.astype(np.float64)) ** 2)),
        mean_confidence=float(confidence.mean()),
        ece=float(ece),
    )
    return result


def _metric_rows(metric: str, y: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metric per row of (resamples, n) bool matrices: (values, defined). Undefined rows hold 0."""
    n = y.shape[1]
    if metric == "accuracy":
        return (y == d).sum(axis=1) / n, np.ones(y.shape[0], dtype=bool)
    if metric == "unsafe_recall":
        denominator = y.sum(axis=1)
        numerator = (y & d).sum(axis=1)
    else:  # benign_fpr
        denominator = (~y).sum(axis=1)
        numerator = (~y & d).sum(axis=1)
    defined = denominator > 0
    return numerator / np.where(defined, denominator, 1), defined


def paired_bootstrap_delta(
    y_unsafe: np.ndarray,
    dec_base: np.ndarray,
    dec_cand: np.ndarray,
    *,
    metric: str,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> DeltaEstimate:
    """Paired bootstrap of metric(candidate) − metric(baseline): the same resampled example indices
    for both models, percentile interval at ``level``; resamples where the metric is undefined are
    dropped. Deterministic given ``seed`` (numpy PCG64)."""
    if metric not in BOOTSTRAP_METRICS:
        raise EngineError("invalid_parameter", f"metric {metric!r} is not one of {list(BOOTSTRAP_METRICS)}")
    if type(resamples) is not int or resamples < 1:
        raise EngineError("invalid_parameter", f"resamples must be an integer >= 1, got {resamples!r}")
    if not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise EngineError("invalid_parameter", f"level must be in (0, 1), got {level!r}")
    y = bool_vector(y_unsafe, "y_unsafe")
    base = bool_vector(dec_base, "dec_base")
    cand = bool_vector(dec_cand, "dec_cand")
    n = same_length(y_unsafe=y, dec_base=base, dec_cand=cand)

    def estimate(**values: float | int | None) -> DeltaEstimate:
        fields: dict[str, float | int | None] = {
            "baseline": None,
            "candidate": None,
            "delta": None,
            "ci_low": None,
            "ci_high": None,
            "resamples_used": 0,
        }
        fields.update(values)
        return DeltaEstimate(metric=metric, resamples=resamples, seed=seed, level=float(level), **fields)  # type: ignore[arg-type]

    if n == 0:
        return estimate()
    base_full, defined_full = _metric_rows(metric, y[None, :], base[None, :])
    cand_full, _ = _metric_rows(metric, y[None, :], cand[None, :])
    if not defined_full[0]:
        return estimate()
    baseline, candidate = float(base_full[0]), float(cand_full[0])

    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, min(resamples, samplers.INDEX_CELLS_PER_CHUNK // n))
    deltas: list[np.ndarray] = []
    drawn = 0
    while drawn < resamples:
        rows = min(rows_per_chunk, resamples - drawn)
        index = rng.integers(0, n, size=(rows, n))
        y_s = y[index]
        base_values, defined = _metric_rows(metric, y_s, base[index])
        cand_values, _ = _metric_rows(metric, y_s, cand[index])
        deltas.append((cand_values - base_values)[defined])
        drawn += rows
    all_deltas = np.concatenate(deltas)
    if all_deltas.size == 0:
        return estimate(baseline=baseline, candidate=candidate, delta=candidate - baseline)
    alpha = 1.0 - float(level)
    low, high = np.quantile(all_deltas, [alpha / 2.0, 1.0 - alpha / 2.0])
    return estimate(
        baseline=baseline,
        candidate=candidate,
        delta=candidate - baseline,
        ci_low=float(low),
        ci_high=float(high),
        resamples_used=int(all_deltas.size),
    )
