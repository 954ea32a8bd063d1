"""Decoding and teacher targets for behavioural distillation of chat models (torch only, no Django).

``decode`` is a small key/value-cache loop over the model's forward pass with left padding and explicit
position ids (as ``evaluations.engine.generate.ChatRunner``): greedy (argmax, ties to the lowest id) or
sampled at a temperature with one ``torch.Generator`` per row, seeded by the caller (``row_seed``), so a
row's draws do not depend on which other rows share its batch or how many are still open. Probabilities are
sampled on the CPU, so a seed draws the same tokens on any device given the same logits.

``answer_logits`` runs a model on left-padded (prompt + answer) rows and returns only the logits that predict
the answer tokens (``logits_to_keep`` where the model supports it), packed row after row.
``teacher_topk`` averages the teachers' softmax(logits / T) at those positions and keeps the top-k
probabilities and their token ids: the full vocabulary is never stored per example.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from compression.engine.errors import EngineError, EngineErrorCode
from trust.canonical import canonical_bytes

__all__ = ["Decoded", "ChatModel", "row_seed", "decode", "answer_logits", "teacher_topk"]


def row_seed(*parts: Any) -> int:
    """A 63-bit seed from JSON-serialisable ``parts`` (e.g. seed, round, teacher, prompt id, sample index)."""
    return int.from_bytes(hashlib.sha256(canonical_bytes(list(parts))).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Decoded:
    """One generated answer: its token ids without the end-of-turn token, that token (None when
    max_new_tokens was reached first) and the text (special tokens removed)."""

    ids: tuple[int, ...]
    end_token: int | None
    text: str


@dataclass
class ChatModel:
    """A causal LM with what decoding needs: tokenizer, end-of-turn ids, pad id, chat template, device."""

    model: Any
    tokenizer: Any
    eos_ids: tuple[int, ...]
    pad_id: int
    chat_template: str | None
    device: torch.device

    @classmethod
    def of(cls, loaded: Any, device: torch.device) -> ChatModel:
        """From a compression.engine.chat.LoadedChatModel (its model is moved to ``device``)."""
        loaded.model.to(device)
        eos = tuple(sorted(set(loaded.eos_token_ids)))
        if not eos:
            raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, "the chat model names no end-of-turn token")
        return cls(loaded.model, loaded.tokenizer, eos, int(loaded.pad_token_id), loaded.chat_template, device)

    @property
    def positions(self) -> int | None:
        value = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        return value if isinstance(value, int) else None

    @property
    def keeps_logits(self) -> bool:
        return "logits_to_keep" in inspect.signature(self.model.forward).parameters


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    # Positions count real tokens only, so a left-padded row sees the positions it has alone.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _forward(chat: ChatModel, keep: int, **inputs: Any) -> Any:
    if chat.keeps_logits:
        inputs["logits_to_keep"] = keep
    return chat.model(**inputs)


def _next_tokens(
    logits: torch.Tensor, open_rows: list[int], temperature: float | None, generators: list | None
) -> list[int]:
    tokens = logits.argmax(dim=-1).tolist()
    if temperature is None or generators is None:
        return tokens
    probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    for i in open_rows:
        tokens[i] = int(torch.multinomial(probs[i], 1, generator=generators[i]))
    return tokens


def _decode_batch(
    chat: ChatModel, rows: Sequence[Sequence[int]], max_new_tokens: int, temperature: float | None, seeds: list | None
) -> list[Decoded]:
    n = len(rows)
    generators = None if seeds is None else [torch.Generator().manual_seed(seed) for seed in seeds]
    ids, mask, positions = _left_pad(rows, chat.pad_id, chat.device)
    answers: list[list[int]] = [[] for _ in range(n)]
    ends: list[int | None] = [None] * n
    done = [False] * n
    out = _forward(chat, 1, input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    for step in range(max_new_tokens):
        open_rows = [i for i in range(n) if not done[i]]
        tokens = _next_tokens(out.logits[:, -1, :], open_rows, temperature, generators)
        for i in open_rows:
            if tokens[i] in chat.eos_ids:
                done[i], ends[i] = True, tokens[i]
            else:
                answers[i].append(tokens[i])
        if all(done) or step == max_new_tokens - 1:
            break
        fed = torch.tensor([chat.pad_id if i not in open_rows else tokens[i] for i in range(n)], device=chat.device)
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=chat.device)], dim=1)
        positions = positions[:, -1:] + 1
        out = _forward(
            chat,
            1,
            input_ids=fed[:, None],
            attention_mask=mask,
            position_ids=positions,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
    texts = chat.tokenizer.batch_decode(answers, skip_special_tokens=True)
    return [Decoded(tuple(a), e, t) for a, e, t in zip(answers, ends, texts, strict=True)]


def decode(
    chat: ChatModel,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    temperature: float | None = None,
    seeds: Sequence[int] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[Decoded]:
    """An answer per row of prompt ids, in batches of ``batch_size`` in the given order: greedy when
    ``temperature`` is None, else sampled at ``temperature`` with row i's generator seeded by ``seeds[i]``.
    ``on_batch(done)`` after each batch (it may raise to cancel). EngineError "invalid_input" when a prompt
    and max_new_tokens do not fit in the model's positions."""
    if temperature is not None and (seeds is None or len(seeds) != len(rows)):
        raise ValueError("sampling needs one seed per row")
    limit = chat.positions
    for i, row in enumerate(rows):
        if not row or (limit is not None and len(row) + max_new_tokens > limit):
            raise EngineError(
                EngineErrorCode.INVALID_INPUT,
                f"prompt {i} is {len(row)} tokens once templated: with max_new_tokens {max_new_tokens} it does not "
                f"fit in the model's {limit} positions",
            )
    out: list[Decoded] = []
    was_training = chat.model.training
    chat.model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                chunk = [list(r) for r in rows[start : start + batch_size]]
                chunk_seeds = None if seeds is None else list(seeds[start : start + batch_size])
                out.extend(_decode_batch(chat, chunk, max_new_tokens, temperature, chunk_seeds))
                if on_batch is not None:
                    on_batch(len(out))
    finally:
        chat.model.train(was_training)
    return out


def answer_logits(chat: ChatModel, rows: Sequence[Sequence[int]], answer_lengths: Sequence[int]) -> torch.Tensor:
    """(sum of answer_lengths, vocabulary) logits: for each row (prompt + answer, the answer being its last
    ``answer_lengths[i]`` tokens, each >= 1 and < the row's length), the logits at the positions that predict
    its answer tokens, rows one after the other. Runs with gradients when the caller does."""
    ids, mask, positions = _left_pad(rows, chat.pad_id, chat.device)
    width = ids.shape[1]
    keep = min(max(answer_lengths) + 1, width)
    logits = _forward(chat, keep, input_ids=ids, attention_mask=mask, position_ids=positions).logits
    offset = width - logits.shape[1]  # the position of logits[:, 0]
    parts = [logits[i, width - a - 1 - offset : width - 1 - offset] for i, a in enumerate(answer_lengths)]
    return torch.cat(parts, dim=0)


def teacher_topk(
    teachers: Sequence[tuple[ChatModel, Sequence[Sequence[int]]]],
    answer_lengths: Sequence[int],
    *,
    temperature: float,
    top_k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values float32, indices int64), each (sum of answer_lengths, top_k) on the CPU: the top-k entries of
    the teachers' averaged softmax(logits / T) at every answer position. Each teacher reads its own rows
    (its own rendering of the prompts) with the same answer tokens at the end; all share one vocabulary."""
    total: torch.Tensor | None = None
    with torch.inference_mode():
        for chat, rows in teachers:
            probs = torch.softmax(answer_logits(chat, rows, answer_lengths).float() / temperature, dim=-1).cpu()
            if total is not None and probs.shape != total.shape:
                raise EngineError(
                    EngineErrorCode.INVALID_PARAMETER,
                    "the teachers' vocabularies differ, so token-level KL cannot average them: use level 'sequence'",
                )
            total = probs if total is None else total.add_(probs)
    assert total is not None
    top = torch.topk(total / len(teachers), min(top_k, total.shape[-1]), dim=-1)
    return top.values.float().contiguous(), top.indices.to(torch.int64).contiguous()
