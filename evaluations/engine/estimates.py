"""Results of the paired bootstrap: one model's scores (input), one delta estimate per (group,
metric), and the whole result with its statistics (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BootstrapResult", "DeltaEstimate", "ModelScores"]


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
            "baseline": self.baseline,
            "candidate": self.candidate,
            "delta": self.delta,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "resamples_used": self.resamples_used,
            "resamples_dropped": self.resamples_dropped,
            "sampler": self.sampler,
        }


@dataclass(frozen=True)
class ModelScores:
    """One model's outputs per example: unsafe probability, binary decision, and optionally the
    argmax class index (needed for macro_f1); for a chat model (decision: refused) whether it complied
    and whether its answer was degenerate (needed for the behaviour metrics)."""

    unsafe_prob: np.ndarray
    decision: np.ndarray
    predicted_class: np.ndarray | None = None
    complied: np.ndarray | None = None
    degenerate: np.ndarray | None = None


@dataclass(frozen=True)
class BootstrapResult:
    """All estimates of one paired bootstrap, in (group, metric) order."""

    estimates: tuple[DeltaEstimate, ...]
    resamples: int
    seed: int
    level: float
    method: str
    bins: int
    min_subgroup_n: int
    cells: int
    interval: str = "percentile"
    groups: tuple[str, ...] = field(default=())
    metrics: tuple[str, ...] = field(default=())

    def get(self, group: str, metric: str) -> DeltaEstimate:
        for estimate in self.estimates:
            if estimate.group == group and estimate.metric == metric:
                return estimate
        raise KeyError((group, metric))

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable: {"groups": {group: {metric: {...}}}, "statistics": {...}}."""
        groups: dict[str, dict[str, Any]] = {}
        for estimate in self.estimates:
            groups.setdefault(estimate.group, {})[estimate.metric] = estimate.as_dict()
        return {
            "groups": groups,
            "statistics": {
                "interval": f"paired bootstrap, {self.interval}",
                "level": self.level,
                "resamples": self.resamples,
                "seed": self.seed,
                "method": self.method,
                "bins": self.bins,
                "min_subgroup_n": self.min_subgroup_n,
                "cells": self.cells,
            },
        }
