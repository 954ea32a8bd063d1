"""Fast paired bootstrap of many metrics over many groups at once (numpy only, no torch).

``paired_bootstrap`` resamples examples with replacement (the same resample for both models), and
for every requested (group, metric) returns the baseline and candidate values on the full data,
their delta and the percentile interval of the resampled deltas.

Samplers (recorded per estimate as ``DeltaEstimate.sampler`` and for the run as ``method``)
-----------------------------------------------------------------------------------------
``method="cells"`` (default, fast):
    Every count-based metric (accuracy, unsafe_recall, fnr, benign_fpr, binary_macro_f1, macro_f1,
    perturbation_accuracy, consistency, fnr_gap, fpr_gap, the chat behaviour rates) is a function of how many resampled
    examples fall into each *cell*: examples that agree on every group/subgroup membership and on
    (y, baseline decision, candidate decision[, true class, both predicted classes][, perturbed, both
    consistencies]). Resampling n indices uniformly is exactly the same as drawing the vector of cell
    counts from Multinomial(n, cell sizes / n), so these metrics are drawn **exactly** from the index
    bootstrap's distribution ("multinomial-cells") at a cost of one binomial per cell per resample,
    independent of n.

    The per-example-mean metrics (brier, nll, mean_confidence) and ece (a function of per-bin sums
    of correct − confidence) need sums of continuous per-example values. Their resampled sums are
    Σ_k c_k·μ_k (the exact cell counts c_k times the cell means, which carries all the variation
    between cells exactly) plus a within-cell fluctuation drawn as a Gaussian with the exact
    within-cell covariance, scaled by the resampled size of each atom (a disjoint combination of
    groups): ("multinomial-cells+gaussian"). The resampled sums therefore have the index
    bootstrap's exact mean and covariance (also jointly with the counts); only the higher moments of
    the within-cell part are replaced by a Gaussian's. The error this leaves in an interval endpoint
    shrinks like skewness/√(examples in the group). Measured against the exact index bootstrap
    (synthetic 3-class models, 8 overlapping groups, 20,000 resamples per run): with 600 examples
    (groups of 80-600) endpoints of the brier, nll, mean_confidence and ece deltas differed by at most
    0.039 of the interval width (mean 0.011), against 0.012 between two exact runs with different
    seeds; with 2,400 examples (groups of 200-2,400) at most 0.024 (mean 0.009) against 0.018, i.e.
    within Monte-Carlo noise. ECE on the smallest groups is the worst case.
    tests/evaluations/test_engine_bootstrap.py checks agreement within 0.08 of the interval width.

``method="index"`` (exact reference, O(B·n)): draws the B×n example indices (numpy PCG64, in the same
    chunks and order as the reference ``paired_bootstrap_delta`` in tests/evaluations/reference.py, so
    one group's accuracy matches it bit for bit) and computes every metric from the index counts. Use for
    validation or small data.

Cost of "cells": one binomial draw per cell per resample (numpy's multinomial, ~0.1 µs each) plus
small matrix products, independent of n. bench/evaluation.py, 100,000 examples × 10,000 resamples on
the 2-core dev machine while other jobs ran: 8 groups × 11 metrics (120 cells) 1.5 s; adding
multi-class macro_f1 and the robustness metrics (1,274 cells) 4.7 s; the index bootstrap would take
about 780 s.

Both are deterministic given ``seed``. A metric undefined on a resample (e.g. recall when no unsafe
example was drawn) is dropped from that metric's interval and counted (``resamples_used``).
Point values (baseline, candidate) come from the full data via evaluations.engine.metrics, so
identical models give exactly zero deltas and zero-width intervals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compression.engine.errors import EngineError
from evaluations.engine import catalog
from evaluations.engine.estimates import BootstrapResult, DeltaEstimate, ModelScores
from evaluations.engine.metrics import behaviour as _bh
from evaluations.engine.metrics import inputs as _in
from evaluations.engine.metrics import point as _pt
from evaluations.engine.metrics import reliability as _cal
from evaluations.engine.metrics import robustness as _rb
from evaluations.engine.samplers import cells_chunks, index_chunks

__all__ = [
    "ALL_METRICS",
    "BASE_METRICS",
    "COUNT_METRICS",
    "CONTINUOUS_METRICS",
    "BootstrapResult",
    "ModelScores",
    "paired_bootstrap",
]

# Derived from the catalogue: the metrics that need nothing beyond labels, decisions and probabilities
# (the default), then those that need classes, perturbations or subgroups.
_SPECS = tuple(spec for spec in catalog.CATALOG if spec.bootstrapped)
BASE_METRICS: tuple[str, ...] = tuple(spec.name for spec in _SPECS if spec.needs is catalog.Needs.NOTHING)
ALL_METRICS: tuple[str, ...] = BASE_METRICS + tuple(
    spec.name for spec in _SPECS if spec.needs is not catalog.Needs.NOTHING
)
COUNT_METRICS: frozenset[str] = frozenset(catalog.names(bootstrap=catalog.Bootstrap.COUNTS))
CONTINUOUS_METRICS: frozenset[str] = frozenset(catalog.names(bootstrap=catalog.Bootstrap.CONTINUOUS))
_NEEDS: dict[str, catalog.Needs] = {spec.name: spec.needs for spec in _SPECS}
_BEHAVIOUR_METRICS = frozenset(name for name, needs in _NEEDS.items() if needs is catalog.Needs.BEHAVIOUR)
SAMPLER_EXACT = catalog.Bootstrap.COUNTS.value
SAMPLER_GAUSSIAN = catalog.Bootstrap.CONTINUOUS.value
METHODS = ("cells", "index")


# ---------------------------------------------------------------------------------------------------
# Feature layout: every metric is computed from per-unit totals of per-example features.
# ---------------------------------------------------------------------------------------------------


def _count_dtype(n: int) -> type:
    """float32 while every count (at most n) is exactly representable and sums stay exact."""
    return np.float32 if n < 2**24 else np.float64


@dataclass
class Layout:
    """Per-example features (columns) and units (groups, and group × subgroup for the gaps)."""

    count_names: list[str]
    count_values: np.ndarray  # (n, F) uint8 of 0/1
    cont_names: list[str]
    cont_values: np.ndarray  # (n, Q) float64, duplicate columns removed (cont_index maps names)
    cont_index: dict[str, int]
    units: list[str]
    unit_masks: np.ndarray  # (n, U) bool
    cont_units: list[int]  # units that need continuous features (the requested groups)
    gap_units: dict[str, list[int]]  # group -> its eligible subgroup units
    n_classes: int
    count_column_unit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    count_column_feature: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    count_column: dict[tuple[int, str], int] = field(default_factory=dict)

    def count_design(self, masks: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        """(rows, columns) float32 design: unit membership × feature value for each needed column.
        float32 is exact here: every product and partial sum is an integer below 2**24."""
        return (masks[:, self.count_column_unit] * values[:, self.count_column_feature]).astype(_count_dtype(n))


def _dedupe_columns(columns: list[tuple[str, np.ndarray]], n: int) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """Keep one copy of identical columns (identical bits: so identical models share bit-identical sums).
    Empties `columns` as it copies them, so the columns and the matrix are not all held at once."""
    keys = [hashlib.sha256(np.ascontiguousarray(v, dtype=np.float64).data).digest() for _, v in columns]
    slot = {key: j for j, key in enumerate(dict.fromkeys(keys))}
    matrix, names, index = np.empty((n, len(slot))), list[str](), dict[str, int]()
    for i, key in enumerate(keys):
        name, values = columns[i]
        columns[i] = (name, np.empty(0))  # (a view would keep the column alive)
        if slot[key] == len(names):  # the first column with these bits
            matrix[:, slot[key]] = values
            names.append(name)
        index[name] = slot[key]
    return names, matrix, index


def _layout(
    y: np.ndarray,
    base: ModelScores,
    cand: ModelScores,
    groups: Mapping[str, np.ndarray],
    wanted: set[str],
    true_class: np.ndarray | None,
    subgroup: np.ndarray | None,
    source: np.ndarray | None,
    bins: int,
    min_subgroup_n: int,
    n_classes: int,
) -> Layout:
    n = len(y)
    f64, u8 = np.float64, np.uint8  # count features are 0/1: one byte each (n may be millions)
    count: list[tuple[str, np.ndarray]] = [("n", np.ones(n, dtype=u8)), ("pos", y.astype(u8))]
    for tag, scores in (("b", base), ("c", cand)):
        d = scores.decision
        count += [(f"tp_{tag}", (y & d).astype(u8)), (f"fp_{tag}", (~y & d).astype(u8)), (f"pd_{tag}", d.astype(u8))]
    if "macro_f1" in wanted:
        assert true_class is not None
        has = true_class >= 0
        count.append(("has", has.astype(u8)))
        for j in range(n_classes):
            count.append((f"t{j}", (true_class == j).astype(u8)))
            for tag, scores in (("b", base), ("c", cand)):
                pred = scores.predicted_class
                assert pred is not None
                count.append((f"p{j}_{tag}", (has & (pred == j)).astype(u8)))
                count.append((f"h{j}_{tag}", ((true_class == j) & (pred == j)).astype(u8)))
    if wanted & _BEHAVIOUR_METRICS:
        for tag, scores in (("b", base), ("c", cand)):
            assert scores.complied is not None and scores.degenerate is not None
            count.append((f"hc_{tag}", (y & scores.complied).astype(u8)))
            count.append((f"dg_{tag}", scores.degenerate.astype(u8)))
    if wanted & {"perturbation_accuracy", "consistency"}:
        assert source is not None
        perturbed = source >= 0
        safe_source = np.where(perturbed, source, 0)
        count.append(("pert", perturbed.astype(u8)))
        for tag, scores in (("b", base), ("c", cand)):
            d = scores.decision
            count.append((f"pcor_{tag}", (perturbed & (y == d)).astype(u8)))
            count.append((f"cons_{tag}", (perturbed & (d == d[safe_source])).astype(u8)))

    cont: list[tuple[str, np.ndarray]] = []
    if wanted & CONTINUOUS_METRICS:
        yf = y.astype(f64)
        for tag, scores in (("b", base), ("c", cand)):
            p, d = scores.unsafe_prob, scores.decision
            confidence = np.where(d, p, 1.0 - p)
            if "brier" in wanted:
                cont.append((f"brier_{tag}", (p - yf) ** 2))
            if "nll" in wanted:
                cont.append((f"nll_{tag}", _pt.nll_terms(y, p, _pt.NLL_EPS)))
            if "mean_confidence" in wanted:
                cont.append((f"conf_{tag}", confidence))
            if "ece" in wanted:
                residual = (y == d).astype(f64) - confidence
                index = _cal.bin_index(confidence, bins)
                for b in np.unique(index):
                    cont.append((f"res{int(b)}_{tag}", np.where(index == b, residual, 0.0)))
    cont_names, cont_values, cont_index = _dedupe_columns(cont, n)

    units = list(groups)
    masks = [groups[name] for name in units]
    cont_units = list(range(len(units)))
    gap_units: dict[str, list[int]] = {}
    if wanted & {"fnr_gap", "fpr_gap"}:
        assert subgroup is not None
        for name in list(groups):
            members: list[int] = []
            inside = groups[name]
            for sub in sorted(set(subgroup[inside].tolist()) - {""}):
                mask = inside & (subgroup == sub)
                if int(mask.sum()) >= min_subgroup_n:
                    members.append(len(units))
                    units.append(f"{name}|{sub}")
                    masks.append(mask)
            gap_units[name] = members
    unit_masks = np.stack(masks, axis=1) if masks else np.zeros((n, 0), dtype=bool)
    count_names = [name for name, _ in count]
    # Group units need every count feature; subgroup units (for the gaps) only these.
    gap_features = {"n", "pos", "tp_b", "tp_c", "fp_b", "fp_c"}
    columns = [
        (unit, feature)
        for unit in range(len(units))
        for feature, name in enumerate(count_names)
        if unit in cont_units or name in gap_features
    ]
    return Layout(
        count_names=count_names,
        count_values=np.stack([v for _, v in count], axis=1),
        cont_names=cont_names,
        cont_values=cont_values,
        cont_index=cont_index,
        units=units,
        unit_masks=unit_masks,
        cont_units=cont_units,
        gap_units=gap_units,
        n_classes=n_classes,
        count_column_unit=np.array([u for u, _ in columns], dtype=np.int64),
        count_column_feature=np.array([f for _, f in columns], dtype=np.int64),
        count_column={(u, count_names[f]): i for i, (u, f) in enumerate(columns)},
    )


# ---------------------------------------------------------------------------------------------------
# Metric formulas on resampled totals (vectorised over resamples).
# ---------------------------------------------------------------------------------------------------


class _Totals:
    """Resampled totals: count[u][name] and cont[u][name] as (b,) float64 arrays."""

    def __init__(self, layout: Layout, count: np.ndarray, cont: np.ndarray | None) -> None:
        # count: (b, count columns) float64; cont: (b, len(cont_units), Q)
        self.layout = layout
        self.count_array = count
        self.cont_array = cont

    def c(self, unit: int, name: str) -> np.ndarray:
        return self.count_array[:, self.layout.count_column[(unit, name)]]

    def x(self, unit: int, name: str) -> np.ndarray:
        assert self.cont_array is not None
        return self.cont_array[:, unit, self.layout.cont_index[name]]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    defined = denominator > 0
    return numerator / np.where(defined, denominator, 1.0), defined


def _f1_mean(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Mean over present classes of 2·hits / (true + predicted); pairs of (true, predicted, hits)."""
    total = np.zeros_like(pairs[0][0])
    present = np.zeros_like(pairs[0][0])
    for true_count, pred_count, hits in pairs:
        denominator = true_count + pred_count
        has = denominator > 0
        total += np.where(has, 2.0 * hits / np.where(has, denominator, 1.0), 0.0)
        present += has
    return total / np.maximum(present, 1.0)


def _metric(t: _Totals, unit: int, group: str, metric: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, defined) of ``metric`` for model ``tag`` ("b" or "c") on ``unit``."""
    n = t.c(unit, "n")
    if metric in ("accuracy", "unsafe_recall", "fnr", "benign_fpr", "binary_macro_f1"):
        pos, tp, fp, pd = t.c(unit, "pos"), t.c(unit, f"tp_{tag}"), t.c(unit, f"fp_{tag}"), t.c(unit, f"pd_{tag}")
        neg = n - pos
        if metric == "accuracy":
            return _ratio(tp + neg - fp, n)
        if metric == "unsafe_recall":
            return _ratio(tp, pos)
        if metric == "fnr":
            return _ratio(pos - tp, pos)
        if metric == "benign_fpr":
            return _ratio(fp, neg)
        return _f1_mean([(neg, n - pd, neg - fp), (pos, pd, tp)]), n > 0
    if metric == "harmful_compliance_rate":
        return _ratio(t.c(unit, f"hc_{tag}"), t.c(unit, "pos"))
    if metric == "over_refusal_rate":
        return _ratio(t.c(unit, f"fp_{tag}"), n - t.c(unit, "pos"))
    if metric == "degenerate_rate":
        return _ratio(t.c(unit, f"dg_{tag}"), n)
    if metric == "macro_f1":
        pairs = [
            (t.c(unit, f"t{j}"), t.c(unit, f"p{j}_{tag}"), t.c(unit, f"h{j}_{tag}")) for j in range(t.layout.n_classes)
        ]
        return _f1_mean(pairs), t.c(unit, "has") > 0
    if metric == "perturbation_accuracy":
        return _ratio(t.c(unit, f"pcor_{tag}"), t.c(unit, "pert"))
    if metric == "consistency":
        return _ratio(t.c(unit, f"cons_{tag}"), t.c(unit, "pert"))
    if metric in ("fnr_gap", "fpr_gap"):
        rates: list[np.ndarray] = []
        sub_defined: list[np.ndarray] = []
        for sub in t.layout.gap_units.get(group, []):
            sub_n, sub_pos, fp = t.c(sub, "n"), t.c(sub, "pos"), t.c(sub, f"fp_{tag}")
            value, ok = (
                _ratio(sub_pos - t.c(sub, f"tp_{tag}"), sub_pos) if metric == "fnr_gap" else _ratio(fp, sub_n - sub_pos)
            )
            rates.append(value)
            sub_defined.append(ok)
        if not rates:
            return np.zeros_like(n), np.zeros(n.shape, dtype=bool)
        values, ok = np.stack(rates), np.stack(sub_defined)
        high = np.where(ok, values, -np.inf).max(axis=0)
        low = np.where(ok, values, np.inf).min(axis=0)
        enough = ok.sum(axis=0) >= 2
        return np.where(enough, high - low, 0.0), enough
    # continuous metrics: sums over the unit divided by the resampled unit size
    defined = n > 0
    safe_n = np.where(defined, n, 1.0)
    if metric == "brier":
        return t.x(unit, f"brier_{tag}") / safe_n, defined
    if metric == "nll":
        return t.x(unit, f"nll_{tag}") / safe_n, defined
    if metric == "mean_confidence":
        return t.x(unit, f"conf_{tag}") / safe_n, defined
    if metric == "ece":
        total = np.zeros_like(n)
        for name in t.layout.cont_index:
            if name.startswith("res") and name.endswith(f"_{tag}"):
                total = total + np.abs(t.x(unit, name))
        return total / safe_n, defined
    raise AssertionError(metric)


def _point(
    metric: str,
    y: np.ndarray,
    scores: ModelScores,
    mask: np.ndarray,
    *,
    true_class: np.ndarray | None,
    subgroup: np.ndarray | None,
    source: np.ndarray | None,
    bins: int,
    min_subgroup_n: int,
    n_classes: int,
) -> float | None:
    """The metric on the full data of one group (the estimate's baseline/candidate value)."""
    ys, ds, ps = y[mask], scores.decision[mask], scores.unsafe_prob[mask]
    simple = {
        "accuracy": lambda: _pt.accuracy(ys, ds),
        "unsafe_recall": lambda: _pt.unsafe_recall(ys, ds),
        "fnr": lambda: _pt.fnr(ys, ds),
        "benign_fpr": lambda: _pt.benign_fpr(ys, ds),
        "binary_macro_f1": lambda: _pt.binary_macro_f1(ys, ds),
        "brier": lambda: _pt.brier(ys, ps),
        "nll": lambda: _pt.nll(ys, ps),
        "mean_confidence": lambda: _pt.mean_confidence(ds, ps),
        "ece": lambda: _cal.ece(ys, ds, ps, bins),
    }
    if metric in simple:
        return simple[metric]()
    if metric in _BEHAVIOUR_METRICS:
        assert scores.complied is not None and scores.degenerate is not None
        if metric == "harmful_compliance_rate":
            return _bh.harmful_compliance_rate(ys, scores.complied[mask])
        return (
            _bh.over_refusal_rate(ys, ds)
            if metric == "over_refusal_rate"
            else _bh.degenerate_rate(scores.degenerate[mask])
        )
    if metric == "macro_f1":
        assert true_class is not None and scores.predicted_class is not None
        return _pt.macro_f1(true_class[mask], scores.predicted_class[mask], n_classes)
    if metric == "perturbation_accuracy":
        return _rb.perturbation_accuracy(y, scores.decision, source, mask)  # type: ignore[arg-type]
    if metric == "consistency":
        return _rb.consistency(scores.decision, source, mask)  # type: ignore[arg-type]
    rates = _rb.subgroup_rates(y, scores.decision, subgroup, mask=mask, min_subgroup_n=min_subgroup_n)  # type: ignore[arg-type]
    return rates[metric]  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------------------------------


def _scores(scores: ModelScores, n: int, name: str) -> ModelScores:
    if not isinstance(scores, ModelScores):
        raise EngineError("invalid_parameter", f"{name} must be a ModelScores")
    prob = _in.probabilities(scores.unsafe_prob, f"{name}.unsafe_prob")
    decision = _in.bool_vector(scores.decision, f"{name}.decision")
    pred = None
    if scores.predicted_class is not None:
        pred = _in.class_vector(scores.predicted_class, f"{name}.predicted_class", allow_missing=False)
    chat = {
        key: None if getattr(scores, key) is None else _in.bool_vector(getattr(scores, key), f"{name}.{key}")
        for key in ("complied", "degenerate")
    }
    lengths = {len(prob), len(decision)} | ({len(pred)} if pred is not None else set())
    lengths |= {len(v) for v in chat.values() if v is not None}
    if lengths != {n}:
        raise EngineError("invalid_parameter", f"{name} arrays must all have length {n}")
    return ModelScores(unsafe_prob=prob, decision=decision, predicted_class=pred, **chat)


def paired_bootstrap(
    y_unsafe: np.ndarray,
    base: ModelScores,
    cand: ModelScores,
    *,
    groups: Mapping[str, np.ndarray] | None = None,
    metrics: Sequence[str] | None = None,
    true_class: np.ndarray | None = None,
    n_classes: int | None = None,
    subgroup: np.ndarray | None = None,
    source_index: np.ndarray | None = None,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    bins: int = _cal.ECE_BINS,
    min_subgroup_n: int = _rb.MIN_SUBGROUP_N,
    method: str = "cells",
) -> BootstrapResult:
    """Paired bootstrap of candidate − baseline for ``metrics`` on each of ``groups``.

    ``groups``: name -> boolean mask (default {"overall": all}); masks may overlap. ``metrics``
    default: BASE_METRICS, plus macro_f1 when ``true_class`` and both predicted classes are given,
    perturbation_accuracy and consistency when ``source_index`` is given (-1 for examples that are
    not perturbed), fnr_gap and fpr_gap when ``subgroup`` is given (per group, over its subgroups
    with at least ``min_subgroup_n`` examples, the eligible set fixed from the full data). See the
    module docstring for ``method`` ("cells" or "index") and its accuracy.
    """
    if method not in METHODS:
        raise EngineError("invalid_parameter", f"method must be one of {list(METHODS)}, got {method!r}")
    if type(resamples) is not int or resamples < 1:
        raise EngineError("invalid_parameter", f"resamples must be an integer >= 1, got {resamples!r}")
    if type(seed) is not int or seed < 0:
        raise EngineError("invalid_parameter", f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0.0 < float(level) < 1.0:
        raise EngineError("invalid_parameter", f"level must be in (0, 1), got {level!r}")
    if type(min_subgroup_n) is not int or min_subgroup_n < 1:
        raise EngineError("invalid_parameter", f"min_subgroup_n must be an integer >= 1, got {min_subgroup_n!r}")
    bins = _in.check_bins(bins)
    y = _in.bool_vector(y_unsafe, "y_unsafe")
    n = len(y)
    base, cand = _scores(base, n, "base"), _scores(cand, n, "cand")
    group_masks = (
        {"overall": np.ones(n, dtype=bool)}
        if groups is None
        else {str(name): _in.select(mask, n) for name, mask in groups.items()}
    )
    if not group_masks:
        raise EngineError("invalid_parameter", "groups must name at least one group")
    truth = _in.class_vector(true_class, "true_class", allow_missing=True) if true_class is not None else None
    if truth is not None and len(truth) != n:
        raise EngineError("invalid_parameter", f"true_class must have length {n}")
    source = _in.source_vector(source_index, n) if source_index is not None else None
    names = _in.subgroup_vector(subgroup, n) if subgroup is not None else None
    has_classes = truth is not None and base.predicted_class is not None and cand.predicted_class is not None
    has_behaviour = all(s.complied is not None and s.degenerate is not None for s in (base, cand))

    given = {
        catalog.Needs.NOTHING: True,
        catalog.Needs.CLASSES: has_classes,
        catalog.Needs.PERTURBATIONS: source is not None,
        catalog.Needs.SUBGROUPS: names is not None,
        catalog.Needs.BEHAVIOUR: has_behaviour,
    }
    available = {needs for needs, ok in given.items() if ok}
    if metrics is None:
        wanted_list = [name for name in ALL_METRICS if _NEEDS[name] in available]
    else:
        wanted_list = list(dict.fromkeys(metrics))
    unknown = [name for name in wanted_list if name not in ALL_METRICS]
    if unknown:
        raise EngineError("invalid_parameter", f"unknown metric(s) {unknown} (expected some of {list(ALL_METRICS)})")
    missing = [name for name in wanted_list if _NEEDS[name] not in available]
    if missing:
        raise EngineError(
            "invalid_parameter",
            f"metric(s) {missing} need true_class and predicted classes, "
            "source_index, subgroup or both models' complied and degenerate, which were not given",
        )
    classes = 0
    if has_classes:
        assert truth is not None and base.predicted_class is not None and cand.predicted_class is not None
        observed = (
            max(
                int(truth.max(initial=-1)),
                int(base.predicted_class.max(initial=-1)),
                int(cand.predicted_class.max(initial=-1)),
            )
            + 1
        )
        classes = int(n_classes) if n_classes is not None else observed
        if classes < observed:
            raise EngineError("invalid_parameter", f"class indices must be below n_classes={classes}")
    wanted = set(wanted_list)

    point_options = {
        "true_class": truth,
        "subgroup": names,
        "source": source,
        "bins": bins,
        "min_subgroup_n": min_subgroup_n,
        "n_classes": classes or None,
    }
    points = {
        (group, metric): (
            _point(metric, y, base, mask, **point_options),  # type: ignore[arg-type]
            _point(metric, y, cand, mask, **point_options),  # type: ignore[arg-type]
        )
        for group, mask in group_masks.items()
        for metric in wanted_list
    }
    info = {"cells": n}
    collected: dict[tuple[str, str], list[np.ndarray]] = {key: [] for key in points}
    if n:
        layout = _layout(y, base, cand, group_masks, wanted, truth, names, source, bins, min_subgroup_n, classes)
        chunks = (
            index_chunks(layout, resamples, seed) if method == "index" else cells_chunks(layout, resamples, seed, info)
        )
        for count, cont in chunks:
            totals = _Totals(layout, count, cont)
            for unit, group in enumerate(group_masks):
                for metric in wanted_list:
                    if points[(group, metric)][0] is None:
                        continue
                    base_values, defined = _metric(totals, unit, group, metric, "b")
                    cand_values, _ = _metric(totals, unit, group, metric, "c")
                    collected[(group, metric)].append((cand_values - base_values)[defined])

    alpha = 1.0 - float(level)
    estimates: list[DeltaEstimate] = []
    for (group, metric), (baseline, candidate) in points.items():
        sampler = (
            "index" if method == "index" else (SAMPLER_GAUSSIAN if metric in CONTINUOUS_METRICS else SAMPLER_EXACT)
        )
        deltas = np.concatenate(collected[(group, metric)]) if collected[(group, metric)] else np.zeros(0)
        fields_: dict[str, Any] = {
            "baseline": baseline,
            "candidate": candidate,
            "delta": None,
            "ci_low": None,
            "ci_high": None,
            "resamples_used": int(deltas.size),
        }
        if baseline is not None and candidate is not None:
            fields_["delta"] = candidate - baseline
            if deltas.size:
                low, high = np.quantile(deltas, [alpha / 2.0, 1.0 - alpha / 2.0])
                fields_["ci_low"], fields_["ci_high"] = float(low), float(high)
        estimates.append(
            DeltaEstimate(
                metric=metric,
                resamples=resamples,
                seed=seed,
                level=float(level),
                group=group,
                sampler=sampler,
                **fields_,
            )
        )
    return BootstrapResult(
        estimates=tuple(estimates),
        resamples=resamples,
        seed=seed,
        level=float(level),
        method=method,
        bins=bins,
        min_subgroup_n=min_subgroup_n,
        cells=info["cells"],
        groups=tuple(group_masks),
        metrics=tuple(wanted_list),
    )
