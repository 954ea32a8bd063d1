"""Safety metrics, paired bootstrap deltas, McNemar's exact test, multiple comparisons and flip sets
(numpy only, no torch; the web process imports this module).

Every safety metric works on the binary decision (see DESIGN.md, "The safety label"): ``y_unsafe``
is the true safety label, ``decision`` the model's unsafe decision and ``unsafe_prob`` its unsafe
probability. Metrics are computed per group: callers pass a boolean ``mask`` (or index the arrays
themselves); a metric that is undefined on a group (e.g. recall without unsafe examples) is None.
The fast multi-metric paired bootstrap lives in ``evaluations.engine.bootstrap``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compression.engine.errors import EngineError

__all__ = [
    "BOOTSTRAP_METRICS",
    "ECE_BINS",
    "MIN_SUBGROUP_N",
    "NLL_EPS",
    "DeltaEstimate",
    "McNemarResult",
    "binary_metrics",
    "calibration_bins",
    "paired_bootstrap_delta",
    "mcnemar_exact",
    "flip_indices",
    "accuracy",
    "unsafe_recall",
    "fnr",
    "benign_fpr",
    "binary_macro_f1",
    "macro_f1",
    "ece",
    "calibration",
    "brier",
    "nll",
    "mean_confidence",
    "subgroup_rates",
    "perturbation_accuracy",
    "consistency",
    "group_metrics",
    "metrics_by_group",
    "runtime_summary",
    "holm",
    "benjamini_hochberg",
]

ECE_BINS = 15
MIN_SUBGROUP_N = 30
# Probabilities are clipped to [NLL_EPS, 1 - NLL_EPS] before the log (a max per-example loss of ~27.6).
NLL_EPS = 1e-12
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
    group: str = "overall"
    # How resamples were drawn: "index" (example indices, exact), "multinomial-cells" (cell counts,
    # exact in distribution) or "multinomial-cells+gaussian" (see evaluations.engine.bootstrap).
    sampler: str = "index"

    @property
    def resamples_dropped(self) -> int:
        """Resamples on which the metric was undefined (excluded from the interval)."""
        return self.resamples - self.resamples_used

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {
            "baseline": self.baseline, "candidate": self.candidate, "delta": self.delta,
            "ci_low": self.ci_low, "ci_high": self.ci_high, "resamples_used": self.resamples_used,
            "resamples_dropped": self.resamples_dropped, "sampler": self.sampler,
        }


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
    ece = _ece_value(correct, confidence, ECE_BINS)
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


# ---------------------------------------------------------------------------------------------------
# Single-model metrics on one group.
# ---------------------------------------------------------------------------------------------------


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: [k/M, (k+1)/M), the last bin closed at 1.0."""
    return np.clip(np.floor(confidence * bins).astype(np.int64), 0, bins - 1)


def _ece_value(correct: np.ndarray, confidence: np.ndarray, bins: int) -> float:
    """ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)| = Σ_m |Σ_{i∈B_m} (correct_i − conf_i)| / n."""
    index = _bin_index(confidence, bins)
    residual = np.bincount(index, weights=correct.astype(np.float64) - confidence, minlength=bins)
    return float(np.abs(residual).sum() / len(correct))


def _check_bins(bins: object) -> int:
    if type(bins) is not int or bins < 1:
        raise EngineError("invalid_parameter", f"bins must be an integer >= 1, got {bins!r}")
    return bins


def _select(mask: object, n: int) -> np.ndarray:
    """A bool mask of length n (all True for None)."""
    if mask is None:
        return np.ones(n, dtype=bool)
    selected = _bool_vector(mask, "mask")
    if len(selected) != n:
        raise EngineError("invalid_parameter", f"mask has length {len(selected)}, expected {n}")
    return selected


def accuracy(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """Share of binary decisions equal to the safety label (None when empty)."""
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    n = _same_length(y_unsafe=y, decision=d)
    return float((y == d).sum() / n) if n else None


def unsafe_recall(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """TP / (TP + FN) over unsafe examples (None without unsafe examples)."""
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    _same_length(y_unsafe=y, decision=d)
    positives = int(y.sum())
    return float((y & d).sum() / positives) if positives else None


def fnr(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """False-negative (missed-harm) rate FN / (TP + FN) = 1 − unsafe_recall (None without unsafe examples)."""
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    _same_length(y_unsafe=y, decision=d)
    positives = int(y.sum())
    return float((y & ~d).sum() / positives) if positives else None


def benign_fpr(y_unsafe: np.ndarray, decision: np.ndarray) -> float | None:
    """FP / (FP + TN) over safe examples (over-flagging; None without safe examples)."""
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    _same_length(y_unsafe=y, decision=d)
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
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    n = _same_length(y_unsafe=y, decision=d)
    if not n:
        return None
    true_count = np.array([(~y).sum(), y.sum()], dtype=np.float64)
    pred_count = np.array([(~d).sum(), d.sum()], dtype=np.float64)
    hits = np.array([(~y & ~d).sum(), (y & d).sum()], dtype=np.float64)
    return _mean_f1(true_count, pred_count, hits)


def _class_vector(values: object, name: str, *, allow_missing: bool) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise EngineError("invalid_parameter", f"{name} must be a one-dimensional integer array")
    array = array.astype(np.int64)
    low = -1 if allow_missing else 0
    if array.size and array.min() < low:
        raise EngineError("invalid_parameter", f"{name} holds values below {low}")
    return array


def macro_f1(true_class: np.ndarray, predicted_class: np.ndarray, n_classes: int | None = None) -> float | None:
    """Macro F1 over the model's classes, on the examples whose label is a model class.

    ``true_class`` holds the class index of each example's label, or −1 when the label is not a class
    of the model (e.g. AdvBench's "harmful"); those examples are ignored. ``predicted_class`` is the
    model's argmax class. Per class F1 = 2·TP / (true + predicted); classes that appear neither in the
    truth nor in the predictions of the kept examples are left out (scikit-learn's default). None when
    no example has a model-class label.
    """
    truth = _class_vector(true_class, "true_class", allow_missing=True)
    pred = _class_vector(predicted_class, "predicted_class", allow_missing=False)
    _same_length(true_class=truth, predicted_class=pred)
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


def ece(y_unsafe: np.ndarray, decision: np.ndarray, unsafe_prob: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error of the binary decision over ``bins`` equal-width confidence bins,
    the confidence being the probability given to the decision taken (None when empty)."""
    table = calibration(y_unsafe, decision, unsafe_prob, bins)
    return table["ece"]  # type: ignore[return-value]


def calibration(
    y_unsafe: np.ndarray, decision: np.ndarray, unsafe_prob: np.ndarray, bins: int = ECE_BINS
) -> dict[str, object]:
    """{"ece": float | None, "bins": per-bin lower/upper/count/accuracy/confidence} for a reliability diagram."""
    bins = _check_bins(bins)
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    p = _probabilities(unsafe_prob, "unsafe_prob")
    n = _same_length(y_unsafe=y, decision=d, unsafe_prob=p)
    confidence = _decision_confidence(d, p)
    correct = y == d
    return {"ece": _ece_value(correct, confidence, bins) if n else None,
            "bins": calibration_bins(correct, confidence, bins)}


def brier(y_unsafe: np.ndarray, unsafe_prob: np.ndarray) -> float | None:
    """Mean squared error of the unsafe probability against the safety label (None when empty)."""
    y, p = _bool_vector(y_unsafe, "y_unsafe"), _probabilities(unsafe_prob, "unsafe_prob")
    n = _same_length(y_unsafe=y, unsafe_prob=p)
    return float(np.mean((p - y.astype(np.float64)) ** 2)) if n else None


def _nll_terms(y: np.ndarray, p: np.ndarray, eps: float) -> np.ndarray:
    clipped = np.clip(p, eps, 1.0 - eps)
    return -np.log(np.where(y, clipped, 1.0 - clipped))


def nll(y_unsafe: np.ndarray, unsafe_prob: np.ndarray, eps: float = NLL_EPS) -> float | None:
    """Binary negative log-likelihood of the true safety label, −mean(log p(y)), with the unsafe
    probability clipped to [eps, 1 − eps] (None when empty)."""
    y, p = _bool_vector(y_unsafe, "y_unsafe"), _probabilities(unsafe_prob, "unsafe_prob")
    n = _same_length(y_unsafe=y, unsafe_prob=p)
    return float(np.mean(_nll_terms(y, p, eps))) if n else None


def mean_confidence(decision: np.ndarray, unsafe_prob: np.ndarray) -> float | None:
    """Mean probability the model gave to the decision it took (None when empty)."""
    d, p = _bool_vector(decision, "decision"), _probabilities(unsafe_prob, "unsafe_prob")
    n = _same_length(decision=d, unsafe_prob=p)
    return float(np.mean(_decision_confidence(d, p))) if n else None


def _subgroup_vector(values: object, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != n:
        raise EngineError("invalid_parameter", f"subgroup must be a one-dimensional array of length {n}")
    return array.astype(str)


def subgroup_rates(
    y_unsafe: np.ndarray,
    decision: np.ndarray,
    subgroup: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    min_subgroup_n: int = MIN_SUBGROUP_N,
) -> dict[str, object]:
    """Per-subgroup FNR and FPR and the gaps between subgroups, within ``mask``.

    ``subgroup`` names each example's subgroup ("" for none, never a subgroup). A subgroup with at
    least ``min_subgroup_n`` examples is eligible; ``fnr_gap`` (``fpr_gap``) is the largest minus the
    smallest FNR (FPR) among eligible subgroups where the rate is defined, None with fewer than two.
    Returns {"subgroups": {name: {n, n_unsafe, n_safe, fnr, fpr, eligible}}, "fnr_gap", "fpr_gap",
    "min_subgroup_n"}, subgroups sorted by name.
    """
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    n = _same_length(y_unsafe=y, decision=d)
    names = _subgroup_vector(subgroup, n)
    selected = _select(mask, n)
    table: dict[str, dict[str, object]] = {}
    for name in sorted(set(names[selected].tolist()) - {""}):
        member = selected & (names == name)
        count = int(member.sum())
        table[name] = {
            "n": count, "n_unsafe": int((member & y).sum()), "n_safe": int((member & ~y).sum()),
            "fnr": fnr(y[member], d[member]), "fpr": benign_fpr(y[member], d[member]),
            "eligible": count >= min_subgroup_n,
        }

    def gap(key: str) -> float | None:
        rates = [float(row[key]) for row in table.values() if row["eligible"] and row[key] is not None]  # type: ignore[arg-type]
        return max(rates) - min(rates) if len(rates) >= 2 else None

    return {"subgroups": table, "fnr_gap": gap("fnr"), "fpr_gap": gap("fpr"), "min_subgroup_n": min_subgroup_n}


def _source_vector(values: object, n: int) -> np.ndarray:
    source = np.asarray(values)
    if source.ndim != 1 or len(source) != n or (source.size and not np.issubdtype(source.dtype, np.integer)):
        raise EngineError("invalid_parameter", f"source_index must be a one-dimensional integer array of length {n}")
    source = source.astype(np.int64)
    if source.size and (source.min() < -1 or source.max() >= n or (source == np.arange(n)).any()):
        raise EngineError("invalid_parameter", "source_index must hold -1 or the index of another example")
    return source


def perturbation_accuracy(
    y_unsafe: np.ndarray, decision: np.ndarray, source_index: np.ndarray, mask: np.ndarray | None = None
) -> float | None:
    """Accuracy over the perturbed examples (source_index >= 0) within ``mask`` (None without any)."""
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    n = _same_length(y_unsafe=y, decision=d)
    perturbed = (_source_vector(source_index, n) >= 0) & _select(mask, n)
    return float((y == d)[perturbed].mean()) if perturbed.any() else None


def consistency(decision: np.ndarray, source_index: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Share of the perturbed examples within ``mask`` whose decision equals the decision on their
    source example (the source may lie outside the mask); None without perturbed examples."""
    d = _bool_vector(decision, "decision")
    source = _source_vector(source_index, len(d))
    perturbed = (source >= 0) & _select(mask, len(d))
    if not perturbed.any():
        return None
    return float((d[perturbed] == d[source[perturbed]]).mean())


def group_metrics(
    y_unsafe: np.ndarray,
    decision: np.ndarray,
    unsafe_prob: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    true_class: np.ndarray | None = None,
    predicted_class: np.ndarray | None = None,
    n_classes: int | None = None,
    source_index: np.ndarray | None = None,
    subgroup: np.ndarray | None = None,
    min_subgroup_n: int = MIN_SUBGROUP_N,
    bins: int = ECE_BINS,
) -> dict[str, object]:
    """Every metric of one model on the examples selected by ``mask``.

    Always: n, n_unsafe, accuracy, unsafe_recall, fnr, benign_fpr, binary_macro_f1, brier, nll,
    mean_confidence, ece and reliability (per-bin table). With true_class and predicted_class:
    macro_f1. With source_index (full-length; sources may lie outside the mask):
    perturbation_accuracy, consistency, n_perturbed. With subgroup: fnr_gap, fpr_gap, subgroups.
    """
    y, d = _bool_vector(y_unsafe, "y_unsafe"), _bool_vector(decision, "decision")
    p = _probabilities(unsafe_prob, "unsafe_prob")
    n = _same_length(y_unsafe=y, decision=d, unsafe_prob=p)
    selected = _select(mask, n)
    ys, ds, ps = y[selected], d[selected], p[selected]
    table = calibration(ys, ds, ps, bins)
    result: dict[str, object] = {
        "n": int(selected.sum()),
        "n_unsafe": int(ys.sum()),
        "accuracy": accuracy(ys, ds),
        "unsafe_recall": unsafe_recall(ys, ds),
        "fnr": fnr(ys, ds),
        "benign_fpr": benign_fpr(ys, ds),
        "binary_macro_f1": binary_macro_f1(ys, ds),
        "brier": brier(ys, ps),
        "nll": nll(ys, ps),
        "mean_confidence": mean_confidence(ds, ps),
        "ece": table["ece"],
        "reliability": table["bins"],
    }
    if true_class is not None and predicted_class is not None:
        truth = _class_vector(true_class, "true_class", allow_missing=True)
        pred = _class_vector(predicted_class, "predicted_class", allow_missing=False)
        _same_length(y_unsafe=y, true_class=truth, predicted_class=pred)
        result["macro_f1"] = macro_f1(truth[selected], pred[selected], n_classes)
    if source_index is not None:
        source = _source_vector(source_index, n)
        result["n_perturbed"] = int(((source >= 0) & selected).sum())
        result["perturbation_accuracy"] = perturbation_accuracy(y, d, source, selected)
        result["consistency"] = consistency(d, source, selected)
    if subgroup is not None:
        rates = subgroup_rates(y, d, subgroup, mask=selected, min_subgroup_n=min_subgroup_n)
        result["fnr_gap"], result["fpr_gap"], result["subgroups"] = rates["fnr_gap"], rates["fpr_gap"], rates["subgroups"]
    return result


def metrics_by_group(
    y_unsafe: np.ndarray, decision: np.ndarray, unsafe_prob: np.ndarray, masks: dict[str, np.ndarray], **options: object
) -> dict[str, dict[str, object]]:
    """``group_metrics`` for each named mask (e.g. overall, slice:edge, subgroup:women), in mask order."""
    return {name: group_metrics(y_unsafe, decision, unsafe_prob, mask=mask, **options) for name, mask in masks.items()}  # type: ignore[arg-type]


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


# ---------------------------------------------------------------------------------------------------
# Multiple comparisons.
# ---------------------------------------------------------------------------------------------------


def _pvalue_vector(pvalues: object) -> np.ndarray:
    array = np.asarray(list(pvalues) if not isinstance(pvalues, np.ndarray) else pvalues, dtype=np.float64)  # type: ignore[call-overload]
    if array.ndim != 1:
        raise EngineError("invalid_parameter", "p-values must be a flat sequence")
    if array.size and (not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0):
        raise EngineError("invalid_parameter", "p-values must lie in [0, 1]")
    return array


def holm(pvalues: object) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in input order.

    With p sorted ascending p_(1) <= ... <= p_(m): adj_(i) = max_{j<=i} min(1, (m − j + 1)·p_(j)).
    Reject at level α exactly when adj <= α. Ties keep input order (stable sort).
    """
    p = _pvalue_vector(pvalues)
    m = p.size
    if not m:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def benjamini_hochberg(pvalues: object) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order.

    With p sorted ascending: adj_(i) = min_{j>=i} min(1, m·p_(j) / j).
    """
    p = _pvalue_vector(pvalues)
    m = p.size
    if not m:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]
