"""Binary safety metrics, paired bootstrap deltas, McNemar's exact test and flip sets (numpy only, no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compression.engine.errors import EngineError

__all__ = [
    "BOOTSTRAP_METRICS",
    "DeltaEstimate",
    "McNemarResult",
    "binary_metrics",
    "calibration_bins",
    "paired_bootstrap_delta",
    "mcnemar_exact",
    "flip_indices",
]

ECE_BINS = 15
BOOTSTRAP_METRICS: tuple[str, ...] = ("accuracy", "unsafe_recall", "benign_fpr")
# Upper bound on index-matrix cells drawn at once (int64: 8 bytes each), to bound memory.
_BOOTSTRAP_CELLS_PER_CHUNK = 4_000_000
# Above this many discordant pairs the exact integer sum gets slow; switch to log-space.
_MCNEMAR_EXACT_INT_LIMIT = 2000


@dataclass(frozen=True)
class DeltaEstimate:
    """candidate − baseline for one metric with a paired-bootstrap percentile interval.

    Values are None when the metric is undefined on the full data (e.g. recall with no unsafe
    examples). ``resamples_used`` excludes resamples on which the metric was undefined.
    """

    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    resamples: int
    resamples_used: int
    seed: int
    level: float
    method: str = "percentile"


@dataclass(frozen=True)
class McNemarResult:
    """Discordant pairs (b: baseline right & candidate wrong, c: the reverse) and the exact two-sided p."""

    b: int
    c: int
    p_value: float


def _bool_vector(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D bool array; raise invalid_parameter for other shapes or non-0/1 values."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise EngineError("invalid_parameter", f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype != np.bool_:
        if array.size and not np.isin(array, (0, 1)).all():
            raise EngineError("invalid_parameter", f"{name} must hold booleans (or 0/1)")
        array = array.astype(bool)
    return array


def _same_length(**arrays: np.ndarray) -> int:
    """Return the common length of the arrays; raise invalid_parameter when they differ."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise EngineError("invalid_parameter", f"arrays differ in length: {lengths}")
    return next(iter(lengths.values()))


def _decision_confidence(decision: np.ndarray, unsafe_prob: np.ndarray) -> np.ndarray:
    """Probability the model gave to the decision it took: p for unsafe, 1 − p for safe."""
    return np.where(decision, unsafe_prob, 1.0 - unsafe_prob)


def _probabilities(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array of probabilities in [0, 1]."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise EngineError("invalid_parameter", f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and (not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0):
        raise EngineError("invalid_parameter", f"{name} must hold probabilities in [0, 1]")
    return array


def calibration_bins(
    correct: np.ndarray, confidence: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float | int | None]]:
    """Per-bin reliability data over equal-width bins [k/M, (k+1)/M) (the last bin includes 1.0):
    lower, upper, count, accuracy and mean confidence (None for an empty bin)."""
    correct_b = _bool_vector(correct, "correct")
    conf = _probabilities(confidence, "confidence")
    _same_length(correct=correct_b, confidence=conf)
    index = np.clip(np.floor(conf * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    hits = np.bincount(index, weights=correct_b.astype(np.float64), minlength=bins)
    conf_sums = np.bincount(index, weights=conf, minlength=bins)
    table: list[dict[str, float | int | None]] = []
    for k in range(bins):
        count = int(counts[k])
        table.append(
            {
                "lower": k / bins,
                "upper": (k + 1) / bins,
                "count": count,
                "accuracy": float(hits[k] / count) if count else None,
                "confidence": float(conf_sums[k] / count) if count else None,
            }
        )
    return table


def binary_metrics(
    y_unsafe: np.ndarray, decision: np.ndarray, unsafe_prob: np.ndarray
) -> dict[str, float | int | None]:
    """Return n, accuracy, unsafe_recall (None without unsafe examples), benign_fpr (None without safe
    examples), brier (on unsafe_prob), mean_confidence and ece (15 equal-width bins), both on the
    confidence of the binary decision. Every value but n is None when n == 0."""
    y = _bool_vector(y_unsafe, "y_unsafe")
    d = _bool_vector(decision, "decision")
    p = _probabilities(unsafe_prob, "unsafe_prob")
    n = _same_length(y_unsafe=y, decision=d, unsafe_prob=p)
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
    confidence = _decision_confidence(d, p)
    ece = 0.0
    for row in calibration_bins(correct, confidence, ECE_BINS):
        if row["count"]:
            ece += int(row["count"]) / n * abs(float(row["accuracy"]) - float(row["confidence"]))  # type: ignore[arg-type]
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
    y = _bool_vector(y_unsafe, "y_unsafe")
    base = _bool_vector(dec_base, "dec_base")
    cand = _bool_vector(dec_cand, "dec_cand")
    n = _same_length(y_unsafe=y, dec_base=base, dec_cand=cand)

    def estimate(**values: float | int | None) -> DeltaEstimate:
        fields: dict[str, float | int | None] = {
            "baseline": None, "candidate": None, "delta": None, "ci_low": None, "ci_high": None, "resamples_used": 0,
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
    rows_per_chunk = max(1, min(resamples, _BOOTSTRAP_CELLS_PER_CHUNK // n))
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


def _binomial_two_sided_half(b: int, c: int) -> float:
    """Exact two-sided p of min(b, c) under Binomial(b + c, 1/2), capped at 1."""
    m = b + c
    k = min(b, c)
    if m <= _MCNEMAR_EXACT_INT_LIMIT:
        tail = sum(math.comb(m, i) for i in range(k + 1))
        # Python's int / int is correctly rounded even for huge operands.
        return min(1.0, 2 * tail / 2**m)
    log_terms = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) for i in range(k + 1)]
    top = max(log_terms)
    log_tail = top + math.log(math.fsum(math.exp(term - top) for term in log_terms)) - m * math.log(2.0)
    return min(1.0, math.exp(math.log(2.0) + log_tail))


def mcnemar_exact(base_correct: np.ndarray, cand_correct: np.ndarray) -> McNemarResult:
    """McNemar's exact test on paired correctness: b = baseline right & candidate wrong, c = the
    reverse, p = two-sided exact binomial(b + c, 1/2) p-value (1.0 when b + c == 0)."""
    base = _bool_vector(base_correct, "base_correct")
    cand = _bool_vector(cand_correct, "cand_correct")
    _same_length(base_correct=base, cand_correct=cand)
    b = int((base & ~cand).sum())
    c = int((~base & cand).sum())
    p_value = 1.0 if b + c == 0 else _binomial_two_sided_half(b, c)
    return McNemarResult(b=b, c=c, p_value=p_value)


def flip_indices(dec_base: np.ndarray, dec_cand: np.ndarray) -> np.ndarray:
    """Return the sorted int64 indices where the candidate's decision differs from the baseline's."""
    base = _bool_vector(dec_base, "dec_base")
    cand = _bool_vector(dec_cand, "dec_cand")
    _same_length(dec_base=base, dec_cand=cand)
    return np.flatnonzero(base != cand).astype(np.int64)
