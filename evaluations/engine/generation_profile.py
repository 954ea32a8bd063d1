"""The generation profile: how a chat model is run when it is evaluated, declared and part of the configuration digest.

A chat model's answers depend on more than its weights: the system prompt, the chat template that renders the
conversation, how many tokens it may write, where its answer is cut, how it decodes, and (as for classifiers,
see evaluations.engine.profile) the batch size, threads, device, and on a CPU the instruction sets and torch's
quantized engine. An evaluation states all of them, so the record says exactly what was evaluated.

Pure Python (no torch, no Django): the web layer checks a requested profile at request time (a 400 naming
``generation.<field>``, nothing run); the engine (evaluations.engine.generate) runs it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.generation import (
    MAX_NEW_TOKENS_LIMIT,
    MAX_STOP_STRING_CHARS,
    MAX_STOP_STRINGS,
    MAX_SYSTEM_PROMPT_CHARS,
    PREFIX,
    SETTING_CHECKS,
    short,
)
from evaluations.engine.profile import PROFILE_CHECKS

__all__ = [
    "Decoding",
    "GENERATION_FIELDS",
    "GenerationProfile",
    "MAX_BATCH_SIZE",
    "MAX_NEW_TOKENS_LIMIT",
    "MAX_STOP_STRINGS",
    "MAX_STOP_STRING_CHARS",
    "MAX_SYSTEM_PROMPT_CHARS",
    "generation_problems",
]

MAX_BATCH_SIZE = 256
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Decoding(StrEnum):
    """How the next token is chosen. Only greedy decoding is offered for evaluation.

    An evaluation is evidence only if it can be repeated: the same model, prompts and profile must give the
    same answers, so that a flip between baseline and candidate is the compression's doing and not a draw of
    the sampler, and so that a reviewer or regulator who re-runs it sees the same text. Greedy decoding (the
    most likely token at every step) is deterministic; sampling (temperature, top-k, top-p) would need many
    samples per prompt and a seeded random stream that kernels and batch composition still perturb. What is
    left of non-determinism under greedy decoding (batch composition changing padding and kernel choices) is
    measured by the stability pass rather than hidden."""

    GREEDY = "greedy"


@dataclass(frozen=True)
class GenerationProfile:
    """How a chat model is run (see the module docstring).

    ``system_prompt`` (None: no system message) is sent as the conversation's system message;
    ``max_new_tokens`` bounds each answer (1..MAX_NEW_TOKENS_LIMIT); an answer is cut before the first of
    ``stop_strings`` and at the end-of-sequence token; ``decoding`` is "greedy" (see Decoding);
    ``batch_size`` prompts are generated together, left-padded, in input order; ``threads`` (None: torch's
    default) and ``device`` as for classifiers; ``isa`` and ``quantized_engine`` are the CPU's kernel
    instruction sets and torch's int8 engine (as in evaluations.engine.profile.DeploymentProfile);
    ``chat_template_digest`` (sha256 hex of the chat template, compression.engine.kinds) pins the template
    the evaluation expects: generation refuses a model whose template differs (None: whatever the model has,
    recorded in the result).

    Invalid values raise EngineError("invalid_parameter") whose message starts with ``generation.<field>``."""

    system_prompt: str | None = None
    max_new_tokens: int = 64
    stop_strings: tuple[str, ...] = ()
    decoding: str = Decoding.GREEDY.value
    batch_size: int = 8
    threads: int | None = None
    device: str = "cpu"
    isa: tuple[str, ...] = ()
    quantized_engine: str | None = None
    chat_template_digest: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop_strings, list):
            object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        if isinstance(self.isa, list):
            object.__setattr__(self, "isa", tuple(self.isa))
        problems = generation_problems(asdict(self))
        if problems:
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER, "; ".join(f"{k}: {' '.join(v)}" for k, v in problems.items())
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in field order (this is what the configuration digest covers)."""
        out = asdict(self)
        out["stop_strings"] = list(self.stop_strings)
        out["isa"] = list(self.isa)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, defaults: GenerationProfile | None = None) -> GenerationProfile:
        """``defaults`` (GenerationProfile() when None) with the given fields replaced. Raises
        EngineError("invalid_parameter") naming every bad field as ``generation.<field>`` (unknown fields
        too); call generation_problems for the same problems as a dict."""
        problems = generation_problems(data, partial=True)
        if problems:
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER, "; ".join(f"{k}: {' '.join(v)}" for k, v in problems.items())
            )
        merged = {**(defaults or cls()).as_dict(), **data}
        merged["stop_strings"] = tuple(merged["stop_strings"])
        merged["isa"] = tuple(merged["isa"])
        return cls(**merged)


GENERATION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GenerationProfile))


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


_CHECKS: dict[str, tuple[Any, str]] = {
    # the model's generation settings, checked as an experiment's (compression.engine.generation)
    **SETTING_CHECKS,
    "batch_size": (lambda v: _is_int(v, 1, MAX_BATCH_SIZE), f"An integer from 1 to {MAX_BATCH_SIZE}."),
    # the deployment fields, checked as a deployment profile's (evaluations.engine.profile)
    **{key: PROFILE_CHECKS[key] for key in ("threads", "device", "isa", "quantized_engine")},
    "chat_template_digest": (
        lambda v: v is None or (isinstance(v, str) and bool(_DIGEST.match(v))),
        "null or the sha256 of the chat template (64 lowercase hex digits).",
    ),
}


def generation_problems(data: Any, *, partial: bool = False) -> dict[str, list[str]]:
    """Every problem of a generation profile given as a dict, keyed ``generation.<field>`` ({} when valid).
    Unknown fields are problems; with ``partial`` missing fields are fine (they take the defaults), otherwise
    every field must be present."""
    if not isinstance(data, dict):
        return {"generation": ["Must be an object with some of: " + ", ".join(GENERATION_FIELDS) + "."]}
    problems: dict[str, list[str]] = {}
    for key in data:
        if key not in GENERATION_FIELDS:
            problems[PREFIX + str(key)] = [
                f"Unknown generation field; expected some of: {', '.join(GENERATION_FIELDS)}."
            ]
    for key, (ok, expected) in _CHECKS.items():
        if key not in data:
            if not partial:
                problems[PREFIX + key] = ["Missing."]
            continue
        try:
            valid = bool(ok(data[key]))
        except TypeError:  # unhashable values (a dict as decoding, a list inside stop_strings)
            valid = False
        if not valid:
            problems[PREFIX + key] = [f"{expected} Got {short(data[key])}."]
    return problems
