"""Behavioural safety distillation of SmolLM2 (`python -m bench distill`, issue 15).

1. The teacher: SmolLM2-135M-Instruct with the demo's safety system prompt distilled into its weights
   (`compression.engine.safety_teacher.build_safety_teacher`, context distillation on the train split's stress
   prompts, cached by the digest of its inputs as the demo caches it), with its held-out behaviour before and
   after (the base without and with the system prompt, the distilled teacher without).
2. The student: `behavioural_distill` through `compression.engine.compress`, with the demo's parameters
   (`governance.demo_chat.DISTILL_DEMO_PARAMETERS`: 15 of 30 layers, 2 rounds) on the demo's stress set and
   held-back split (disjoint parts of the train split), judged by the demo's refusal judge; 1 torch thread. The
   time per training step and per round come from the rounds' records; peak memory is the process's peak RSS
   (ru_maxrss: the teacher, the student and the judge are all loaded in this process).
3. Side by side in one run: teacher and student answer the same 16 held-out AdvBench prompts (no system prompt,
   greedy, 32 new tokens, 1 thread) at batch 1 and 8, models interleaved, medians of 3 rounds; the speed-up is
   student / teacher tokens per second (target >= 1.8x with half the layers). Then both answer the demo's 56
   held-out chat-suite prompts at batch 8: harmful compliance, over-refusal and degenerate rates.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.generation import CACHE, DATA_DIR, demo_judge_dir, smollm2_folder

PROMPTS, MAX_NEW_TOKENS, ROUNDS, BATCHES = 16, 32, 3, (1, 8)
DEMO_SUITE_SIZES = {"harmful": 14, "harmless": 10, "xstest": 20, "adversarial": 12}  # load_chat_demo's defaults


def _prompts(split: str, sizes: dict) -> tuple:
    from compression.engine.types import ChatPrompt
    from evaluations.chat_prompts import chat_suite_rows

    return tuple(
        ChatPrompt(prompt_id=r["external_id"], text=r["text"], harmful=r["label"] == "harmful", slice=r["slice"])
        for r in chat_suite_rows(DATA_DIR, split=split, seed=0, **sizes)
    )


def _rates(folder: Path, prompts: tuple, judge, system_prompt: str | None) -> dict:
    from compression.engine.kinds import CHAT_COMPLIANCE, CHAT_DEGENERATE, CHAT_REFUSAL
    from evaluations.engine.generate import generate
    from evaluations.engine.generation_profile import GenerationProfile

    profile = GenerationProfile(system_prompt=system_prompt, max_new_tokens=MAX_NEW_TOKENS, batch_size=8, threads=1)
    answers = generate(folder, [p.text for p in prompts], profile).outputs
    judged = [b for b, _ in judge([p.text for p in prompts], list(answers))]
    harmful = [b for p, b in zip(prompts, judged, strict=True) if p.harmful]
    safe = [b for p, b in zip(prompts, judged, strict=True) if not p.harmful]
    return {
        "harmful_compliance_rate": round(harmful.count(CHAT_COMPLIANCE) / len(harmful), 4),
        "over_refusal_rate": round(safe.count(CHAT_REFUSAL) / len(safe), 4),
        "degenerate_rate": round(judged.count(CHAT_DEGENERATE) / len(judged), 4),
    }


def _speed(folders: dict[str, Path], prompts: list[str]) -> dict[str, dict[int, float]]:
    from evaluations.engine.generate import generate
    from evaluations.engine.generation_profile import GenerationProfile

    speed: dict[str, dict[int, list[float]]] = {name: {b: [] for b in BATCHES} for name in folders}
    order = list(folders)
    for round_ in range(ROUNDS):
        for name in order if round_ % 2 == 0 else order[::-1]:
            for batch in BATCHES:
                profile = GenerationProfile(
                    system_prompt=None, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch, threads=1
                )
                result = generate(folders[name], prompts, profile)
                speed[name][batch].append(result.tokens_per_second)
                print(f"round {round_} {name} batch {batch}: {result.tokens_per_second:.1f} tok/s", flush=True)
    return {name: {b: statistics.median(v) for b, v in per.items()} for name, per in speed.items()}


def run() -> dict:
    import torch

    from compression.engine import CompressionRequest, compress
    from compression.engine.safety_teacher import build_safety_teacher
    from compression.engine.types import BehaviourData
    from evaluations.engine.judges.behaviour_judge import behaviour_judge
    from governance.demo_chat import (
        DISTILL_DEMO_PARAMETERS,
        DISTILL_SET_SIZES,
        SAFETY_SYSTEM_PROMPT,
        SAFETY_TEACHER_PARAMS,
    )

    torch.set_num_threads(1)
    base = smollm2_folder()
    judge = behaviour_judge(demo_judge_dir())
    stress = _prompts("stress", DISTILL_SET_SIZES["stress"])
    heldback = _prompts("heldback", DISTILL_SET_SIZES["heldback"])
    heldout = _prompts("heldout", DEMO_SUITE_SIZES)
    started = time.perf_counter()
    teacher = build_safety_teacher(
        base,
        system_prompt=SAFETY_SYSTEM_PROMPT,
        prompts=stress,
        judge=judge,
        heldout=heldout,
        cache_dir=CACHE / "safety-teachers",
        params=SAFETY_TEACHER_PARAMS,
        progress=lambda stage, fraction: print(f"safety teacher: {stage} {fraction:.0%}", flush=True),
    )
    teacher_seconds = time.perf_counter() - started
    figures: dict = {"threads": 1, "safety_teacher": {**teacher.to_dict(), "wall_seconds": round(teacher_seconds, 1)}}
    figures["safety_teacher"].pop("model_dir", None)
    scratch = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    try:
        parameters = {**DISTILL_DEMO_PARAMETERS, "judge": 1, "stress_set": 1, "heldback_split": 2}
        started = time.perf_counter()
        result = compress(
            CompressionRequest(
                method="behavioural_distill",
                source_dir=Path(teacher.model_dir),
                output_dir=scratch / "student",
                parameters=parameters,
                seed=0,
                behaviour_data=BehaviourData(stress=stress, heldout=heldback),
                judge=judge,
                system_prompt=None,
            ),
            progress=lambda stage, fraction: print(f"student: {stage} {fraction:.0%}", flush=True),
        )
        rounds = result.details["rounds"]
        figures["student"] = {
            "parameters": {k: v for k, v in parameters.items() if k not in ("judge", "stress_set", "heldback_split")},
            "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "parameter_count": result.parameter_count,
            "teacher_parameter_count": result.source_parameter_count,
            "size_mib": round(result.size_bytes / 2**20, 1),
            "teacher_size_mib": round(result.source_size_bytes / 2**20, 1),
            "seconds_per_step": [r["seconds_per_step"] for r in rounds],
            "seconds_per_round": [round(sum(r["seconds"].values()), 1) for r in rounds],
            "rounds": [
                {
                    key: r[key]
                    for key in ("round", "stress_prompts", "added_failures", "training_examples", "accepted")
                    + ("rejected", "dropped_prompts", "heldout", "seconds")
                }
                for r in rounds
            ],
        }
        folders = {"teacher": Path(teacher.model_dir), "student": result.output_dir}
        figures["teacher"] = {"parameter_count": result.source_parameter_count}
        harmful = [p.text for p in heldout if p.harmful and p.slice == "routine"][:PROMPTS]
        speed = _speed(folders, harmful)
        for name in folders:
            figures[name].update({f"tokens_per_second_batch{b}": round(speed[name][b], 2) for b in BATCHES})
        speedups = {b: round(speed["student"][b] / speed["teacher"][b], 3) for b in BATCHES}
        figures["student"].update({f"speedup_batch{b}": speedups[b] for b in BATCHES})
        figures["heldout_behaviour"] = {
            "prompts": len(heldout),
            "teacher": _rates(folders["teacher"], heldout, judge, None),
            "student": _rates(folders["student"], heldout, judge, None),
        }
        figures["targets"] = {
            "student tokens/s over the teacher's, half the layers (batch 1)": {
                "target_speedup": 1.8,
                "measured_speedup": speedups[1],
                "met": speedups[1] >= 1.8,
            },
            "student tokens/s over the teacher's, half the layers (batch 8)": {
                "target_speedup": 1.8,
                "measured_speedup": speedups[8],
                "met": speedups[8] >= 1.8,
            },
        }
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
