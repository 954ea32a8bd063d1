"""``behavioural_distill``: behavioural safety distillation of a chat model into a smaller student.

Teachers: ``source_dir`` (teacher 0) and ``request.teachers``. The student is cut from teacher 0
(``chat_student``: decoder layers kept evenly spaced, optionally a narrower feed-forward). Each round:

1. Rejection sampling: for every prompt of the round's stress set a teacher samples up to
   ``samples_per_prompt`` answers at ``sampling_temperature`` (row seeds from (seed, round, teacher,
   prompt id, sample index): independent of batch composition) and the judge accepts or rejects each
   (``behaviour_judging``); sampling of a prompt stops at its first accepted answer. Level "token": teacher
   0 samples and its accepted answer is the training answer (the other teachers contribute distributions);
   level "sequence": every teacher samples and each accepted answer is a training example (re-tokenized
   for the student when a teacher's vocabulary differs). A prompt without an accepted answer is dropped.
2. Targets (token level): every teacher reads its rendering of the prompt + the answer (+ the end-of-turn
   token that ended it, when one did); the top-k of their averaged softmax(logits / T) per answer token.
3. Training: AdamW, ``steps`` steps of ``batch_size`` examples (shuffled by (seed, round), cycled), loss
   alpha * KL_T(teacher || student) * T^2 over the teacher's renormalised top-k + (1 - alpha) * CE on the
   answer tokens (sequence level: CE only). Answers are cut so the student's prompt + answer fit
   ``max_length`` (teachers read the same answer tokens after their own prompt).
4. The student answers the held-back prompts greedily; the prompts it fails join the next round's stress
   set (their teacher answers are sampled in that round).

After each round ``request.on_round(record)`` (``round_record``). On the CPU, with the same seed and thread
count, the saved model is byte-identical. ``safety_teacher`` reuses the same rounds (``run_rounds``) with a
student that reads no system prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compression.engine.behaviour_judging import (
    LISTED_IDS,
    behaviour_rates,
    is_accepted,
    is_failure,
    judge_answers,
)
from compression.engine.chat import copy_chat_files, load_chat_model, render_prompt
from compression.engine.chat_student import build_chat_student
from compression.engine.common import MethodContext, MethodOutput, Progress, copy_tokenizer_files, seeded
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.formats import FORMAT_HF_DIR, RECIPE_FILE
from compression.engine.kinds import MODEL_KIND_CHAT
from compression.engine.sampling import ChatModel, Decoded, answer_logits, decode, row_seed, teacher_topk
from compression.engine.types import BehaviourData, ChatPrompt, JudgeFn
from trust.canonical import canonical_bytes, digest

__all__ = [
    "Teacher",
    "RoundSetup",
    "Example",
    "run_behavioural_distill",
    "run_rounds",
    "encode_prompts",
    "greedy_behaviours",
    "save_student",
    "same_vocabulary",
    "round_record",
    "LEVEL_TOKEN",
    "LEVEL_SEQUENCE",
]

LEVEL_TOKEN, LEVEL_SEQUENCE = "token", "sequence"


@dataclass(frozen=True)
class Teacher:
    """A teacher and the system prompt it reads (None: no system turn)."""

    chat: ChatModel
    system_prompt: str | None


@dataclass
class RoundSetup:
    """Everything the rounds need. ``params``: resolved behavioural_distill parameters; ``report(stage,
    fraction)`` may raise to cancel; ``span``: the progress fractions the rounds use; ``feed_failures``: the
    held-back failures join the next round's stress set."""

    teachers: list[Teacher]
    student: ChatModel
    student_system_prompt: str | None
    judge: JudgeFn
    params: dict[str, Any]
    seed: int
    report: Progress
    on_round: Callable[[dict], None] | None = None
    span: tuple[float, float] = (0.15, 0.92)
    feed_failures: bool = True
    student_vocabulary: list[bool] = field(default_factory=list)  # per teacher: the student's vocabulary


@dataclass
class Example:
    """One training example: an accepted answer of ``teacher`` to ``prompt``; ``student_ids`` is the student's
    prompt + the answer tokens (the last ``answer_length`` ids); ``teacher_rows`` each teacher's prompt + the
    same answer tokens (token level); ``targets`` the teachers' top-k (values, indices) per answer token."""

    prompt: ChatPrompt
    teacher: int
    answer: Decoded
    student_ids: list[int]
    answer_length: int
    teacher_rows: list[list[int]] = field(default_factory=list)
    targets: tuple[torch.Tensor, torch.Tensor] | None = None


def same_vocabulary(a: Any, b: Any) -> bool:
    """Two tokenizers map the same tokens to the same ids."""
    return bool(len(a) == len(b) and a.get_vocab() == b.get_vocab())


def encode_prompts(chat: ChatModel, prompts: Sequence[ChatPrompt], system_prompt: str | None) -> list[list[int]]:
    """Token ids of each prompt rendered by ``chat``'s template (the template carries its special tokens)."""
    texts = [render_prompt(chat.tokenizer, p.text, system_prompt, chat.chat_template) for p in prompts]
    return [list(ids) for ids in chat.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def greedy_behaviours(
    chat: ChatModel,
    prompts: Sequence[ChatPrompt],
    system_prompt: str | None,
    judge: JudgeFn,
    params: dict[str, Any],
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """(behaviour per prompt, behaviour_rates) of ``chat`` answering ``prompts`` greedily."""
    if not prompts:
        return [], behaviour_rates([], [])
    answers = decode(
        chat,
        encode_prompts(chat, prompts, system_prompt),
        max_new_tokens=params["max_new_tokens"],
        batch_size=params["batch_size"],
        on_batch=on_batch,
    )
    behaviours = [b for b, _ in judge_answers(judge, prompts, [a.text for a in answers])]
    return behaviours, behaviour_rates(prompts, behaviours)


def _slice_counts(prompts: Sequence[ChatPrompt]) -> dict[str, dict[str, int]]:
    return {p.slice: {"prompts": 0, "accepted": 0, "rejected": 0, "dropped": 0} for p in prompts}


def _end_token(chat: ChatModel) -> int:
    eos = chat.tokenizer.eos_token_id
    return int(eos) if eos in chat.eos_ids else chat.eos_ids[0]


def _example(setup: RoundSetup, prompt: ChatPrompt, teacher: int, answer: Decoded, rows: dict) -> Example | None:
    """The training example of an accepted answer (None when the student's prompt leaves no room for it)."""
    if setup.student_vocabulary[teacher]:
        tokens = list(answer.ids) + ([answer.end_token] if answer.end_token is not None else [])
    else:
        tokens = list(setup.student.tokenizer(answer.text, add_special_tokens=False)["input_ids"])
        tokens += [_end_token(setup.student)] if answer.end_token is not None else []
    student_prompt = rows["student"]
    length = min(len(tokens), setup.params["max_length"] - len(student_prompt))
    if length < 1:
        return None
    teacher_rows = []
    if setup.params["level"] == LEVEL_TOKEN:
        teacher_rows = [list(r) + tokens[:length] for r in rows["teachers"]]
    return Example(prompt, teacher, answer, list(student_prompt) + tokens[:length], length, teacher_rows)


def _sample(setup: RoundSetup, stress: Sequence[ChatPrompt], round_number: int, low: float, high: float) -> dict:
    """Rejection sampling of one round: {"examples", "by_slice", "accepted", "rejected", "dropped", "too_long"}."""
    params = setup.params
    sampling = range(len(setup.teachers)) if params["level"] == LEVEL_SEQUENCE else range(1)
    prompt_rows = [encode_prompts(t.chat, stress, t.system_prompt) for t in setup.teachers]
    student_rows = encode_prompts(setup.student, stress, setup.student_system_prompt)
    by_slice = _slice_counts(stress)
    for prompt in stress:
        by_slice[prompt.slice]["prompts"] += 1
    accepted: dict[tuple[int, int], Decoded] = {}
    rejected = 0
    passes = len(sampling) * params["samples_per_prompt"]
    for t in sampling:
        pending = list(range(len(stress)))
        for sample in range(params["samples_per_prompt"]):
            if not pending:
                break
            done_passes = t * params["samples_per_prompt"] + sample

            def on_batch(done: int, total: int = len(pending), base: int = done_passes) -> None:
                fraction = (base + done / total) / passes
                setup.report(f"sampling round {round_number}", round(low + (high - low) * fraction, 6))

            answers = decode(
                setup.teachers[t].chat,
                [prompt_rows[t][i] for i in pending],
                max_new_tokens=params["max_new_tokens"],
                batch_size=params["batch_size"],
                temperature=float(params["sampling_temperature"]),
                seeds=[row_seed(setup.seed, round_number, t, stress[i].prompt_id, sample) for i in pending],
                on_batch=on_batch,
            )
            verdicts = judge_answers(setup.judge, [stress[i] for i in pending], [a.text for a in answers])
            still = []
            for i, answer, verdict in zip(pending, answers, verdicts, strict=True):
                if is_accepted(stress[i], verdict, float(params["acceptance_threshold"])):
                    accepted[(i, t)] = answer
                    by_slice[stress[i].slice]["accepted"] += 1
                else:
                    rejected += 1
                    by_slice[stress[i].slice]["rejected"] += 1
                    still.append(i)
            pending = still
    examples: list[Example] = []
    dropped: list[str] = []
    too_long = 0
    for i, prompt in enumerate(stress):
        found = [t for t in sampling if (i, t) in accepted]
        if not found:
            dropped.append(prompt.prompt_id)
            by_slice[prompt.slice]["dropped"] += 1
        rows = {"student": student_rows[i], "teachers": [r[i] for r in prompt_rows]}
        for t in found:
            example = _example(setup, prompt, t, accepted[(i, t)], rows)
            too_long += example is None
            examples += [example] if example is not None else []
    return {
        "examples": examples,
        "by_slice": dict(sorted(by_slice.items())),
        "accepted": len(accepted),
        "rejected": rejected,
        "dropped": dropped,
        "too_long": too_long,
    }


def _attach_targets(setup: RoundSetup, examples: list[Example]) -> None:
    """The teachers' top-k targets of every example, computed in batches (token level only)."""
    size = setup.params["batch_size"]
    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        lengths = [e.answer_length for e in chunk]
        teachers = [(t.chat, [e.teacher_rows[k] for e in chunk]) for k, t in enumerate(setup.teachers)]
        values, indices = teacher_topk(
            teachers, lengths, temperature=float(setup.params["temperature"]), top_k=setup.params["top_k"]
        )
        offset = 0
        for example, length in zip(chunk, lengths, strict=True):
            example.targets = (values[offset : offset + length], indices[offset : offset + length])
            offset += length


def _loss(setup: RoundSetup, batch: list[Example]) -> torch.Tensor:
    params = setup.params
    logits = answer_logits(setup.student, [e.student_ids for e in batch], [e.answer_length for e in batch]).float()
    tokens = torch.tensor([t for e in batch for t in e.student_ids[-e.answer_length :]], device=logits.device)
    ce = torch.nn.functional.cross_entropy(logits, tokens)
    alpha = float(params["alpha"]) if params["level"] == LEVEL_TOKEN else 0.0
    if alpha == 0.0:
        return ce
    temperature = float(params["temperature"])
    values = torch.cat([e.targets[0] for e in batch if e.targets is not None]).to(logits.device)
    indices = torch.cat([e.targets[1] for e in batch if e.targets is not None]).to(logits.device)
    teacher = values / values.sum(dim=-1, keepdim=True)
    student = torch.log_softmax(logits.gather(-1, indices) / temperature, dim=-1)
    kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - student)).sum(dim=-1).mean()
    return alpha * kl * temperature**2 + (1.0 - alpha) * ce


def _train(
    setup: RoundSetup, optimizer: torch.optim.Optimizer, examples: list[Example], round_number: int, span: tuple
) -> list[float]:
    """``steps`` optimizer steps over ``examples``; the loss of each step."""
    params = setup.params
    steps, size = params["steps"], params["batch_size"]
    generator = torch.Generator().manual_seed(row_seed(setup.seed, "order", round_number))
    order: list[int] = []
    while len(order) < steps * size:
        order += torch.randperm(len(examples), generator=generator).tolist()
    losses = []
    model = setup.student.model
    model.train()
    try:
        for step in range(steps):
            batch = [examples[j] for j in order[step * size : (step + 1) * size]]
            loss = _loss(setup, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            fraction = span[0] + (span[1] - span[0]) * (step + 1) / steps
            setup.report(f"training round {round_number}", round(fraction, 6))
    finally:
        model.eval()
    return losses


def _data_digest(examples: Sequence[Example]) -> str:
    return digest(sorted([e.prompt.prompt_id, e.answer.text] for e in examples))


def round_record(
    round_number: int,
    stress: Sequence[ChatPrompt],
    added: int,
    sampled: dict,
    losses: list[float],
    heldout: dict,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The JSON-serialisable record of a finished round. ``seconds``: "sampling", "training" (the teachers'
    targets and the optimizer steps), "evaluating" and "targets" (the part of training spent on the teachers'
    top-k); "seconds_per_step" counts the optimizer steps only."""
    steps = len(losses)
    return {
        "round": round_number,
        "stress_prompts": len(stress),
        "added_failures": added,
        "training_examples": len(sampled["examples"]),
        "accepted": sampled["accepted"],
        "rejected": sampled["rejected"],
        "dropped_prompts": len(sampled["dropped"]),
        "dropped_prompt_ids": sampled["dropped"][:LISTED_IDS],
        "too_long": sampled["too_long"],
        "by_slice": sampled["by_slice"],
        "data_digest": _data_digest(sampled["examples"]),
        "trained": steps > 0,
        "steps": steps,
        "loss": {"first": losses[0], "last": losses[-1], "mean": sum(losses) / steps} if steps else None,
        "heldout": heldout,
        "seconds": seconds,
        "seconds_per_step": round((seconds["training"] - seconds["targets"]) / steps, 6) if steps else None,
    }


def run_rounds(setup: RoundSetup, data: BehaviourData) -> list[dict[str, Any]]:
    """The rounds (see the module); their records, each also passed to ``setup.on_round``."""
    params = setup.params
    rounds = params["rounds"]
    optimizer = torch.optim.AdamW(setup.student.model.parameters(), lr=float(params["lr"]))
    stress, added = list(data.stress), 0
    records = []
    low, high = setup.span
    width = (high - low) / rounds
    for number in range(1, rounds + 1):
        start = low + width * (number - 1)
        marks = (start, start + width * 0.4, start + width * 0.85, start + width)
        began = time.perf_counter()
        sampled = _sample(setup, stress, number, marks[0], marks[1])
        sampling = time.perf_counter() - began
        began = time.perf_counter()
        examples = sampled["examples"]
        losses: list[float] = []
        targets = 0.0
        if examples:
            setup.report(f"training round {number}", round(marks[1], 6))
            if params["level"] == LEVEL_TOKEN:
                _attach_targets(setup, examples)
            targets = time.perf_counter() - began
            losses = _train(setup, optimizer, examples, number, (marks[1], marks[2]))
        training = time.perf_counter() - began
        began = time.perf_counter()
        setup.report(f"evaluating round {number}", round(marks[2], 6))

        def on_batch(done: int, number: int = number, a: float = marks[2], b: float = marks[3]) -> None:
            setup.report(f"evaluating round {number}", round(a + (b - a) * done / len(data.heldout), 6))

        behaviours, heldout = greedy_behaviours(
            setup.student, data.heldout, setup.student_system_prompt, setup.judge, params, on_batch
        )
        seconds = {
            "sampling": round(sampling, 3),
            "training": round(training, 3),
            "evaluating": round(time.perf_counter() - began, 3),
            "targets": round(targets, 3),
        }
        record = round_record(number, stress, added, sampled, losses, heldout, seconds)
        records.append(record)
        if setup.on_round is not None:
            setup.on_round(record)
        if setup.feed_failures and number < rounds:
            known = {p.prompt_id for p in stress}
            new = [p for p, b in zip(data.heldout, behaviours, strict=True) if is_failure(p, b)]
            new = [p for p in new if p.prompt_id not in known]
            stress, added = stress + new, len(new)
    return records


def save_student(student: Any, source_dir: Path, output_dir: Path, recipe: dict[str, Any]) -> None:
    """save_pretrained (safetensors) + the source's tokenizer files, chat template, generation config and
    recipe.json (format hf-dir, model kind chat)."""
    student.save_pretrained(str(output_dir), safe_serialization=True)
    copy_tokenizer_files(source_dir, output_dir)
    copy_chat_files(source_dir, output_dir)
    full = {**recipe, "format": FORMAT_HF_DIR, "model_kind": MODEL_KIND_CHAT}
    (output_dir / RECIPE_FILE).write_bytes(canonical_bytes(full))


def _inputs(ctx: MethodContext) -> tuple[BehaviourData, JudgeFn]:
    data, judge = ctx.request.behaviour_data, ctx.request.judge
    if not isinstance(data, BehaviourData):
        raise EngineError(EngineErrorCode.EMPTY_INPUT, "method 'behavioural_distill' needs behaviour_data")
    if not data.stress:
        raise EngineError(EngineErrorCode.EMPTY_INPUT, "method 'behavioural_distill' needs a non-empty stress set")
    if not callable(judge):
        raise EngineError(EngineErrorCode.INVALID_INPUT, "method 'behavioural_distill' needs a judge function")
    return data, judge


def _teachers(ctx: MethodContext) -> list[Teacher]:
    loaded = [ctx.loaded] + [load_chat_model(Path(path), device="cpu") for path in ctx.request.teachers]
    system_prompt = ctx.request.system_prompt
    return [Teacher(ChatModel.of(item, ctx.device), system_prompt) for item in loaded]


def run_behavioural_distill(ctx: MethodContext) -> MethodOutput:
    """The method (see the module): rounds, then the student saved as an hf-dir chat model."""
    params, request = ctx.parameters, ctx.request
    data, judge = _inputs(ctx)
    if params["level"] not in (LEVEL_TOKEN, LEVEL_SEQUENCE):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"parameter 'level' {params['level']!r} is unknown")
    ctx.report("student", 0.12)
    with seeded(request.seed):
        model, shape = build_chat_student(ctx.loaded.model, params["layers_kept"], params["intermediate_size"])
        teachers = _teachers(ctx)
        student = ChatModel(
            model.to(ctx.device),
            ctx.loaded.tokenizer,
            teachers[0].chat.eos_ids,
            teachers[0].chat.pad_id,
            teachers[0].chat.chat_template,
            ctx.device,
        )
        vocabulary = [same_vocabulary(t.chat.tokenizer, student.tokenizer) for t in teachers]
        if params["level"] == LEVEL_TOKEN and not all(vocabulary):
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER,
                "the teachers do not share one tokenizer, so token-level KL cannot average their distributions: "
                "use level 'sequence'",
            )
        setup = RoundSetup(
            teachers=teachers,
            student=student,
            student_system_prompt=request.system_prompt,
            judge=judge,
            params=params,
            seed=request.seed,
            report=ctx.report,
            on_round=request.on_round,
            student_vocabulary=vocabulary,
        )
        records = run_rounds(setup, data)
    ctx.report("saving", 0.94)
    model.to("cpu").eval()
    ctx.make_output_dir()
    recipe = {
        "method": "behavioural_distill",
        "level": params["level"],
        "teachers": len(teachers),
        "layers_kept": shape["layers_kept"],
        "kept_layer_indices": shape["kept_layer_indices"],
        "intermediate_size": shape["intermediate_size"],
        "lm_head": {"rule": "trained with the student", "reason": "distillation trains every weight"},
    }
    save_student(model, ctx.source_dir, ctx.output_dir, recipe)
    totals = {
        "accepted": sum(r["accepted"] for r in records),
        "rejected": sum(r["rejected"] for r in records),
        "dropped_prompts": sum(r["dropped_prompts"] for r in records),
        "training_examples": sum(r["training_examples"] for r in records),
    }
    return MethodOutput(
        format=FORMAT_HF_DIR,
        details={
            "rounds": records,
            "student": shape,
            "teachers": len(teachers),
            "level": params["level"],
            "acceptance": totals,
            "system_prompt": request.system_prompt is not None,
            "deterministic": ctx.device.type == "cpu",
        },
    )
