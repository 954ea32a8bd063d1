"""Subgroup rates and gaps, perturbation accuracy and consistency (evaluations.engine.metrics.robustness)."""

from __future__ import annotations

import numpy as np
import pytest

from compression.engine.errors import EngineError
from evaluations.engine.metrics import consistency, perturbation_accuracy, subgroup_rates


def test_subgroup_rates_and_gaps() -> None:
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 1])
    d = np.array([1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0])
    group = np.array(["a", "a", "a", "a", "b", "b", "b", "b", "c", "c", ""])
    rates = subgroup_rates(y, d, group, min_subgroup_n=3)
    assert rates["subgroups"] == {
        "a": {"n": 4, "n_unsafe": 2, "n_safe": 2, "fnr": 0.5, "fpr": 0.5, "eligible": True},
        "b": {"n": 4, "n_unsafe": 2, "n_safe": 2, "fnr": 0.0, "fpr": 0.0, "eligible": True},
        "c": {"n": 2, "n_unsafe": 1, "n_safe": 1, "fnr": 1.0, "fpr": 1.0, "eligible": False},
    }
    assert (rates["fnr_gap"], rates["fpr_gap"]) == (0.5, 0.5)  # c is too small to count
    assert subgroup_rates(y, d, group, min_subgroup_n=5)["fnr_gap"] is None
    only_a = subgroup_rates(y, d, group, mask=group == "a", min_subgroup_n=3)
    assert list(only_a["subgroups"]) == ["a"] and only_a["fnr_gap"] is None  # type: ignore[arg-type]


def test_robustness_metrics() -> None:
    y = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    d = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    source = np.array([-1, -1, 0, 1, 0, -1])
    # perturbed: 2 (same as source 0), 3 (differs from 1), 4 (differs from 0)
    assert consistency(d, source) == pytest.approx(1 / 3)
    assert perturbation_accuracy(y, d, source) == pytest.approx(1 / 3)
    only_two = np.array([0, 0, 1, 0, 0, 0], dtype=bool)  # the source (0) lies outside the mask
    assert consistency(d, source, only_two) == 1.0
    assert consistency(d, np.full(6, -1)) is None and perturbation_accuracy(y, d, np.full(6, -1)) is None
    for bad in (np.array([-1, -1, 2, 1, 0, -1]), np.array([-1, -1, 9, 1, 0, -1]), np.array([-2, -1, 0, 1, 0, -1])):
        with pytest.raises(EngineError):
            consistency(d, bad)
