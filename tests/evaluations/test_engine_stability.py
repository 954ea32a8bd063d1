"""The deployment profile in the engine: batching kinds, padding side, the stability pass, paired timing."""

from __future__ import annotations

import csv
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from compression.engine.errors import EngineError
from evaluations.engine.profile import (
    DeploymentProfile,
    default_quantized_engine,
    profile_from_dict,
    profile_problems,
    requirement_conflicts,
)
from tests.conftest import DATA_DIR


@pytest.fixture(scope="module")
def texts() -> list[str]:
    with open(DATA_DIR / "hatexplain" / "hatexplain_merged.csv", newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle) if row["split"] == "test"][:96]


@pytest.fixture(scope="module")
def int8_dir(tiny_model_dir: Path, tmp_path_factory) -> Path:
    from compression.engine import CompressionRequest, compress

    out = tmp_path_factory.mktemp("stability") / "int8"
    return compress(CompressionRequest("dynamic_int8", tiny_model_dir, out, {}, 0)).output_dir


def test_profile_problems_name_each_field() -> None:
    problems = profile_problems(
        {"batch_size": 0, "batching": "random", "padding_side": "up", "max_length": 1, "threads": 0, "colour": "red"}
    )
    assert set(problems) == {"batch_size", "batching", "padding_side", "max_length", "threads", "colour"}
    assert profile_problems({"batching": "single", "batch_size": 8}) == {
        "batch_size": ["Batching 'single' runs one example at a time: batch_size is 1."]
    }
    assert profile_problems([1, 2]) == {"profile": [pytest.approx(profile_problems([])["profile"][0])]}
    assert profile_problems({"batch_size": True}) != {}  # a bool is not an integer
    assert profile_problems({}) == {}


def test_profile_from_dict_merges_over_defaults_and_single_means_batch_one() -> None:
    defaults = DeploymentProfile(isa=("avx2",), quantized_engine="x86")
    single = profile_from_dict({"batching": "single"}, defaults=defaults)
    assert single.batch_size == 1 and single.effective_batch_size == 1 and single.isa == ("avx2",)
    assert profile_from_dict({"max_length": 128}, defaults=defaults).as_dict() == {
        **defaults.as_dict(),
        "max_length": 128,
    }
    assert default_quantized_engine("x86_64") == "x86" and default_quantized_engine("aarch64") == "qnnpack"
    with pytest.raises(ValueError):
        DeploymentProfile(batch_size=0)


def test_requirement_conflicts_compare_fields_and_require_instruction_sets() -> None:
    profile = DeploymentProfile(batch_size=32, isa=("avx2", "fma"))
    assert requirement_conflicts({"batch_size": 32, "isa": ["avx2"]}, profile) == {}
    conflicts = requirement_conflicts({"batch_size": 1, "isa": ["avx2", "amx_int8"]}, profile)
    assert set(conflicts) == {"batch_size", "isa"} and "amx_int8" in conflicts["isa"][0]


def test_batch_orders() -> None:
    from evaluations.engine.predict import batch_order, recomposed_order

    assert batch_order([5, 1, 3, 1], "fixed").tolist() == [0, 1, 2, 3]
    assert batch_order([5, 1, 3, 1], "length_sorted").tolist() == [1, 3, 2, 0]  # stable: ties keep suite order
    a, b = recomposed_order(50, 0), recomposed_order(50, 0)
    assert np.array_equal(a, b) and sorted(a.tolist()) == list(range(50)) and not np.array_equal(a, np.arange(50))
    assert not np.array_equal(recomposed_order(50, 1), a)


def test_batching_kinds_give_outputs_in_input_order(tiny_model_dir: Path, texts: list[str]) -> None:
    from evaluations.engine.predict import PredictionConfig, predict

    fixed = predict(tiny_model_dir, texts, PredictionConfig(batch_size=16))
    single = predict(tiny_model_dir, texts, PredictionConfig(batch_size=16, batching="single"))
    by_length = predict(tiny_model_dir, texts, PredictionConfig(batch_size=16, batching="length_sorted"))
    assert set(single.batch_sizes) == {1} and len(single.batch_sizes) == len(texts)
    assert by_length.batch_sizes == fixed.batch_sizes
    # fp32 with an attention mask: the same probabilities whatever the neighbours (to float rounding)
    for other in (single, by_length):
        assert np.abs(other.unsafe_prob - fixed.unsafe_prob).max() < 1e-5
    left = predict(tiny_model_dir, texts, PredictionConfig(batch_size=16, padding_side="left"))
    # BERT's positions count from the first token, so left padding changes padded texts' outputs
    assert np.abs(left.unsafe_prob - fixed.unsafe_prob).max() > 1e-6


def test_stability_pass_is_off_by_default_and_recomposes_the_batches(
    tiny_model_dir: Path, int8_dir: Path, texts: list[str]
) -> None:
    from evaluations.engine.predict import PredictionConfig, predict

    plain = predict(int8_dir, texts, PredictionConfig(batch_size=16))
    assert plain.stable is None and plain.recomposed_unsafe_prob is None and plain.recompose_seconds == 0.0
    calls: list[tuple[int, int]] = []
    int8 = predict(
        int8_dir,
        texts,
        PredictionConfig(batch_size=16, recompose_seed=0),
        progress=lambda done, total: calls.append((done, total)),
    )
    n = len(texts)
    assert calls[-1] == (2 * n, 2 * n) and calls[len(calls) // 2 - 1] == (n, 2 * n)
    assert np.array_equal(int8.unsafe_prob, plain.unsafe_prob)  # the main pass is unchanged
    assert np.array_equal(int8.stable, int8.recomposed_decision == int8.decision)
    # dynamic int8 scales activations over the whole padded batch: new neighbours move its probabilities
    moved = np.abs(int8.recomposed_unsafe_prob - int8.unsafe_prob)
    assert (moved > 1e-9).mean() > 0.5
    fp32 = predict(tiny_model_dir, texts, PredictionConfig(batch_size=16, recompose_seed=0))
    assert np.abs(fp32.recomposed_unsafe_prob - fp32.unsafe_prob).max() < 1e-5
    assert fp32.recompose_seconds > 0
    # batch size 1: nothing to recompose, and kernels are deterministic
    single = predict(int8_dir, texts[:20], PredictionConfig(batching="single", recompose_seed=3))
    assert single.stable.all() and np.array_equal(single.recomposed_unsafe_prob, single.unsafe_prob)


def test_an_unavailable_quantized_engine_is_refused(tiny_model_dir: Path, texts: list[str]) -> None:
    from evaluations.engine.predict import PredictionConfig, predict

    with pytest.raises(EngineError) as refused:
        predict(tiny_model_dir, texts[:2], PredictionConfig(quantized_engine="no-such-engine"))
    assert refused.value.code == "unsupported_platform" and "supported" in refused.value.message


def test_paired_runtime_times_both_models_on_the_same_batches(
    tiny_model_dir: Path, int8_dir: Path, texts: list[str]
) -> None:
    from evaluations.engine.predict import PredictionConfig
    from evaluations.engine.timing import paired_runtime, timing_sample

    measured = paired_runtime(tiny_model_dir, int8_dir, texts[:40], PredictionConfig(batch_size=8))
    assert measured.examples == 40 and measured.batches == 5 and measured.warmup_batches == 1
    for figures in (measured.baseline, measured.candidate):
        assert figures["examples"] == 40 and figures["batches"] == 5 and figures["example_latency_p95_s"] > 0
    assert measured.platform["isa"] is not None and measured.host
    assert timing_sample(10, 256).tolist() == list(range(10))
    spread = timing_sample(1000, 100)
    assert len(spread) == 100 and spread[0] == 0 and spread[-1] == 999
    with pytest.raises(EngineError):
        paired_runtime(tiny_model_dir, int8_dir, [], PredictionConfig())
