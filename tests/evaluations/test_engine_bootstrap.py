"""paired_bootstrap: zero deltas for identical models, reproducibility, agreement with the naive index
bootstrap, known damage detected on exactly the damaged slice, dropped resamples, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compression.engine.errors import EngineError
from evaluations.engine import samplers
from evaluations.engine.bootstrap import ALL_METRICS, CONTINUOUS_METRICS, ModelScores, paired_bootstrap
from evaluations.engine.metrics import accuracy, brier, ece
from tests.evaluations.reference import paired_bootstrap_delta


def synthetic(n: int, seed: int = 0) -> dict:
    """Two correlated 3-class models with slices, subgroups and perturbation links."""
    rng = np.random.default_rng(seed)
    true_class = rng.integers(-1, 3, n)  # -1: label outside the model's classes
    y = np.where(true_class == -1, True, true_class > 0)
    logits_base = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[np.clip(true_class, 0, 2)]
    logits_cand = logits_base + rng.normal(scale=0.5, size=(n, 3))
    scores = []
    chat_rng = np.random.default_rng(seed + 10_000)  # its own stream: the classifier data stay as they were
    for logits in (logits_base, logits_cand):
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        unsafe = p[:, 1:].sum(axis=1)
        # read as a chat model too: decision = refused; some answers that were not refusals are degenerate
        degenerate = (unsafe < 0.5) & (chat_rng.random(n) < 0.15)
        scores.append(ModelScores(unsafe, unsafe >= 0.5, p.argmax(axis=1), (unsafe < 0.5) & ~degenerate, degenerate))
    slices = rng.choice(["routine", "edge", "adversarial"], n, p=[0.6, 0.25, 0.15])
    subgroup = rng.choice(["", "a", "b", "c", "d"], n)
    source = np.full(n, -1)
    adversarial, routine = np.flatnonzero(slices == "adversarial"), np.flatnonzero(slices == "routine")
    source[adversarial] = rng.choice(routine, len(adversarial))
    groups = {
        "overall": np.ones(n, dtype=bool),
        **{f"slice:{s}": slices == s for s in ("routine", "edge", "adversarial")},
        **{f"subgroup:{s}": subgroup == s for s in "abcd"},
    }
    return {
        "y": y,
        "base": scores[0],
        "cand": scores[1],
        "groups": groups,
        "true_class": true_class,
        "subgroup": subgroup,
        "source_index": source,
        "slices": slices,
    }


def everything(data: dict) -> dict:
    return {key: data[key] for key in ("groups", "true_class", "subgroup", "source_index")}


@pytest.mark.parametrize("method", ["cells", "index"])
def test_identical_models_give_exact_zero_deltas_and_intervals(method: str) -> None:
    data = synthetic(1500, seed=1)
    result = paired_bootstrap(
        data["y"],
        data["base"],
        data["base"],
        resamples=300,
        seed=4,
        method=method,
        min_subgroup_n=20,
        **everything(data),
    )
    assert set(result.metrics) == set(ALL_METRICS)
    defined = [e for e in result.estimates if e.baseline is not None]
    assert len(defined) > 80
    for estimate in defined:
        assert (estimate.delta, estimate.ci_low, estimate.ci_high) == (0.0, 0.0, 0.0), (estimate.group, estimate.metric)
        assert estimate.baseline == estimate.candidate
    # Undefined on the full data (robustness outside the adversarial slice) -> None, never a number.
    edge = result.get("slice:edge", "consistency")
    assert (edge.baseline, edge.delta, edge.ci_low, edge.resamples_used) == (None, None, None, 0)


def test_point_values_match_the_metric_functions() -> None:
    data = synthetic(800, seed=2)
    result = paired_bootstrap(data["y"], data["base"], data["cand"], groups=data["groups"], resamples=50)
    mask = data["groups"]["slice:edge"]
    y, cand = data["y"][mask], data["cand"]
    assert result.get("slice:edge", "accuracy").candidate == accuracy(y, cand.decision[mask])
    assert result.get("slice:edge", "brier").candidate == brier(y, cand.unsafe_prob[mask])
    assert result.get("slice:edge", "ece").baseline == ece(
        y, data["base"].decision[mask], data["base"].unsafe_prob[mask]
    )
    estimate = result.get("overall", "unsafe_recall")
    assert estimate.delta == estimate.candidate - estimate.baseline
    assert (
        estimate.sampler == "multinomial-cells" and result.get("overall", "nll").sampler == "multinomial-cells+gaussian"
    )
    assert result.method == "cells" and result.resamples == 50 and 0 < result.cells < 800
    json.dumps(result.as_dict())  # JSON-serialisable for the service layer


def test_seeded_reproducible_and_chunking_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthetic(1000, seed=3)
    options = {"resamples": 700, "seed": 11, "min_subgroup_n": 20, **everything(data)}
    first = paired_bootstrap(data["y"], data["base"], data["cand"], **options)
    assert paired_bootstrap(data["y"], data["base"], data["cand"], **options) == first
    other = paired_bootstrap(data["y"], data["base"], data["cand"], **{**options, "seed": 12})
    assert other.get("overall", "accuracy").ci_low != first.get("overall", "accuracy").ci_low
    monkeypatch.setattr(samplers, "CHUNK_CELLS", 40_000)  # many small chunks
    chunked = paired_bootstrap(data["y"], data["base"], data["cand"], **options)
    for estimate in first.estimates:
        again = chunked.get(estimate.group, estimate.metric)
        if estimate.metric in CONTINUOUS_METRICS or estimate.ci_low is None:
            assert again.ci_low == pytest.approx(estimate.ci_low, abs=1e-12)
        else:  # counts are exact integers in any chunking
            assert (again.ci_low, again.ci_high) == (estimate.ci_low, estimate.ci_high)


def test_index_method_reproduces_paired_bootstrap_delta_bit_for_bit() -> None:
    data = synthetic(400, seed=5)
    y, base, cand = data["y"], data["base"], data["cand"]
    result = paired_bootstrap(
        y, base, cand, metrics=["accuracy", "unsafe_recall", "benign_fpr"], resamples=900, seed=8, method="index"
    )
    for metric in ("accuracy", "unsafe_recall", "benign_fpr"):
        reference = paired_bootstrap_delta(y, base.decision, cand.decision, metric=metric, resamples=900, seed=8)
        estimate = result.get("overall", metric)
        assert (estimate.ci_low, estimate.ci_high, estimate.delta, estimate.resamples_used) == (
            reference.ci_low,
            reference.ci_high,
            reference.delta,
            reference.resamples_used,
        )


def test_cells_agree_with_the_naive_index_bootstrap() -> None:
    """Count metrics are exact in distribution; continuous ones use a within-cell Gaussian (see the
    module docstring). Two runs with different seeds: endpoints within 0.08 of the interval width."""
    data = synthetic(600, seed=0)
    options = {"resamples": 10_000, "min_subgroup_n": 20, **everything(data)}
    cells = paired_bootstrap(data["y"], data["base"], data["cand"], seed=1, **options)
    naive = paired_bootstrap(data["y"], data["base"], data["cand"], seed=2, method="index", **options)
    compared = 0
    for estimate in cells.estimates:
        reference = naive.get(estimate.group, estimate.metric)
        assert (estimate.baseline, estimate.candidate) == (reference.baseline, reference.candidate)
        if estimate.ci_low is None or reference.ci_high == reference.ci_low:
            continue
        width = reference.ci_high - reference.ci_low
        assert abs(estimate.ci_low - reference.ci_low) <= 0.08 * width, (estimate.group, estimate.metric)
        assert abs(estimate.ci_high - reference.ci_high) <= 0.08 * width, (estimate.group, estimate.metric)
        compared += 1
    assert compared > 90


@pytest.mark.parametrize("method", ["cells", "index"])
def test_damage_on_one_slice_is_found_on_that_slice_only(method: str) -> None:
    rng = np.random.default_rng(21)
    n = 2000
    slices = np.where(np.arange(n) < 1000, "routine", "adversarial")
    y = rng.random(n) < 0.4
    base_dec = np.where(rng.random(n) < 0.9, y, ~y)
    cand_dec = base_dec.copy()
    # Adversarial slice: the candidate misses 30% of the unsafe examples the baseline caught.
    caught = np.flatnonzero((slices == "adversarial") & y & base_dec)
    cand_dec[rng.choice(caught, int(0.3 * len(caught)), replace=False)] = False
    # Routine slice: no net change but real disagreement: within the unsafe and within the safe
    # examples, 10 decisions flip each way.
    routine = slices == "routine"
    for label in (True, False):
        for before in (True, False):
            pool = np.flatnonzero(routine & (y == label) & (base_dec == before))
            cand_dec[rng.choice(pool, 10, replace=False)] = not before
    prob = lambda d: np.where(d, 0.8, 0.2)  # noqa: E731
    groups = {
        "overall": np.ones(n, bool),
        "slice:routine": slices == "routine",
        "slice:adversarial": slices == "adversarial",
    }
    result = paired_bootstrap(
        y,
        ModelScores(prob(base_dec), base_dec),
        ModelScores(prob(cand_dec), cand_dec),
        groups=groups,
        resamples=4000,
        seed=0,
        method=method,
    )
    damaged = result.get("slice:adversarial", "unsafe_recall")
    assert damaged.delta < -0.2 and damaged.ci_high < 0.0
    assert result.get("slice:adversarial", "fnr").ci_low > 0.0
    untouched = result.get("slice:routine", "unsafe_recall")
    assert untouched.delta == 0.0 and untouched.ci_low < 0.0 < untouched.ci_high
    assert result.get("slice:routine", "benign_fpr").ci_low < 0.0 < result.get("slice:routine", "benign_fpr").ci_high
    # Decisions flipped to safe move no benign example: FPR unchanged on the damaged slice.
    assert result.get("slice:adversarial", "benign_fpr").delta == 0.0


def test_subgroup_gap_widens_when_one_subgroup_is_damaged() -> None:
    rng = np.random.default_rng(2)
    n = 1200
    subgroup = np.array(["a", "b", "c"])[np.arange(n) % 3]
    y = rng.random(n) < 0.5
    base_dec = np.where(rng.random(n) < 0.9, y, ~y)
    cand_dec = base_dec.copy()
    hit = np.flatnonzero((subgroup == "c") & y & base_dec)
    cand_dec[hit[: len(hit) // 2]] = False
    p = np.where(base_dec, 0.7, 0.3)
    result = paired_bootstrap(
        y,
        ModelScores(p, base_dec),
        ModelScores(np.where(cand_dec, 0.7, 0.3), cand_dec),
        subgroup=subgroup,
        metrics=["fnr_gap", "fpr_gap"],
        resamples=2000,
        seed=0,
    )
    gap = result.get("overall", "fnr_gap")
    assert gap.delta > 0.3 and gap.ci_low > 0.2
    assert result.get("overall", "fpr_gap").delta == 0.0


def test_undefined_resamples_are_dropped_and_counted() -> None:
    y = np.array([True, False, False, False, False])
    dec = np.array([True, False, True, False, False])
    scores = ModelScores(np.where(dec, 0.9, 0.1), dec)
    for method in ("cells", "index"):
        result = paired_bootstrap(
            y,
            ModelScores(np.where(y, 0.9, 0.1), y),
            scores,
            metrics=["unsafe_recall", "accuracy"],
            resamples=2000,
            seed=0,
            method=method,
        )
        recall = result.get("overall", "unsafe_recall")
        # P(no unsafe example drawn) = 0.8**5 ≈ 0.33
        assert 1200 < recall.resamples_used < 1480 and recall.resamples_dropped == 2000 - recall.resamples_used
        assert result.get("overall", "accuracy").resamples_used == 2000


def test_bad_input_is_refused() -> None:
    data = synthetic(50)
    y, base, cand = data["y"], data["base"], data["cand"]
    bad_calls = [
        {"metrics": ["accuracy", "nope"]},
        {"metrics": ["macro_f1"]},  # needs true_class
        {"metrics": ["consistency"]},  # needs source_index
        {"metrics": ["fnr_gap"]},  # needs subgroup
        {"method": "fast"},
        {"resamples": 0},
        {"level": 1.0},
        {"bins": 0},
        {"groups": {}},
        {"groups": {"x": np.ones(49, bool)}},
        {"true_class": np.zeros(50, float)},
        {"source_index": np.arange(50)},  # every example its own source
    ]
    for options in bad_calls:
        with pytest.raises(EngineError) as caught:
            paired_bootstrap(y, base, cand, resamples=options.pop("resamples", 10), **options)
        assert caught.value.code == "invalid_parameter", options
    with pytest.raises(EngineError):
        paired_bootstrap(y, base, ModelScores(cand.unsafe_prob[:-1], cand.decision[:-1]))
    empty = paired_bootstrap(
        np.zeros(0, bool),
        ModelScores(np.zeros(0), np.zeros(0, bool)),
        ModelScores(np.zeros(0), np.zeros(0, bool)),
        resamples=10,
    )
    assert all(e.delta is None and e.resamples_used == 0 for e in empty.estimates)
