"""Batch generation by a chat model under a generation profile, with runtime figures, optionally the stability pass
(everything generated again in batches recomposed at random) and the teacher-forced likelihood of reference answers.

Decoding is a plain greedy loop over the model's forward pass (key/value cache, left padding, explicit position
ids) rather than ``model.generate``: transformers fills whatever a caller leaves unset from the model folder's
``generation_config.json`` (sampling switches, repetition penalties, minimum lengths), so an answer would depend
on a file the profile does not cover. Here the profile is everything: the argmax of the logits at every step
(ties: the lowest token id), until an end-of-sequence token, a stop string or ``max_new_tokens``. Only the
end-of-sequence ids are read from the model (tokenizer and generation config), since they belong to its template.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compression.engine.chat import load_chat_model, render_prompt
from compression.engine.common import peak_rss_bytes
from compression.engine.cpu import compute_platform
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.kinds import chat_template_digest, require_chat_template
from compression.engine.manifest import dir_size
from compression.engine.parameters import count_parameters
from evaluations.engine.generation_profile import GenerationProfile
from evaluations.engine.predict import _use_quantized_engine, recomposed_order

__all__ = [
    "ChatRunner",
    "FinishReason",
    "GenerationResult",
    "generate",
    "load_chat_for_inference",
    "perplexity",
    "render_prompt",
]

Progress = Callable[[int, int], None]


class FinishReason:
    """Why an answer ended."""

    EOS = "eos"  # the model wrote an end-of-sequence (end-of-turn) token
    STOP_STRING = "stop_string"  # the answer contained one of the profile's stop strings (cut before it)
    LENGTH = "length"  # max_new_tokens reached


@dataclass(frozen=True)
class GenerationResult:
    """Per prompt, in input order: the answer (``outputs``, special tokens removed, cut before the first stop
    string), how many tokens the model generated for it (``output_token_counts``: up to and including the token
    that ended it, so an end-of-sequence token counts), the templated prompt's length and why the answer ended.

    Runtime of the main pass: ``batch_latencies_s`` with ``batch_sizes`` (tokenisation is done before, decoding
    of the text inside), ``generation_seconds`` their total, ``tokens_per_second`` = generated tokens /
    generation seconds; ``load_seconds`` (model loading, cached per worker: ~0 when reused),
    ``peak_rss_bytes`` (the process peak), ``parameter_count``, ``size_bytes`` (the artifact folder),
    ``platform`` (compression.engine.cpu.compute_platform), ``chat_template_digest`` (of the template used).

    Stability pass (``stability_seed`` given): ``recomposed_outputs`` generated in batches drawn by a seeded
    permutation, same batch size, everything else identical; ``stable`` per prompt: the text is identical in
    both passes; ``recompose_seconds``. None / 0.0 without one.

    References (``references`` given): ``reference_nll`` (sum over the reference's tokens of the negative log
    likelihood, natural log, given the templated prompt) and ``reference_token_counts``; None where the
    reference is None; ``nll_seconds``. See ``perplexity``."""

    outputs: tuple[str, ...]
    output_token_counts: tuple[int, ...]
    prompt_token_counts: tuple[int, ...]
    finish_reasons: tuple[str, ...]
    batch_latencies_s: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    generation_seconds: float
    tokens_per_second: float
    load_seconds: float
    peak_rss_bytes: int
    parameter_count: int
    size_bytes: int
    chat_template_digest: str
    eos_token_ids: tuple[int, ...]
    platform: dict
    profile: dict
    recomposed_outputs: tuple[str, ...] | None = None
    stable: tuple[bool, ...] | None = None
    recompose_seconds: float = 0.0
    reference_nll: tuple[float | None, ...] | None = None
    reference_token_counts: tuple[int | None, ...] | None = None
    nll_seconds: float = 0.0

    def perplexity(self, indexes: Sequence[int] | None = None) -> float | None:
        """exp(sum NLL / sum tokens) over ``indexes`` (all prompts when None); see ``perplexity``."""
        if self.reference_nll is None or self.reference_token_counts is None:
            return None
        chosen = range(len(self.outputs)) if indexes is None else indexes
        return perplexity([self.reference_nll[i] for i in chosen], [self.reference_token_counts[i] for i in chosen])


def perplexity(nll: Sequence[float | None], token_counts: Sequence[int | None]) -> float | None:
    """The capability figure of a group: exp(sum of NLL / sum of tokens) over the examples with a reference
    (None entries skipped); None when the group has no reference token."""
    pairs = [(n, c) for n, c in zip(nll, token_counts, strict=True) if n is not None and c]
    tokens = sum(c for _, c in pairs)
    return math.exp(sum(n for n, _ in pairs) / tokens) if tokens else None


@functools.lru_cache(maxsize=2)
def _cached_chat_model(model_dir: str, device: str, quantized_engine: str | None) -> Any:
    """Artifacts are immutable, so a worker evaluating many chunks of one model loads it once (two entries: a
    baseline and a candidate); the quantized engine is part of the key (int8 weights are packed for it)."""
    return load_chat_model(Path(model_dir), device=device)


def load_chat_for_inference(model_dir: Path, profile: GenerationProfile) -> Any:
    """The (cached) loaded chat model, with the profile's quantized engine active."""
    _use_quantized_engine(profile.quantized_engine)
    return _cached_chat_model(str(Path(model_dir).resolve()), profile.device, profile.quantized_engine)


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _eos_ids(loaded: Any) -> tuple[int, ...]:
    """The tokens that end an answer: the loader's (compression.engine.chat: the generation config's, else the
    tokenizer's), else both of those (ChatML models end a turn with <|im_end|>)."""
    named = getattr(loaded, "eos_token_ids", None)
    if named:
        return tuple(sorted(set(_as_ids(named))))
    ids = set(_as_ids(getattr(loaded.tokenizer, "eos_token_id", None)))
    generation_config = getattr(loaded.model, "generation_config", None)
    ids.update(_as_ids(getattr(generation_config, "eos_token_id", None)))
    if not ids:
        raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, "the chat model names no end-of-sequence token")
    return tuple(sorted(ids))


class ChatRunner:
    """Encode prompts, generate one batch greedily, score references: the same for every pass."""

    def __init__(self, loaded: Any, profile: GenerationProfile) -> None:
        self.loaded, self.profile = loaded, profile
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.device = torch.device(profile.device)
        self.eos_ids = _eos_ids(loaded)
        pad = getattr(loaded, "pad_token_id", getattr(self.tokenizer, "pad_token_id", None))
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        self.chat_template: str | None = getattr(loaded, "chat_template", None)  # the digested template
        self._keep_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        positions = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        self.positions: int | None = positions if isinstance(positions, int) else None

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each templated prompt (the template carries its own special tokens). EngineError
        "invalid_input" when a prompt and its answer would not fit in the model's positions."""
        texts = [render_prompt(self.tokenizer, p, self.profile.system_prompt, self.chat_template) for p in prompts]
        encoded = [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        if self.positions is not None:
            for i, ids in enumerate(encoded):
                if len(ids) + self.profile.max_new_tokens > self.positions:
                    raise EngineError(
                        EngineErrorCode.INVALID_INPUT,
                        f"prompt {i} is {len(ids)} tokens once templated: with max_new_tokens "
                        f"{self.profile.max_new_tokens} it exceeds the model's {self.positions} positions",
                    )
        return encoded

    def encode_references(self, references: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(list(references), add_special_tokens=False)["input_ids"]]

    def _left_pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row) :] = 1
        # Positions count real tokens only, so a left-padded prompt sees the positions it has alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def _forward(self, keep: int, **inputs: Any) -> Any:
        if self._keep_logits:
            inputs["logits_to_keep"] = keep
        return self.model(**inputs)

    def _stopped_at(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self.profile.stop_strings) if i >= 0]
        return min(found) if found else None

    def generate_batch(self, rows: Sequence[Sequence[int]]) -> list[tuple[str, int, str]]:
        """(answer, generated tokens, finish reason) per row of prompt ids, decoded greedily together."""
        n, limit = len(rows), self.profile.max_new_tokens
        ids, mask, positions = self._left_pad(rows)
        generated = torch.full((n, limit), self.pad_id, dtype=torch.long, device=self.device)
        counts, reasons = [0] * n, [FinishReason.LENGTH] * n
        done = [False] * n
        out = self._forward(1, input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        for step in range(limit):
            token = out.logits[:, -1, :].argmax(dim=-1)
            if any(done):  # finished rows are fed padding: their answers are complete
                token = token.masked_fill(torch.tensor(done, device=self.device), self.pad_id)
            generated[:, step] = token
            for i, value in enumerate(token.tolist()):
                if not done[i]:
                    counts[i] = step + 1
                    if value in self.eos_ids:
                        done[i], reasons[i] = True, FinishReason.EOS
            if self.profile.stop_strings:
                self._mark_stop_strings(generated, step, done, reasons)
            if all(done) or step == limit - 1:
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=self.device)], dim=1)
            positions = positions[:, -1:] + 1
            out = self._forward(
                1,
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        results = []
        for i in range(n):
            kept = generated[i, : counts[i]].tolist()
            if reasons[i] == FinishReason.EOS:
                kept = kept[:-1]
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            cut = self._stopped_at(text) if self.profile.stop_strings else None
            if cut is not None:
                text, reasons[i] = text[:cut], FinishReason.STOP_STRING
            results.append((text, counts[i], reasons[i]))
        return results

    def _mark_stop_strings(self, generated: torch.Tensor, step: int, done: list[bool], reasons: list[str]) -> None:
        open_rows = [i for i in range(len(reasons)) if not done[i]]
        if not open_rows:
            return
        texts = self.tokenizer.batch_decode(generated[open_rows, : step + 1].tolist(), skip_special_tokens=True)
        for i, text in zip(open_rows, texts, strict=True):
            if self._stopped_at(text) is not None:
                done[i], reasons[i] = True, FinishReason.STOP_STRING

    def reference_nll(self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[float]:
        """Teacher-forced NLL (sum over each answer's tokens, natural log) of ``answers`` after ``prompts``, in
        one left-padded batch (so every answer ends at the last position and only its logits are kept)."""
        rows = [list(p) + list(a) for p, a in zip(prompts, answers, strict=True)]
        too_long = [len(row) for row in rows if self.positions is not None and len(row) > self.positions]
        if too_long:
            raise EngineError(
                EngineErrorCode.INVALID_INPUT,
                f"a prompt with its reference is {too_long[0]} tokens: over the model's {self.positions} positions",
            )
        ids, mask, positions = self._left_pad(rows)
        width = ids.shape[1]
        keep = min(max(len(a) for a in answers) + 1, width)
        logits = self._forward(keep, input_ids=ids, attention_mask=mask, position_ids=positions).logits
        start = width - logits.shape[1]  # the position of logits[:, 0]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for i, answer in enumerate(answers):
            r = len(answer)
            if r == 0:
                out.append(0.0)
                continue
            predicting = log_probs[i, width - r - 1 - start : width - 1 - start]  # positions before each token
            targets = ids[i, width - r :]
            out.append(-float(predicting.gather(-1, targets[:, None]).double().sum()))
        return out


def _generation_pass(
    runner: ChatRunner, encoded: Sequence[list[int]], order: np.ndarray, report: Callable[[int], None] | None
) -> tuple[list[tuple[str, int, str]], list[float], list[int]]:
    size = runner.profile.batch_size
    results: list[tuple[str, int, str] | None] = [None] * len(encoded)
    latencies: list[float] = []
    sizes: list[int] = []
    for start in range(0, len(order), size):
        index = [int(i) for i in order[start : start + size]]
        started = time.perf_counter()
        for i, result in zip(index, runner.generate_batch([encoded[i] for i in index]), strict=True):
            results[i] = result
        latencies.append(time.perf_counter() - started)
        sizes.append(len(index))
        if report is not None:
            report(start + len(index))
    return [r for r in results if r is not None], latencies, sizes


def _check_inputs(
    prompts: Sequence[str], references: Sequence[str | None] | None, stability_seed: int | None
) -> tuple[list[str], list[str | None] | None]:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise EngineError(EngineErrorCode.INVALID_INPUT, "prompts must be a sequence of strings")
    if references is not None:
        if isinstance(references, str) or len(references) != len(prompts):
            raise EngineError(EngineErrorCode.INVALID_INPUT, "references must be a sequence as long as prompts")
        if not all(r is None or isinstance(r, str) for r in references):
            raise EngineError(EngineErrorCode.INVALID_INPUT, "each reference must be a string or None")
    if stability_seed is not None and not (type(stability_seed) is int and stability_seed >= 0):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "stability_seed must be None or an integer >= 0")
    return list(prompts), None if references is None else list(references)


def _template_digest(model_dir: Path) -> str:
    """sha256 of the model's chat template; EngineError "no_chat_template" (kinds) when it has none."""
    digest = chat_template_digest(model_dir)
    if digest is None:
        require_chat_template(model_dir)  # raises, naming where a template is looked for
        raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, "the model has no chat template")
    return digest


def generate(
    model_dir: Path,
    prompts: Sequence[str],
    profile: GenerationProfile,
    *,
    stability_seed: int | None = None,
    references: Sequence[str | None] | None = None,
    progress: Progress | None = None,
) -> GenerationResult:
    """Answer ``prompts`` with the chat model in ``model_dir`` under ``profile`` (results in input order),
    calling progress(done, total) after each batch (the stability pass and the reference scoring each count as
    one more share). Raises EngineError: "invalid_input" for bad prompts or references, "invalid_parameter" when
    the model's chat template is not the profile's ``chat_template_digest``, "unsupported_platform" for a
    quantized engine this machine lacks, and the loader's errors for a bad artifact."""
    prompts, refs = _check_inputs(prompts, references, stability_seed)
    digest = _template_digest(Path(model_dir))
    if profile.chat_template_digest is not None and profile.chat_template_digest != digest:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"generation.chat_template_digest: the profile expects chat template {profile.chat_template_digest}, "
            f"this model's is {digest}",
        )
    load_started = time.perf_counter()
    loaded = load_chat_for_inference(model_dir, profile)
    load_seconds = time.perf_counter() - load_started
    total = len(prompts)
    scored = [] if refs is None else [i for i, r in enumerate(refs) if r is not None]
    shares = [total, total if stability_seed is not None else 0, len(scored)]
    grand_total = sum(shares)

    def report(offset: int) -> Callable[[int], None] | None:
        if progress is None:
            return None
        return lambda done: progress(offset + done, grand_total)

    runner = ChatRunner(loaded, profile)
    previous_threads = torch.get_num_threads()
    recomposed: list[tuple[str, int, str]] | None = None
    recompose_seconds = nll_seconds = 0.0
    nll: list[float | None] | None = None
    ref_counts: list[int | None] | None = None
    try:
        if profile.threads is not None:
            torch.set_num_threads(profile.threads)
        with torch.inference_mode():
            encoded = runner.encode(prompts) if prompts else []
            results, latencies, sizes = _generation_pass(runner, encoded, np.arange(total), report(0))
            if stability_seed is not None:
                started = time.perf_counter()
                recomposed, _, _ = _generation_pass(
                    runner, encoded, recomposed_order(total, stability_seed), report(total)
                )
                recompose_seconds = time.perf_counter() - started
            if refs is not None:
                started = time.perf_counter()
                nll, ref_counts = _score_references(runner, encoded, refs, scored, report(shares[0] + shares[1]))
                nll_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)

    generation_seconds = float(sum(latencies))
    generated_tokens = sum(r[1] for r in results)
    outputs = tuple(r[0] for r in results)
    return GenerationResult(
        outputs=outputs,
        output_token_counts=tuple(r[1] for r in results),
        prompt_token_counts=tuple(len(e) for e in encoded),
        finish_reasons=tuple(r[2] for r in results),
        batch_latencies_s=tuple(latencies),
        batch_sizes=tuple(sizes),
        generation_seconds=generation_seconds,
        tokens_per_second=generated_tokens / generation_seconds if generation_seconds > 0 else 0.0,
        load_seconds=load_seconds,
        peak_rss_bytes=peak_rss_bytes(),
        parameter_count=count_parameters(loaded.model),
        size_bytes=dir_size(Path(model_dir)),
        chat_template_digest=digest,
        eos_token_ids=runner.eos_ids,
        platform=compute_platform(profile.device),
        profile=profile.as_dict(),
        recomposed_outputs=None if recomposed is None else tuple(r[0] for r in recomposed),
        stable=None if recomposed is None else tuple(a == b[0] for a, b in zip(outputs, recomposed, strict=True)),
        recompose_seconds=recompose_seconds,
        reference_nll=None if nll is None else tuple(nll),
        reference_token_counts=None if ref_counts is None else tuple(ref_counts),
        nll_seconds=nll_seconds,
    )


def _score_references(
    runner: ChatRunner,
    encoded: Sequence[list[int]],
    refs: Sequence[str | None],
    scored: Sequence[int],
    report: Callable[[int], None] | None,
) -> tuple[list[float | None], list[int | None]]:
    """NLL and token count per reference (None where the reference is None), in batches of the profile's size
    in input order."""
    nll: list[float | None] = [None] * len(refs)
    counts: list[int | None] = [None] * len(refs)
    answers = runner.encode_references([refs[i] or "" for i in scored]) if scored else []
    size = runner.profile.batch_size
    for start in range(0, len(scored), size):
        index = list(scored[start : start + size])
        batch_answers = answers[start : start + size]
        for i, answer, value in zip(
            index, batch_answers, runner.reference_nll([encoded[i] for i in index], batch_answers), strict=True
        ):
            nll[i], counts[i] = value, len(answer)
        if report is not None:
            report(start + len(index))
    return nll, counts
