"""ECE and the reliability table (evaluations.engine.metrics.reliability), exact values."""

from __future__ import annotations

import numpy as np
import pytest

from evaluations.engine.metrics import calibration_bins

Y = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
P = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.4, 0.5])
D = P >= 0.5  # [T, T, F, F, T, F, F, T]


def test_calibration_bins_counts() -> None:
    confidence = np.where(D, P, 1 - P)
    table = calibration_bins(Y == D, confidence)
    assert len(table) == 15
    assert {k: row["count"] for k, row in enumerate(table) if row["count"]} == {7: 1, 9: 2, 10: 2, 12: 1, 13: 2}
    assert table[10]["accuracy"] == 0.0 and table[10]["confidence"] == pytest.approx(0.7)
    assert table[0]["accuracy"] is None
    assert calibration_bins(np.array([True]), np.array([1.0]))[14]["count"] == 1
