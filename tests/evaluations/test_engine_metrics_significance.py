"""McNemar's exact test, flips, Holm and Benjamini-Hochberg (evaluations.engine.metrics.significance)."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from compression.engine.errors import EngineError
from evaluations.engine.metrics import benjamini_hochberg, flip_indices, holm, mcnemar_exact

Y = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
P = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.4, 0.5])
D = P >= 0.5  # [T, T, F, F, T, F, F, T]


def test_mcnemar_exact_values() -> None:
    def paired(b: int, c: int, both_right: int = 3) -> tuple[np.ndarray, np.ndarray]:
        base = np.array([True] * b + [False] * c + [True] * both_right)
        cand = np.array([False] * b + [True] * c + [True] * both_right)
        return base, cand

    result = mcnemar_exact(*paired(0, 10))
    assert (result.b, result.c) == (0, 10)
    assert result.p_value == 2 * 0.5**10
    assert mcnemar_exact(*paired(9, 1)).p_value == 22 / 1024
    assert mcnemar_exact(*paired(5, 5)).p_value == 1.0
    assert mcnemar_exact(*paired(0, 0)).p_value == 1.0


def test_mcnemar_log_space_branch_matches_exact() -> None:
    b, c = 1000, 1150  # b + c is above the exact-integer limit
    expected = float(2 * Fraction(sum(comb(b + c, i) for i in range(b + 1)), 2 ** (b + c)))
    base = np.array([True] * b + [False] * c)
    result = mcnemar_exact(base, ~base)
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert 0.0 < result.p_value < 0.01


def test_flip_indices() -> None:
    flips = flip_indices(np.array([1, 0, 1, 0], bool), np.array([1, 1, 0, 0], bool))
    assert flips.tolist() == [1, 2] and flips.dtype == np.int64
    assert flip_indices(D, D).tolist() == []


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
