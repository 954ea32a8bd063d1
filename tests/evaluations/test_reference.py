"""The test-only references (tests/evaluations/reference.py) the engine is checked against: one-pass
binary metrics and the plain index bootstrap of one metric (exact values, reproducibility, chunking)."""

from __future__ import annotations

import numpy as np
import pytest

from compression.engine.errors import EngineError
from evaluations.engine import samplers
from tests.evaluations.reference import binary_metrics, paired_bootstrap_delta

Y = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
P = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.4, 0.5])
D = P >= 0.5  # [T, T, F, F, T, F, F, T]


def test_binary_metrics_exact() -> None:
    result = binary_metrics(Y, D, P)
    assert result["n"] == 8
    assert result["accuracy"] == 5 / 8
    assert result["unsafe_recall"] == 2 / 3
    assert result["benign_fpr"] == 2 / 5
    # (0.1² + 0.4² + 0.7² + 0.2² + 0.7² + 0.1² + 0.4² + 0.5²) / 8
    assert result["brier"] == pytest.approx(1.61 / 8, abs=1e-15)
    # decision confidences: 0.9, 0.6, 0.7, 0.8, 0.7, 0.9, 0.6, 0.5
    assert result["mean_confidence"] == pytest.approx(5.7 / 8, abs=1e-15)
    # bins: {0.9, 0.9} all right, {0.6, 0.6} all right, {0.7, 0.7} all wrong, {0.8} right, {0.5} wrong
    assert result["ece"] == pytest.approx((2 * 0.1 + 2 * 0.4 + 2 * 0.7 + 0.2 + 0.5) / 8, abs=1e-15)


def test_binary_metrics_undefined_parts() -> None:
    all_safe = binary_metrics(np.zeros(4, bool), np.array([0, 1, 0, 0], bool), np.array([0.1, 0.6, 0.2, 0.3]))
    assert all_safe["unsafe_recall"] is None and all_safe["benign_fpr"] == 0.25
    all_unsafe = binary_metrics(np.ones(2, bool), np.array([1, 0], bool), np.array([0.8, 0.4]))
    assert all_unsafe["benign_fpr"] is None and all_unsafe["unsafe_recall"] == 0.5
    empty = binary_metrics(np.zeros(0, bool), np.zeros(0, bool), np.zeros(0))
    assert empty == {k: (0 if k == "n" else None) for k in empty}


def test_binary_metrics_rejects_bad_input() -> None:
    with pytest.raises(EngineError) as caught:
        binary_metrics(Y, D[:-1], P)
    assert caught.value.code == "invalid_parameter"
    with pytest.raises(EngineError):
        binary_metrics(Y, D, P + 1.0)


def test_bootstrap_identical_decisions_gives_zero_interval() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.4
    decision = rng.random(300) < 0.5
    for metric in ("accuracy", "unsafe_recall", "benign_fpr"):
        estimate = paired_bootstrap_delta(y, decision, decision, metric=metric, resamples=500, seed=1)
        assert (estimate.delta, estimate.ci_low, estimate.ci_high) == (0.0, 0.0, 0.0)
        assert estimate.baseline == estimate.candidate
        assert (estimate.resamples, estimate.resamples_used, estimate.seed, estimate.level, estimate.method) == (
            500,
            500,
            1,
            0.95,
            "percentile",
        )


def test_bootstrap_known_damage_excludes_zero() -> None:
    y = np.array([True] * 200 + [False] * 200)
    base = y.copy()
    cand = y.copy()
    cand[:80] = False  # candidate misses 80 of 200 unsafe examples
    recall = paired_bootstrap_delta(y, base, cand, metric="unsafe_recall", resamples=2000, seed=0)
    assert (recall.baseline, recall.candidate) == (1.0, 0.6)
    assert recall.delta == pytest.approx(-0.4, abs=1e-15)
    assert recall.ci_low < -0.4 < recall.ci_high < 0.0
    accuracy = paired_bootstrap_delta(y, base, cand, metric="accuracy", resamples=2000, seed=0)
    assert accuracy.delta == pytest.approx(-0.2, abs=1e-15) and accuracy.ci_high < 0.0
    fpr = paired_bootstrap_delta(y, base, cand, metric="benign_fpr", resamples=200, seed=0)
    assert (fpr.delta, fpr.ci_low, fpr.ci_high) == (0.0, 0.0, 0.0)


def test_bootstrap_total_damage_is_exact() -> None:
    y = np.array([True, False, True, False, False])
    estimate = paired_bootstrap_delta(y, y, ~y, metric="accuracy", resamples=100, seed=0)
    assert (estimate.delta, estimate.ci_low, estimate.ci_high) == (-1.0, -1.0, -1.0)


def test_bootstrap_seed_reproducible_and_chunking_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    y = rng.random(250) < 0.5
    base = np.where(rng.random(250) < 0.8, y, ~y)
    cand = np.where(rng.random(250) < 0.75, y, ~y)
    first = paired_bootstrap_delta(y, base, cand, metric="accuracy", resamples=1000, seed=42)
    assert paired_bootstrap_delta(y, base, cand, metric="accuracy", resamples=1000, seed=42) == first
    assert paired_bootstrap_delta(y, base, cand, metric="accuracy", resamples=1000, seed=43) != first
    monkeypatch.setattr(samplers, "INDEX_CELLS_PER_CHUNK", 250 * 7)
    assert paired_bootstrap_delta(y, base, cand, metric="accuracy", resamples=1000, seed=42) == first


def test_bootstrap_undefined_metric_and_dropped_resamples() -> None:
    y = np.zeros(10, dtype=bool)
    estimate = paired_bootstrap_delta(y, y, y, metric="unsafe_recall", resamples=100, seed=0)
    assert (estimate.baseline, estimate.delta, estimate.ci_low, estimate.resamples_used) == (None, None, None, 0)
    one_positive = np.array([True, False, False, False, False])
    dec = np.array([True, False, True, False, False])
    sparse = paired_bootstrap_delta(one_positive, one_positive, dec, metric="unsafe_recall", resamples=1000, seed=0)
    # P(no positive drawn) = 0.8**5 ≈ 0.33, so about two thirds of the resamples remain.
    assert 550 < sparse.resamples_used < 780
    with pytest.raises(EngineError) as caught:
        paired_bootstrap_delta(y, y, y, metric="macro_f1")
    assert caught.value.code == "invalid_parameter"
