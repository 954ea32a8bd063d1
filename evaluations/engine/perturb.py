"""Seeded adversarial variants of suite examples: character swaps, leetspeak, inserted spaces,
homoglyphs and casing (stdlib only).

Each variant is derived from one source text by one kind of perturbation. The random stream of a
variant is seeded from (recipe version, seed, source id, kind, slot k, attempt) through
``random.Random(str)`` (SHA-512 based, independent of PYTHONHASHSEED), so a variant depends only on
its own source and never on the order or number of the other rows. Variant ids are
``f"{source_id}~{kind}~{k}"`` for slot k in 0..per_example-1. A variant never equals its source and
the variants of one (source, kind) differ from each other; when a text offers nothing to perturb
(e.g. no letters for leetspeak) the slot is skipped after a few attempts, so fewer variants may come
back than asked for. Bump ``RECIPE_VERSION`` whenever an output could change.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from compression.engine.errors import EngineError
from evaluations.engine.tabular import ParsedRow

__all__ = [
    "KINDS",
    "RECIPE_VERSION",
    "PerturbationRecipe",
    "Variant",
    "Variants",
    "perturb",
    "perturb_text",
    "variant_rows",
]

RECIPE_VERSION = "1"
KINDS: tuple[str, ...] = ("char_swap", "leetspeak", "spaces", "homoglyph", "casing")
_ATTEMPTS = 8

_LEET: Mapping[str, str] = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "l": "1", "g": "9", "b": "8"}
# Latin letters -> Cyrillic/Greek look-alikes (visually identical in most fonts).
_HOMOGLYPHS: Mapping[str, str] = {
    "a": "\u0430",
    "c": "\u0441",
    "e": "\u0435",
    "i": "\u0456",
    "j": "\u0458",
    "o": "\u043e",
    "p": "\u0440",
    "s": "\u0455",
    "x": "\u0445",
    "y": "\u0443",
    "A": "\u0410",
    "B": "\u0412",
    "C": "\u0421",
    "E": "\u0415",
    "H": "\u041d",
    "I": "\u0406",
    "K": "\u041a",
    "M": "\u041c",
    "O": "\u041e",
    "P": "\u0420",
    "T": "\u0422",
    "X": "\u0425",
    "Y": "\u03a5",
}


@dataclass(frozen=True)
class PerturbationRecipe:
    """What to record with a generated suite so it can be regenerated exactly."""

    kinds: tuple[str, ...]
    seed: int
    per_example: int
    version: str = RECIPE_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "seed": self.seed, "per_example": self.per_example, "version": self.version}


@dataclass(frozen=True)
class Variant:
    """A perturbed copy of the example ``source_id``; ``variant_id`` is f"{source_id}~{kind}~{k}"."""

    source_id: str
    kind: str
    variant_id: str
    text: str


class Variants(tuple):
    """A tuple of Variant in (row, kind, slot) order, carrying the ``recipe`` that produced it."""

    recipe: PerturbationRecipe

    def __new__(cls, items: Iterable[Variant], recipe: PerturbationRecipe) -> Variants:
        self = super().__new__(cls, tuple(items))
        self.recipe = recipe
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Variants, (tuple(self), self.recipe))


def _word_spans(text: str, min_length: int) -> list[tuple[int, int]]:
    """(start, end) of runs of letters at least ``min_length`` long."""
    spans: list[tuple[int, int]] = []
    start = None
    for index, char in enumerate(text + " "):
        if char.isalpha():
            if start is None:
                start = index
        elif start is not None:
            if index - start >= min_length:
                spans.append((start, index))
            start = None
    return spans


def _edits(candidates: int, rate: float) -> int:
    return max(1, min(candidates, round(candidates * rate)))


def _char_swap(text: str, rng: random.Random) -> str:
    """Swap two adjacent different letters inside some words ("hate" -> "htae")."""
    chars = list(text)
    positions = [i for s, e in _word_spans(text, 3) for i in range(s, e - 1) if chars[i] != chars[i + 1]]
    for i in rng.sample(positions, _edits(len(positions), 0.08)) if positions else []:
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def _substitute(text: str, rng: random.Random, table: Mapping[str, str], rate: float, fold: bool) -> str:
    chars = list(text)
    positions = [i for i, c in enumerate(chars) if (c.lower() if fold else c) in table]
    for i in rng.sample(positions, _edits(len(positions), rate)) if positions else []:
        chars[i] = table[chars[i].lower() if fold else chars[i]]
    return "".join(chars)


def _spaces(text: str, rng: random.Random) -> str:
    """Insert single spaces inside some words ("hate" -> "ha te")."""
    positions = [i for s, e in _word_spans(text, 2) for i in range(s + 1, e)]
    chosen = set(rng.sample(positions, _edits(len(positions), 0.1))) if positions else set()
    return "".join((" " + c) if i in chosen else c for i, c in enumerate(text))


def _casing(text: str, rng: random.Random) -> str:
    """Flip the case of some letters ("hate" -> "hAtE")."""
    positions = [i for i, c in enumerate(text) if c.isalpha() and c.swapcase() != c and len(c.swapcase()) == 1]
    chars = list(text)
    for i in rng.sample(positions, _edits(len(positions), 0.3)) if positions else []:
        chars[i] = chars[i].swapcase()
    return "".join(chars)


def perturb_text(text: str, kind: str, rng: random.Random) -> str:
    """One perturbation of ``kind`` drawn with ``rng`` (may equal ``text`` when nothing applies)."""
    if kind == "char_swap":
        return _char_swap(text, rng)
    if kind == "leetspeak":
        return _substitute(text, rng, _LEET, 0.4, fold=True)
    if kind == "spaces":
        return _spaces(text, rng)
    if kind == "homoglyph":
        return _substitute(text, rng, _HOMOGLYPHS, 0.3, fold=False)
    if kind == "casing":
        return _casing(text, rng)
    raise EngineError("invalid_parameter", f"unknown perturbation kind {kind!r} (expected one of {list(KINDS)})")


def _source(row: Any) -> tuple[str, str]:
    """(id, text) of a row: an object with external_id/text, a mapping, or an (id, text) pair."""
    if isinstance(row, Mapping):
        identifier, text = row.get("external_id", row.get("id")), row.get("text")
    elif isinstance(row, Sequence) and not isinstance(row, str) and len(row) == 2:
        identifier, text = row
    else:
        identifier, text = getattr(row, "external_id", None), getattr(row, "text", None)
    if not isinstance(identifier, str) or not identifier or not isinstance(text, str):
        raise EngineError("invalid_parameter", f"each row needs a non-empty string id and a string text, got {row!r}")
    return identifier, text


def perturb(rows: Iterable[Any], kinds: Sequence[str], seed: int, per_example: int = 1) -> Variants:
    """Derive up to ``per_example`` variants of each kind from each row (see the module docstring).

    ``rows`` are ParsedRow-like objects, mappings with external_id/id and text, or (id, text) pairs.
    Returns a ``Variants`` tuple whose ``recipe`` records kinds, seed, per_example and version.
    """
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in KINDS]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        raise EngineError("invalid_parameter", f"kinds must be distinct names from {list(KINDS)}, got {list(kinds)}")
    if type(seed) is not int:
        raise EngineError("invalid_parameter", f"seed must be an integer, got {seed!r}")
    if type(per_example) is not int or not 1 <= per_example <= 100:
        raise EngineError("invalid_parameter", f"per_example must be an integer in 1..100, got {per_example!r}")
    recipe = PerturbationRecipe(kinds=kinds, seed=seed, per_example=per_example)
    variants: list[Variant] = []
    seen_ids: set[str] = set()
    for row in rows:
        source_id, text = _source(row)
        if source_id in seen_ids:
            raise EngineError("invalid_parameter", f"duplicate row id {source_id!r}")
        seen_ids.add(source_id)
        for kind in kinds:
            produced = {text}
            for k in range(per_example):
                for attempt in range(_ATTEMPTS):
                    rng = random.Random(f"safeshrink-perturb:{RECIPE_VERSION}:{seed}:{source_id}:{kind}:{k}:{attempt}")
                    candidate = perturb_text(text, kind, rng)
                    if candidate not in produced:
                        produced.add(candidate)
                        variants.append(Variant(source_id, kind, f"{source_id}~{kind}~{k}", candidate))
                        break
    return Variants(variants, recipe)


def variant_rows(
    rows: Iterable[ParsedRow], variants: Iterable[Variant], *, slice_name: str = "adversarial"
) -> tuple[ParsedRow, ...]:
    """The variants as suite rows: id = variant id, the source's label, subgroup and line, slice
    ``slice_name``, tags = source tags + ("perturbed", kind), source_id = the source's id."""
    by_id = {row.external_id: row for row in rows}
    out: list[ParsedRow] = []
    for variant in variants:
        source = by_id.get(variant.source_id)
        if source is None:
            raise EngineError(
                "invalid_parameter", f"variant {variant.variant_id!r} has no source row {variant.source_id!r}"
            )
        out.append(
            ParsedRow(
                external_id=variant.variant_id,
                text=variant.text,
                label=source.label,
                slice=slice_name,
                tags=tuple(dict.fromkeys((*source.tags, "perturbed", variant.kind))),
                subgroup=source.subgroup,
                source_id=source.external_id,
                line=source.line,
            )
        )
    return tuple(out)
