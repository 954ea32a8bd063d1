"""Calibration of the binary decision: expected calibration error over equal-width confidence bins
and the per-bin reliability table (the confidence being the probability given to the decision taken)."""

from __future__ import annotations

import numpy as np

from .inputs import bool_vector, check_bins, decision_confidence, probabilities, same_length

__all__ = ["ECE_BINS", "bin_index", "calibration", "calibration_bins", "ece", "ece_value"]

ECE_BINS = 15


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: [k/M, (k+1)/M), the last bin closed at 1.0."""
    return np.clip(np.floor(confidence * bins).astype(np.int64), 0, bins - 1)


def ece_value(correct: np.ndarray, confidence: np.ndarray, bins: int) -> float:
    """ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)| = Σ_m |Σ_{i∈B_m} (correct_i − conf_i)| / n."""
    index = bin_index(confidence, bins)
    residual = np.bincount(index, weights=correct.astype(np.float64) - confidence, minlength=bins)
    return float(np.abs(residual).sum() / len(correct))


def calibration_bins(
    correct: np.ndarray, confidence: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float | int | None]]:
    """Per-bin reliability data over equal-width bins [k/M, (k+1)/M) (the last bin includes 1.0):
    lower, upper, count, accuracy and mean confidence (None for an empty bin)."""
    correct_b = bool_vector(correct, "correct")
    conf = probabilities(confidence, "confidence")
    same_length(correct=correct_b, confidence=conf)
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


def ece(y_unsafe: np.ndarray, decision: np.ndarray, unsafe_prob: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error of the binary decision over ``bins`` equal-width confidence bins,
    the confidence being the probability given to the decision taken (None when empty)."""
    table = calibration(y_unsafe, decision, unsafe_prob, bins)
    return table["ece"]  # type: ignore[return-value]


def calibration(
    y_unsafe: np.ndarray, decision: np.ndarray, unsafe_prob: np.ndarray, bins: int = ECE_BINS
) -> dict[str, object]:
    """{"ece": float | None, "bins": per-bin lower/upper/count/accuracy/confidence} for a reliability diagram."""
    bins = check_bins(bins)
    y, d = bool_vector(y_unsafe, "y_unsafe"), bool_vector(decision, "decision")
    p = probabilities(unsafe_prob, "unsafe_prob")
    n = same_length(y_unsafe=y, decision=d, unsafe_prob=p)
    confidence = decision_confidence(d, p)
    correct = y == d
    return {
        "ece": ece_value(correct, confidence, bins) if n else None,
        "bins": calibration_bins(correct, confidence, bins),
    }
