"""Latency percentiles and throughput (evaluations.engine.metrics.runtime)."""

from __future__ import annotations

import pytest

from compression.engine.errors import EngineError
from evaluations.engine.metrics import runtime_summary


def test_runtime_summary() -> None:
    summary = runtime_summary([0.4, 0.2, 0.1], [4, 2, 1])
    assert summary["batch_latency_p50_s"] == 0.2
    assert summary["example_latency_p50_s"] == pytest.approx(0.1) and summary["example_latency_p99_s"] == pytest.approx(
        0.1
    )
    assert summary["examples_per_second"] == pytest.approx(10.0)
    assert summary["batch_latency_p95_s"] == pytest.approx(0.38)  # linear interpolation between 0.2 and 0.4
    assert runtime_summary([0.4, 0.2, 0.1], [4, 2, 1], wall_seconds=1.4)["examples_per_second"] == pytest.approx(5.0)
    empty = runtime_summary([], [])
    assert empty["examples"] == 0 and empty["batch_latency_p50_s"] is None and empty["examples_per_second"] is None
    with pytest.raises(EngineError):
        runtime_summary([0.1], [1, 2])
