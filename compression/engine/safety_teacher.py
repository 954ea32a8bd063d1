"""A safety teacher by context distillation: "safety in the weights" instead of in a system prompt.

The model, prompted WITH the experiment's system prompt, is the teacher; the student is a full copy of it
(every layer) that reads each prompt WITHOUT the system prompt and learns the token distributions the
prompted model gives on its own accepted answers. The rounds are behavioural distillation's
(``behaviour_distill.run_rounds``: the same rejection sampling by the judge, the same loss and training loop),
with alpha 1 (pure KL) and T = 1 by default, and without feeding held-back failures back into training.

Before and after, the held-back prompts are answered greedily and judged: the base model without and with the
system prompt, and the distilled model without it (harmful-compliance, over-refusal and degenerate rates).

The result is cached: ``cache_dir/<key>/`` holds the model (``model/``, an hf-dir chat model) and
``report.json``; the key is the sha256 of the inputs (the model's manifest digest, the system prompt, the
prompts' and held-back prompts' digests, the parameters, ``SAFETY_TEACHER_VERSION``). A hit loads the report
and does no work.

Time budget of the defaults (SmolLM2-135M-Instruct, 30 layers, fp32, 1 torch thread on a busy 2-core CPU,
measured 2026-11-30): one optimizer step of the full-copy student at batch 8 x 128 tokens takes 17-22 s (peak
RSS 5.8 GiB), so the 16 steps take about 5 minutes; the teacher's top-k targets about 5 s per 8 accepted
answers; sampling about 44 tokens/s at batch 8 (at most 2 answers x 48 tokens per training prompt); each of
the three greedy passes over the held-out prompts about 50 tokens/s. For 32 training and 24 held-out prompts:
about 7-8 minutes in all, peak RSS about 6 GiB. A 2-step run on 8 + 4 prompts took 78 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from compression.engine.behaviour_distill import (
    LEVEL_TOKEN,
    RoundSetup,
    Teacher,
    greedy_behaviours,
    run_rounds,
    save_student,
)
from compression.engine.chat import load_chat_model
from compression.engine.chat_student import build_chat_student
from compression.engine.common import Progress, seeded
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.loading import resolve_device
from compression.engine.manifest import manifest_digest
from compression.engine.sampling import ChatModel
from compression.engine.types import BehaviourData, ChatPrompt, JudgeFn
from trust.canonical import canonical_bytes, digest

__all__ = ["SAFETY_TEACHER_VERSION", "SAFETY_TEACHER_DEFAULTS", "SafetyTeacherReport", "build_safety_teacher"]

SAFETY_TEACHER_VERSION = "safety-teacher-v1"
MODEL_FOLDER, REPORT_FILE = "model", "report.json"

# behavioural_distill parameters (compression.engine.behaviour_schema) plus "seed"; see the module's time budget.
SAFETY_TEACHER_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "alpha": 1.0,
    "top_k": 20,
    "rounds": 1,
    "samples_per_prompt": 2,
    "sampling_temperature": 0.7,
    "max_new_tokens": 48,
    "acceptance_threshold": 0.5,
    "level": LEVEL_TOKEN,
    "lr": 3e-5,
    "steps": 16,
    "batch_size": 8,
    "max_length": 160,
    "seed": 0,
}


@dataclass(frozen=True)
class SafetyTeacherReport:
    """What ``build_safety_teacher`` made. ``before``: {"base_without_system_prompt", "base_with_system_prompt"}
    and ``after``: {"distilled_without_system_prompt"}, each ``behaviour_judging.behaviour_rates``;
    ``seconds``: {"baseline", "sampling", "training", "evaluating", "total"}; ``rounds``: behavioural
    distillation's round records; ``cache_hit``: loaded from the cache (no work done)."""

    cache_key: str
    model_dir: Path
    before: dict[str, Any]
    after: dict[str, Any]
    steps: int
    seconds: dict[str, float]
    accepted: int
    rejected: int
    dropped_prompts: int
    training_examples: int
    params: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    version: str = SAFETY_TEACHER_VERSION
    cache_hit: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (``model_dir`` as a string)."""
        return {**asdict(self), "model_dir": str(self.model_dir)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SafetyTeacherReport:
        return cls(**{**data, "model_dir": Path(data["model_dir"])})


def _resolved(params: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults with ``params`` applied, validated by behavioural_distill's schema (its record ids, which
    the engine ignores, are filled with placeholders)."""
    from compression.engine.methods import resolve_parameters

    merged = {**SAFETY_TEACHER_DEFAULTS, **(params or {})}
    seed = merged.pop("seed")
    if type(seed) is not int:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"parameter 'seed' must be an integer, got {seed!r}")
    ids = {"judge": 1, "stress_set": 1, "heldback_split": 2}
    resolved = resolve_parameters("behavioural_distill", {**merged, **ids})
    for name in ("layers_kept", "intermediate_size", "extra_teachers", *ids):
        resolved.pop(name, None)
    return {**resolved, "seed": seed}


def _cache_key(model_dir: Path, system_prompt: str, data: BehaviourData, params: dict[str, Any]) -> str:
    return digest(
        {
            "version": SAFETY_TEACHER_VERSION,
            "model": manifest_digest(model_dir),
            "system_prompt": system_prompt,
            "prompts": BehaviourData(stress=data.stress).digest(),
            "heldout": BehaviourData(heldout=data.heldout).digest(),
            "params": params,
        }
    )


def _cached(folder: Path) -> SafetyTeacherReport | None:
    report = folder / REPORT_FILE
    if not (report.is_file() and (folder / MODEL_FOLDER / "config.json").is_file()):
        return None
    loaded = SafetyTeacherReport.from_dict(json.loads(report.read_text(encoding="utf-8")))
    return replace(loaded, model_dir=folder / MODEL_FOLDER, cache_hit=True)


def build_safety_teacher(
    model_dir: Path,
    *,
    system_prompt: str,
    prompts: Sequence[ChatPrompt],
    judge: JudgeFn,
    heldout: Sequence[ChatPrompt],
    cache_dir: Path,
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> SafetyTeacherReport:
    """Distil ``system_prompt`` into the weights of the chat model in ``model_dir`` (see the module), or load
    the cached result. ``prompts``: training prompts (rejection-sampled from the prompted model);
    ``heldout``: the prompts the before/after rates are measured on; ``params``: overrides of
    ``SAFETY_TEACHER_DEFAULTS``. ``progress(stage, fraction)`` may raise to cancel (nothing is cached then).
    EngineError: "invalid_parameter", "invalid_input" / "empty_input" for bad prompts, the loader's errors."""
    report: Progress = progress or (lambda stage, fraction: None)
    if not isinstance(system_prompt, str) or not system_prompt.strip():
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "system_prompt must be a non-empty string")
    resolved = _resolved(params)
    data = BehaviourData(stress=tuple(prompts), heldout=tuple(heldout))
    if not data.stress:
        raise EngineError(EngineErrorCode.EMPTY_INPUT, "the safety teacher needs training prompts")
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    key = _cache_key(model_dir, system_prompt, data, resolved)
    folder = cache_dir / key
    hit = _cached(folder)
    if hit is not None:
        report("done", 1.0)
        return hit
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = cache_dir / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir()
        result = _build(model_dir, work, key, system_prompt, data, judge, resolved, report, resolve_device(device))
        (work / REPORT_FILE).write_bytes(canonical_bytes(result.to_dict()))
        if folder.exists() and _cached(folder) is None:
            shutil.rmtree(folder)  # an incomplete entry (its report or model removed): replaced
        with contextlib.suppress(OSError):  # another process cached the same key first: its result is as good
            os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report("done", 1.0)
    found = _cached(folder)
    assert found is not None
    return replace(found, cache_hit=False)


def _build(
    model_dir: Path,
    work: Path,
    key: str,
    system_prompt: str,
    data: BehaviourData,
    judge: JudgeFn,
    params: dict[str, Any],
    report: Progress,
    device: Any,
) -> SafetyTeacherReport:
    started = time.perf_counter()
    report("loading", 0.01)
    loaded = load_chat_model(model_dir, device="cpu")
    with seeded(params["seed"]):
        student_model, _ = build_chat_student(loaded.model, loaded.model.config.num_hidden_layers, None)
        teacher = Teacher(ChatModel.of(loaded, device), system_prompt)
        report("baseline", 0.03)
        _, without = greedy_behaviours(teacher.chat, data.heldout, None, judge, params)
        report("baseline", 0.07)
        _, prompted = greedy_behaviours(teacher.chat, data.heldout, system_prompt, judge, params)
        baseline = time.perf_counter() - started
        student = replace(teacher.chat, model=student_model.to(device))
        setup = RoundSetup(
            teachers=[teacher],
            student=student,
            student_system_prompt=None,
            judge=judge,
            params=params,
            seed=params["seed"],
            report=report,
            span=(0.1, 0.92),
            feed_failures=False,
            student_vocabulary=[True],
        )
        records = run_rounds(setup, data)
    report("saving", 0.95)
    student_model.to("cpu").eval()
    model_out = work / MODEL_FOLDER
    model_out.mkdir()
    recipe = {"method": "safety_teacher", "version": SAFETY_TEACHER_VERSION, "cache_key": key, "teachers": 1}
    save_student(student_model, model_dir, model_out, recipe)
    seconds = {
        name: round(sum(r["seconds"][name] for r in records), 3) for name in ("sampling", "training", "evaluating")
    }
    return SafetyTeacherReport(
        cache_key=key,
        model_dir=model_out,
        before={"base_without_system_prompt": without, "base_with_system_prompt": prompted},
        after={"distilled_without_system_prompt": records[-1]["heldout"]},
        steps=sum(r["steps"] for r in records),
        seconds={"baseline": round(baseline, 3), **seconds, "total": round(time.perf_counter() - started, 3)},
        accepted=sum(r["accepted"] for r in records),
        rejected=sum(r["rejected"] for r in records),
        dropped_prompts=sum(r["dropped_prompts"] for r in records),
        training_examples=sum(r["training_examples"] for r in records),
        params=params,
        rounds=records,
    )
