"""Safety metrics of one model and paired significance of two (numpy only, no torch; the web process
imports this package).

Every safety metric works on the binary decision (see DESIGN.md, "The safety label"): ``y_unsafe``
is the true safety label, ``decision`` the model's unsafe decision and ``unsafe_prob`` its unsafe
probability. Metrics are computed per group: callers pass a boolean ``mask`` (or index the arrays
themselves); a metric that is undefined on a group (e.g. recall without unsafe examples) is None.

Modules: ``inputs`` (argument checks), ``point`` (count and probability metrics), ``reliability``
(ECE and the reliability table), ``robustness`` (subgroup gaps, perturbations), ``groups`` (every
metric per group: what a run stores), ``significance`` (McNemar, flips, Holm, Benjamini-Hochberg) and
``runtime`` (latency and throughput). The metric names, directions and bootstrap kinds are in
``evaluations.engine.catalog``; the fast multi-metric paired bootstrap is ``evaluations.engine.bootstrap``.
"""

from __future__ import annotations

from .groups import COUNT_KEYS, group_metrics, metrics_by_group
from .point import (
    NLL_EPS,
    accuracy,
    benign_fpr,
    binary_macro_f1,
    brier,
    fnr,
    macro_f1,
    mean_confidence,
    nll,
    unsafe_recall,
)
from .reliability import ECE_BINS, calibration, calibration_bins, ece
from .robustness import MIN_SUBGROUP_N, consistency, perturbation_accuracy, subgroup_rates
from .runtime import runtime_summary
from .significance import McNemarResult, benjamini_hochberg, flip_indices, holm, mcnemar_exact

__all__ = [
    "COUNT_KEYS",
    "ECE_BINS",
    "MIN_SUBGROUP_N",
    "NLL_EPS",
    "McNemarResult",
    "accuracy",
    "benign_fpr",
    "benjamini_hochberg",
    "binary_macro_f1",
    "brier",
    "calibration",
    "calibration_bins",
    "consistency",
    "ece",
    "flip_indices",
    "fnr",
    "group_metrics",
    "holm",
    "macro_f1",
    "mcnemar_exact",
    "mean_confidence",
    "metrics_by_group",
    "nll",
    "perturbation_accuracy",
    "runtime_summary",
    "subgroup_rates",
    "unsafe_recall",
]
