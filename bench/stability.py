"""Decision stability of the reference teacher and its dynamic-int8 candidate (`python -m bench stability`).

Not a speed benchmark: a measurement of what issue 12 is about, on this machine's CPU. The teacher (MiniLM
fine-tuned on HateXplain, compression.engine.teacher, cached in $SAFESHRINK_MODEL_CACHE) and its dynamic int8
(compression.engine, `dynamic_int8`) classify the HateXplain test posts through ``evaluations.engine.predict``
(the evaluation task's path) at batch 32, suite order, right padding, 64 tokens, 2 threads:
- each model with the stability pass (the batches recomposed at random) for two seeds: how many decisions
  moved with the batches;
- int8 at batch 32 against batch 1 (one example at a time): how many decisions the batch size moved;
- the comparison fp32 -> int8: how many decisions flipped, and how many of those flips are stable (hold in
  both passes for both models), which is what SafeShrink's gate and blind review now count.
The counts depend on the CPU's int8 kernels (its instruction sets are recorded with the result).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SAFESHRINK_DATA_DIR", ROOT.parent / "shared" / "data"))
THREADS = 2


def _texts() -> list[str]:
    with open(DATA_DIR / "hatexplain" / "hatexplain_merged.csv", newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle) if row["split"] == "test"]


def run() -> dict:
    from compression.engine import CompressionRequest, compress
    from compression.engine.cpu import compute_platform
    from compression.engine.teacher import build_reference_teacher
    from evaluations.engine.predict import PredictionConfig, predict

    started = time.perf_counter()
    cache = Path(os.environ.get("SAFESHRINK_MODEL_CACHE", ROOT / "var" / "models"))
    teacher = build_reference_teacher(
        data_csv=DATA_DIR / "hatexplain" / "hatexplain_merged.csv", cache_dir=cache
    ).model_dir
    int8_dir = cache / "bench-stability-int8"
    if not (int8_dir / "recipe.json").is_file():
        compress(CompressionRequest("dynamic_int8", Path(teacher), int8_dir, {}, 0))
    texts = _texts()
    base = PredictionConfig(batch_size=32, max_length=64, threads=THREADS, recompose_seed=0)
    runs = {}
    for name, model in (("fp32", Path(teacher)), ("int8", int8_dir)):
        for seed in (0, 1):
            runs[(name, seed)] = predict(model, texts, dataclasses.replace(base, recompose_seed=seed))
    int8_single = predict(int8_dir, texts, dataclasses.replace(base, batching="single", recompose_seed=None))
    fp32, int8 = runs[("fp32", 0)], runs[("int8", 0)]
    assert fp32.stable is not None and int8.stable is not None
    flipped = fp32.decision != int8.decision
    stable_flips = flipped & fp32.stable & int8.stable

    def unstable(result) -> int:
        return int((~result.stable).sum())

    n = len(texts)
    return {
        "texts": n,
        "data": "HateXplain test posts",
        "profile": {"batch_size": 32, "batching": "fixed", "padding_side": "right", "max_length": 64},
        "threads": THREADS,
        "platform": compute_platform("cpu"),
        "unstable_fp32_seed0": unstable(fp32),
        "unstable_fp32_seed1": unstable(runs[("fp32", 1)]),
        "unstable_int8_seed0": unstable(int8),
        "unstable_int8_seed1": unstable(runs[("int8", 1)]),
        "unstable_int8_rate_seed0": round(unstable(int8) / n, 4),
        "int8_batch32_vs_batch1_changed": int((int8.decision != int8_single.decision).sum()),
        "flips_fp32_to_int8": int(flipped.sum()),
        "stable_flips_fp32_to_int8": int(stable_flips.sum()),
        "max_prob_move_int8_recomposed": float(np.abs(int8.recomposed_unsafe_prob - int8.unsafe_prob).max()),
        "max_prob_move_fp32_recomposed": float(np.abs(fp32.recomposed_unsafe_prob - fp32.unsafe_prob).max()),
        "seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
