"""Frozen input/output records of the compression engine (torch-free)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from compression.engine.errors import EngineError, EngineErrorCode
from trust.canonical import digest as canonical_digest

__all__ = [
    "LabeledText",
    "CompressionData",
    "CompressionRequest",
    "CompressionResult",
    "DATA_FIELDS",
    "ChatPrompt",
    "BehaviourData",
    "JudgeFn",
]

# One example: (text, label index into the model's id2label).
LabeledText = tuple[str, int]

DATA_FIELDS: tuple[str, ...] = ("train", "stress", "heldout_adversarial", "calibration")


def _labeled_tuple(name: str, rows: Any) -> tuple[LabeledText, ...]:
    """Normalise ``rows`` to a tuple of (str, int); raise invalid_input naming the field otherwise."""
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise EngineError(
            EngineErrorCode.INVALID_INPUT, f"data field {name!r} must be a sequence of (text, label index) pairs"
        )
    out: list[LabeledText] = []
    for position, row in enumerate(rows):
        if not isinstance(row, (tuple, list)) or len(row) != 2:
            raise EngineError(
                EngineErrorCode.INVALID_INPUT, f"data field {name!r} row {position} is not a (text, label index) pair"
            )
        text, label = row
        if not isinstance(text, str) or not text.strip():
            raise EngineError(
                EngineErrorCode.INVALID_INPUT, f"data field {name!r} row {position} has an empty or non-string text"
            )
        if type(label) is not int or label < 0:
            raise EngineError(
                EngineErrorCode.INVALID_INPUT, f"data field {name!r} row {position} label must be an integer >= 0"
            )
        out.append((text, label))
    return tuple(out)


@dataclass(frozen=True)
class CompressionData:
    """Labelled texts handed to the engine by the caller (the engine never picks a data file itself).

    ``train``: distillation / recovery training set; ``stress``: edge-case and adversarial examples
    added to distillation training when ``use_stress`` is set; ``heldout_adversarial``: the split the
    iterative distillation loop evaluates the student on (its failures are added to training);
    ``calibration``: examples for structured-pruning importance scores. Labels index the model's classes.
    """

    train: tuple[LabeledText, ...] = ()
    stress: tuple[LabeledText, ...] = ()
    heldout_adversarial: tuple[LabeledText, ...] = ()
    calibration: tuple[LabeledText, ...] = ()

    def __post_init__(self) -> None:
        for name in DATA_FIELDS:
            object.__setattr__(self, name, _labeled_tuple(name, getattr(self, name)))

    def counts(self) -> dict[str, int]:
        """Number of examples per field."""
        return {name: len(getattr(self, name)) for name in DATA_FIELDS}

    def digest(self) -> str:
        """sha256 of canonical JSON {field: [[text, label], ...]} (sorted keys, no whitespace, UTF-8)."""
        payload = {name: [list(row) for row in getattr(self, name)] for name in DATA_FIELDS}
        return canonical_digest(payload)


# A judge of chat answers: given prompts and answers, one (behaviour, refusal probability) per answer, the
# behaviour one of compression.engine.kinds.CHAT_BEHAVIOURS ("compliance", "refusal", "degenerate").
JudgeFn = Callable[[Sequence[str], Sequence[str]], list[tuple[str, float]]]


@dataclass(frozen=True)
class ChatPrompt:
    """One prompt of behavioural distillation: ``prompt_id`` (stable, e.g. "advbench:17"), ``text``,
    ``harmful`` (True: the model should refuse; False: it should answer) and ``slice`` ("routine", "edge",
    "adversarial": free text, counted per slice)."""

    prompt_id: str
    text: str
    harmful: bool
    slice: str = ""


def _prompt_tuple(name: str, rows: Any) -> tuple[ChatPrompt, ...]:
    """``rows`` as a tuple of valid ChatPrompts with unique ids; invalid_input naming the field and row otherwise."""
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise EngineError(EngineErrorCode.INVALID_INPUT, f"behaviour data field {name!r} must be a sequence of prompts")
    out: list[ChatPrompt] = []
    seen: set[str] = set()
    for position, row in enumerate(rows):
        where = f"behaviour data field {name!r} row {position}"
        if not isinstance(row, ChatPrompt):
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"{where} is not a ChatPrompt")
        if not isinstance(row.prompt_id, str) or not row.prompt_id:
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"{where} has an empty or non-string prompt_id")
        if not isinstance(row.text, str) or not row.text.strip():
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"{where} has an empty or non-string text")
        if type(row.harmful) is not bool:
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"{where} harmful must be true or false")
        if not isinstance(row.slice, str):
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"{where} slice must be a string")
        if row.prompt_id in seen:
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"{where} repeats prompt_id {row.prompt_id!r}")
        seen.add(row.prompt_id)
        out.append(row)
    return tuple(out)


@dataclass(frozen=True)
class BehaviourData:
    """The prompts of behavioural distillation: ``stress`` (training prompts the teacher is stress-tested on)
    and ``heldout`` (the held-back adversarial split the student answers after each round). Prompt ids are
    unique within each list."""

    stress: tuple[ChatPrompt, ...] = ()
    heldout: tuple[ChatPrompt, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "stress", _prompt_tuple("stress", self.stress))
        object.__setattr__(self, "heldout", _prompt_tuple("heldout", self.heldout))

    def counts(self) -> dict[str, int]:
        """Number of prompts per list."""
        return {"stress": len(self.stress), "heldout": len(self.heldout)}

    def digest(self) -> str:
        """sha256 of canonical JSON {list: [[prompt_id, text, harmful, slice], ...]} (list order kept)."""
        return canonical_digest(
            {
                name: [[p.prompt_id, p.text, p.harmful, p.slice] for p in getattr(self, name)]
                for name in ("stress", "heldout")
            }
        )


@dataclass(frozen=True)
class CompressionRequest:
    """One compression job: ``method`` with ``parameters`` and ``seed`` applied to ``source_dir``.

    ``output_dir`` must not exist yet; the engine creates it. ``parameters`` is copied into a
    read-only mapping so the request cannot change after validation. ``data`` carries the labelled
    texts a method needs (calibration, training...); ``data_digest`` is the caller's identifier of
    that data (recorded in the result; when empty the engine records ``data.digest()``).
    ``teachers`` are extra teacher model directories for ``distill`` (``source_dir`` is always the
    first teacher). ``device`` is "cpu" (default) or "cuda"/"cuda:N" when available; int8 methods
    run on the CPU only.

    ``behavioural_distill`` (chat models) also reads ``behaviour_data`` (its prompts), ``judge`` (a JudgeFn),
    ``system_prompt`` (what teacher and student read when prompted; None: no system turn) and calls
    ``on_round(record)`` after each round (JSON-serialisable; it may raise to cancel). ``teachers`` may be set
    for it too. ``judge`` and ``on_round`` take no part in equality or hashing.
    """

    method: str
    source_dir: Path
    output_dir: Path
    parameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    data: CompressionData | None = None
    data_digest: str = ""
    teachers: tuple[Path, ...] = ()
    device: str = "cpu"
    behaviour_data: BehaviourData | None = None
    judge: JudgeFn | None = field(default=None, compare=False)
    on_round: Callable[[dict], None] | None = field(default=None, compare=False)
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_dir", Path(self.source_dir))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if isinstance(self.parameters, Mapping):
            object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))
        if isinstance(self.teachers, (str, Path)):
            object.__setattr__(self, "teachers", (Path(self.teachers),))
        else:
            object.__setattr__(self, "teachers", tuple(Path(item) for item in self.teachers))


@dataclass(frozen=True)
class CompressionResult:
    """What a compression produced, with size and resource figures.

    ``dtypes`` counts the tensors of the saved state dict per dtype name (e.g. "qint8", "float32");
    ``peak_rss_bytes`` is the process's peak resident set size (ru_maxrss), not a per-job delta.
    ``parameter_count`` counts the learned weights of the saved model (quantized packed weights
    included), ``nonzero_parameter_count`` those that are not exactly zero, ``sparsity`` =
    1 - nonzero / total over the whole model. ``details`` holds method-specific, JSON-serialisable
    figures (heads kept per layer, loss curves, per-round results, rejected counts, ...).
    """

    output_dir: Path
    format: str
    method: str
    parameters: dict[str, Any]
    size_bytes: int
    source_size_bytes: int
    parameter_count: int
    dtypes: dict[str, int]
    wall_seconds: float
    peak_rss_bytes: int
    nonzero_parameter_count: int = 0
    sparsity: float = 0.0
    source_parameter_count: int = 0
    manifest_digest: str = ""
    data_digest: str = ""
    seed: int = 0
    device: str = "cpu"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (``output_dir`` as a string)."""
        out = {item.name: getattr(self, item.name) for item in fields(self)}
        out["output_dir"] = str(self.output_dir)
        return out
