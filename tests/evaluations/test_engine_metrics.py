"""Per-group metrics, fairness, robustness, runtime and multiple comparisons on hand-made arrays."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from compression.engine.errors import EngineError
from evaluations.engine.metrics import (
    accuracy,
    benign_fpr,
    benjamini_hochberg,
    binary_macro_f1,
    binary_metrics,
    brier,
    calibration,
    consistency,
    ece,
    fnr,
    group_metrics,
    holm,
    macro_f1,
    mean_confidence,
    metrics_by_group,
    nll,
    perturbation_accuracy,
    runtime_summary,
    subgroup_rates,
    unsafe_recall,
)

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


def test_group_metrics_and_by_group() -> None:
    true_class = np.array([1, 2, -1, 0, 0, 0, 2, 0])
    predicted = np.array([1, 1, 0, 0, 2, 0, 0, 1])
    source = np.array([-1, -1, -1, -1, 0, 1, -1, -1])
    subgroup = np.array(["x", "x", "y", "y", "x", "y", "", ""])
    result = group_metrics(Y, D, P, true_class=true_class, predicted_class=predicted, source_index=source,
                           subgroup=subgroup, min_subgroup_n=3)
    assert result["n"] == 8 and result["n_unsafe"] == 3 and result["accuracy"] == 5 / 8
    assert result["macro_f1"] == macro_f1(true_class, predicted)
    assert result["n_perturbed"] == 2 and result["consistency"] == 0.5  # 4 agrees with 0, 5 differs from 1
    assert result["perturbation_accuracy"] == 0.5  # 4 (safe, flagged) wrong, 5 (safe, passed) right
    # x = {0, 1, 4}: FNR 0/2, FPR 1/1; y = {2, 3, 5}: FNR 1/1, FPR 0/2
    assert (result["fnr_gap"], result["fpr_gap"]) == (1.0, 1.0)
    assert result["subgroups"]["x"]["fpr"] == 1.0  # type: ignore[index]
    assert len(result["reliability"]) == 15  # type: ignore[arg-type]
    masks = {"overall": np.ones(8, bool), "first": np.arange(8) < 4}
    by_group = metrics_by_group(Y, D, P, masks)
    assert list(by_group) == ["overall", "first"]
    assert by_group["first"]["accuracy"] == 0.75 and by_group["first"]["n"] == 4
    assert by_group["overall"]["brier"] == brier(Y, P)


def test_runtime_summary() -> None:
    summary = runtime_summary([0.4, 0.2, 0.1], [4, 2, 1])
    assert summary["batch_latency_p50_s"] == 0.2
    assert summary["example_latency_p50_s"] == pytest.approx(0.1) and summary["example_latency_p99_s"] == pytest.approx(0.1)
    assert summary["examples_per_second"] == pytest.approx(10.0)
    assert summary["batch_latency_p95_s"] == pytest.approx(0.38)  # linear interpolation between 0.2 and 0.4
    assert runtime_summary([0.4, 0.2, 0.1], [4, 2, 1], wall_seconds=1.4)["examples_per_second"] == pytest.approx(5.0)
    empty = runtime_summary([], [])
    assert empty["examples"] == 0 and empty["batch_latency_p50_s"] is None and empty["examples_per_second"] is None
    with pytest.raises(EngineError):
        runtime_summary([0.1], [1, 2])


def test_holm_exact() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, 1·0.04 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5], abs=1e-15)
    assert holm([]) == [] and holm([0.3]) == [0.3]


def test_benjamini_hochberg_exact() -> None:
    # sorted: 0.005·4/1, 0.01·4/2, 0.03·4/3, 0.04·4/4 = 0.02, 0.02, 0.04, 0.04 -> running min from the top
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-15)
    assert benjamini_hochberg([0.5, 0.6]) == pytest.approx([0.6, 0.6], abs=1e-15)
    assert benjamini_hochberg([0.02, 0.02, 0.5]) == pytest.approx([0.03, 0.03, 0.5], abs=1e-15)
    assert benjamini_hochberg([0.9, 0.01, 0.02]) == pytest.approx([0.9, 0.03, 0.03], abs=1e-15)
    for bad in ([0.5, 1.5], [float("nan")], [[0.1]]):
        with pytest.raises(EngineError):
            holm(bad)
        with pytest.raises(EngineError):
            benjamini_hochberg(bad)


def test_metric_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import evaluations.engine.metrics, evaluations.engine.bootstrap, "
        "evaluations.engine.tabular, evaluations.engine.perturb; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
