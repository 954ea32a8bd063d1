"""predict(): shapes, order, probabilities, decisions and runtime figures on the tiny model."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from compression.engine.errors import EngineError
from compression.engine.manifest import dir_size
from tests.conftest import DATA_DIR


def data_csv() -> Path:
    return DATA_DIR / "hatexplain" / "hatexplain_merged.csv"


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir: Path) -> Path:
    """The session's tiny model (tests/conftest.py), built once for the whole run."""
    return tiny_model_dir


@pytest.fixture(scope="module")
def texts() -> list[str]:
    with open(data_csv(), newline="", encoding="utf-8") as handle:
        rows = [row["text"] for row in csv.DictReader(handle) if row["split"] == "test"][:60]
    return rows + ["", "word " * 500]  # empty text and one far over max_length


def test_predict_shapes_probabilities_and_decisions(tiny_dir: Path, texts: list[str]) -> None:
    from evaluations.engine.predict import PredictionConfig, predict

    calls: list[tuple[int, int]] = []
    result = predict(
        tiny_dir, texts, PredictionConfig(batch_size=7), progress=lambda done, total: calls.append((done, total))
    )
    n = len(texts)
    assert result.labels == ("normal", "hatespeech", "offensive")
    assert result.probs.shape == (n, 3) and result.probs.dtype == np.float64
    assert np.abs(result.probs.sum(axis=1) - 1.0).max() < 1e-12
    assert np.array_equal(result.unsafe_prob, result.probs[:, 1] + result.probs[:, 2])
    assert np.array_equal(result.decision, result.unsafe_prob >= 0.5)
    assert result.decision.any() and not result.decision.all()  # the tiny model is not degenerate
    assert np.array_equal(result.predicted_label_index, result.probs.argmax(axis=1))
    assert len(result.batch_latencies_s) == math.ceil(n / 7) == len(calls)
    assert calls[-1] == (n, n) and calls[0] == (7, n)
    assert result.size_bytes == dir_size(tiny_dir)
    assert result.parameter_count == 267_651
    assert result.examples_per_second == pytest.approx(n / result.wall_seconds)
    assert result.peak_rss_bytes > 0


def test_predict_keeps_input_order(tiny_dir: Path, texts: list[str]) -> None:
    from evaluations.engine.predict import PredictionConfig, predict

    config = PredictionConfig(batch_size=16)
    forward = predict(tiny_dir, texts, config)
    backward = predict(tiny_dir, texts[::-1], config)
    single = predict(tiny_dir, texts[:5], PredictionConfig(batch_size=1))
    assert np.allclose(forward.probs, backward.probs[::-1], atol=1e-5)
    assert np.allclose(forward.probs[:5], single.probs, atol=1e-5)


def test_threshold_and_unsafe_labels(tiny_dir: Path, texts: list[str]) -> None:
    from evaluations.engine.predict import PredictionConfig, predict

    everything = predict(tiny_dir, texts, PredictionConfig(decision_threshold=0.0))
    assert everything.decision.all()
    hate_only = predict(tiny_dir, texts, PredictionConfig(unsafe_labels=("hatespeech",), decision_threshold=0.3))
    assert np.array_equal(hate_only.unsafe_prob, hate_only.probs[:, 1])
    assert np.array_equal(hate_only.decision, hate_only.probs[:, 1] >= 0.3)
    with pytest.raises(EngineError) as caught:
        predict(tiny_dir, texts, PredictionConfig(unsafe_labels=("toxic",)))
    assert caught.value.code == "invalid_parameter" and "toxic" in caught.value.message


def test_invalid_config_and_empty_input(tiny_dir: Path) -> None:
    from evaluations.engine.predict import PredictionConfig, predict

    for bad in ({"batch_size": 0}, {"decision_threshold": 1.5}, {"threads": 0}, {"unsafe_labels": ()}):
        with pytest.raises(EngineError) as caught:
            PredictionConfig(**bad)  # type: ignore[arg-type]
        assert caught.value.code == "invalid_parameter"
    empty = predict(tiny_dir, [], PredictionConfig(threads=1))
    assert empty.probs.shape == (0, 3) and empty.decision.shape == (0,) and empty.batch_latencies_s == ()
    with pytest.raises(EngineError):
        predict(tiny_dir, "not a list", PredictionConfig())  # type: ignore[arg-type]


def test_quantized_model_predictions_stay_close(tiny_dir: Path, texts: list[str], tmp_path: Path) -> None:
    from compression.engine import CompressionRequest, compress
    from evaluations.engine.predict import PredictionConfig, predict

    out = compress(CompressionRequest("dynamic_int8", tiny_dir, tmp_path / "int8", {}, 0)).output_dir
    fp32 = predict(tiny_dir, texts, PredictionConfig())
    int8 = predict(out, texts, PredictionConfig())
    assert int8.size_bytes < fp32.size_bytes
    assert int8.parameter_count == fp32.parameter_count
    assert float(np.abs(fp32.unsafe_prob - int8.unsafe_prob).max()) < 0.05
    assert (fp32.decision == int8.decision).mean() >= 0.9
