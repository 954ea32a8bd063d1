"""Count and probability metrics (evaluations.engine.metrics.point) on hand-made arrays (exact values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compression.engine.errors import EngineError
from evaluations.engine.metrics import (
    accuracy,
    benign_fpr,
    binary_macro_f1,
    brier,
    calibration,
    ece,
    fnr,
    macro_f1,
    mean_confidence,
    nll,
    unsafe_recall,
)
from tests.evaluations.reference import binary_metrics

Y = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
P = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.4, 0.5])
D = P >= 0.5  # [T, T, F, F, T, F, F, T]


def test_count_metrics_exact() -> None:
    assert accuracy(Y, D) == 5 / 8
    assert unsafe_recall(Y, D) == 2 / 3
    assert fnr(Y, D) == 1 / 3
    assert benign_fpr(Y, D) == 2 / 5
    # unsafe: TP 2, 3 true, 4 flagged -> 4/7; safe: TN 3, 5 true, 4 passed -> 6/9
    assert binary_macro_f1(Y, D) == pytest.approx((4 / 7 + 6 / 9) / 2, abs=1e-15)
    assert binary_macro_f1(np.ones(3, bool), np.ones(3, bool)) == 1.0  # the absent class is left out
    empty = np.zeros(0, bool)
    assert accuracy(empty, empty) is None and binary_macro_f1(empty, empty) is None
    assert unsafe_recall(Y[3:], D[3:]) is None and fnr(Y[3:], D[3:]) is None
    assert benign_fpr(Y[:3], D[:3]) is None


def test_probability_metrics_exact() -> None:
    assert brier(Y, P) == pytest.approx(1.61 / 8, abs=1e-15)
    expected_nll = -(2 * math.log(0.9) + 2 * math.log(0.6) + 2 * math.log(0.3) + math.log(0.8) + math.log(0.5)) / 8
    assert nll(Y, P) == pytest.approx(expected_nll, abs=1e-14)
    assert nll(np.array([True, False]), np.array([0.0, 1.0])) == pytest.approx(-math.log(1e-12), rel=1e-5)  # clipped
    assert mean_confidence(D, P) == pytest.approx(5.7 / 8, abs=1e-15)
    assert ece(Y, D, P) == pytest.approx(3.1 / 8, abs=1e-15)
    # One bin [0.5, 1]: |5 correct - 5.7 confidence| / 8.
    assert ece(Y, D, P, bins=2) == pytest.approx(0.7 / 8, abs=1e-15)
    table = calibration(Y, D, P, bins=2)
    assert [row["count"] for row in table["bins"]] == [0, 8]  # type: ignore[index]
    assert table["bins"][1]["accuracy"] == 5 / 8  # type: ignore[index]
    assert ece(Y, D, P) == pytest.approx(binary_metrics(Y, D, P)["ece"], abs=1e-15)
    with pytest.raises(EngineError):
        ece(Y, D, P, bins=0)


def test_macro_f1_over_model_classes() -> None:
    true_class = np.array([1, 2, -1, 0, 0, 0, 2, 0])  # -1: the label is not a model class (ignored)
    predicted = np.array([1, 1, 0, 0, 2, 0, 0, 1])
    # class 0: 4 true, 3 predicted, 2 hits -> 4/7; class 1: 1, 3, 1 -> 1/2; class 2: 2, 1, 0 -> 0
    assert macro_f1(true_class, predicted) == pytest.approx((4 / 7 + 1 / 2 + 0) / 3, abs=1e-15)
    assert macro_f1(true_class, predicted, n_classes=4) == macro_f1(true_class, predicted)  # absent class left out
    assert macro_f1(np.array([-1, -1]), np.array([0, 1])) is None
    with pytest.raises(EngineError):
        macro_f1(true_class, predicted, n_classes=2)
    with pytest.raises(EngineError):
        macro_f1(true_class.astype(float), predicted)
