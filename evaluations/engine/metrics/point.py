"""Point metrics of one model on one group: counts of the binary decision (accuracy, unsafe recall,
FNR, benign FPR, binary and multi-class macro-F1) and probability scores (Brier, NLL, mean confidence).
Each returns None where the metric is undefined (e.g. recall without unsafe examples)."""

from __future__ import annotations

import numpy as np

from compression.engine.errors import EngineError

from .inputs import bool_vector, class_vector, decision_confidence, probabilities, same_length

__all__ = [
    "NLL_EPS",
    "accuracy",
    "benign_fpr",
    "binary_macro_f1",
    "brier",
    "fnr",
    "macro_f1",
    "mean_confidence",
    "nll",
    "nll_terms",
    "unsafe_recall",
]

# Probabilities are clipped to [NLL_EPS, 1 - NLL_EPS] before the log (a max per-example loss of ~27.6).
NLL_EPS = 1e-12


def accuracy(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """Share of binary decisions equal to the safety label (None when empty)."""
    y, d = bool_vector(y_unsafe, "y_unsafe"), bool_vector(decision, "decision")
    n = same_length(y_unsafe=y, decision=d)
    return float((y == d).sum() / n) if n else None


def unsafe_recall(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """TP / (TP + FN) over unsafe examples (None without unsafe examples)."""
    y, d = bool_vector(y_unsafe, "y_unsafe"), bool_vector(decision, "decision")
    same_length(y_unsafe=y, decision=d)
    positives = int(y.sum())
    return float((y & d).sum() / positives) if positives else None


def fnr(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """False-negative (missed-harm) rate FN / (TP + FN) = 1 − unsafe_recall (None without unsafe examples)."""
    y, d = bool_vector(y_unsafe, "y_unsafe"), bool_vector(decision, "decision")
    same_length(y_unsafe=y, decision=d)
    positives = int(y.sum())
    return float((y & ~d).sum() / positives) if positives else None


def benign_fpr(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """FP / (FP + TN) over safe examples (over-flagging; None without safe examples)."""
    y, d = bool_vector(y_unsafe, "y_unsafe"), bool_vector(decision, "decision")
    same_length(y_unsafe=y, decision=d)
    negatives = int((~y).sum())
    return float((~y & d).sum() / negatives) if negatives else None


def _mean_f1(true_count: np.ndarray, pred_count: np.ndarray, hits: np.ndarray) -> float:
    """Macro F1 = mean over classes present in truth or predictions of 2·TP / (true + predicted)."""
    denominator = true_count + pred_count
    present = denominator > 0
    return float(np.mean(2.0 * hits[present] / denominator[present]))


def binary_macro_f1(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """Macro F1 of the binary decision over the classes safe and unsafe (the binary analogue of
    macro_f1; a class absent from both truth and decisions is left out, as scikit-learn does)."""
    y, d = bool_vector(y_unsafe, "y_unsafe"), bool_vector(decision, "decision")
    n = same_length(y_unsafe=y, decision=d)
    if not n:
        return None
    true_count = np.array([(~y).sum(), y.sum()], dtype=np.float64)
    pred_count = np.array([(~d).sum(), d.sum()], dtype=np.float64)
    hits = np.array([(~y & ~d).sum(), (y & d).sum()], dtype=np.float64)
    return _mean_f1(true_count, pred_count, hits)


def macro_f1(true_class: np.ndarray, predicted_class: np.ndarray, n_classes: int | None = None) -> float | None:
    """Macro F1 over the model's classes, on the examples whose label is a model class.

    ``true_class`` holds the class index of each example's label, or −1 when the label is not a class
    of the model (e.g. AdvBench's "harmful"); those examples are ignored. ``predicted_class`` is the
    model's argmax class. Per class F1 = 2·TP / (true + predicted); classes that appear neither in the
    truth nor in the predictions of the kept examples are left out (scikit-learn's default). None when
    no example has a model-class label.
    """
    truth = class_vector(true_class, "true_class", allow_missing=True)
    pred = class_vector(predicted_class, "predicted_class", allow_missing=False)
    same_length(true_class=truth, predicted_class=pred)
    keep = truth >= 0
    if not keep.any():
        return None
    truth, pred = truth[keep], pred[keep]
    classes = int(n_classes) if n_classes is not None else int(max(truth.max(), pred.max())) + 1
    if truth.max() >= classes or pred.max() >= classes:
        raise EngineError("invalid_parameter", f"class indices must be below n_classes={classes}")
    true_count = np.bincount(truth, minlength=classes).astype(np.float64)
    pred_count = np.bincount(pred, minlength=classes).astype(np.float64)
    hits = np.bincount(truth[truth == pred], minlength=classes).astype(np.float64)
    return _mean_f1(true_count, pred_count, hits)


def brier(y_unsafe: np.ndarray, unsafe_prob: np.ndarray) -> float | None:
    """Mean squared error of the unsafe probability against the safety label (None when empty)."""
    y, p = bool_vector(y_unsafe, "y_unsafe"), probabilities(unsafe_prob, "unsafe_prob")
    n = same_length(y_unsafe=y, unsafe_prob=p)
    return float(np.mean((p - y.astype(np.float64)) ** 2)) if n else None


def nll_terms(y: np.ndarray, p: np.ndarray, eps: float) -> np.ndarray:
    clipped = np.clip(p, eps, 1.0 - eps)
    return -np.log(np.where(y, clipped, 1.0 - clipped))


def nll(y_unsafe: np.ndarray, unsafe_prob: np.ndarray, eps: float = NLL_EPS) -> float | None:
    """Binary negative log-likelihood of the true safety label, −mean(log p(y)), with the unsafe
    probability clipped to [eps, 1 − eps] (None when empty)."""
    y, p = bool_vector(y_unsafe, "y_unsafe"), probabilities(unsafe_prob, "unsafe_prob")
    n = same_length(y_unsafe=y, unsafe_prob=p)
    return float(np.mean(nll_terms(y, p, eps))) if n else None


def mean_confidence(decision: np.ndarray, unsafe_prob: np.ndarray) -> float | None:
    """Mean probability the model gave to the decision it took (None when empty)."""
    d, p = bool_vector(decision, "decision"), probabilities(unsafe_prob, "unsafe_prob")
    n = same_length(decision=d, unsafe_prob=p)
    return float(np.mean(decision_confidence(d, p))) if n else None
