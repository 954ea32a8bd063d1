"""Seeded perturbations: determinism, linkage to sources, never identical, recipe recorded."""

from __future__ import annotations

import pickle
import random

import pytest

from compression.engine.errors import EngineError
from evaluations.engine.perturb import (
    KINDS,
    RECIPE_VERSION,
    PerturbationRecipe,
    Variant,
    perturb,
    perturb_text,
    variant_rows,
)
from evaluations.engine.tabular import ParsedRow

ROWS = [
    ParsedRow("r1", "I really hate those people, they are awful", "hatespeech", "routine", ("slur",), "women", "", 2),
    ParsedRow("r2", "Have a lovely day everyone", "normal", "routine", (), "", "", 3),
    ParsedRow("r3", "12345 !!!", "normal", "edge", (), "", "", 4),
]


def test_deterministic_and_independent_of_other_rows() -> None:
    first = perturb(ROWS, KINDS, seed=7, per_example=3)
    assert perturb(ROWS, KINDS, seed=7, per_example=3) == first
    assert perturb(ROWS, KINDS, seed=8, per_example=3) != first
    # A variant depends only on its own source: dropping or reordering rows changes nothing else.
    alone = perturb([ROWS[1]], KINDS, seed=7, per_example=3)
    assert tuple(v for v in first if v.source_id == "r2") == alone
    assert set(perturb(ROWS[::-1], KINDS, seed=7, per_example=3)) == set(first)


def test_linkage_ids_and_never_identical() -> None:
    variants = perturb(ROWS, KINDS, seed=1, per_example=2)
    texts = {row.external_id: row.text for row in ROWS}
    for variant in variants:
        assert variant.text != texts[variant.source_id]
        assert variant.variant_id.startswith(f"{variant.source_id}~{variant.kind}~")
        assert variant.kind in KINDS
    ids = [v.variant_id for v in variants]
    assert len(ids) == len(set(ids))
    # Each of r1's (kind, slot) pairs exists, and the two slots of one kind differ.
    r1 = {(v.kind, v.variant_id.rsplit("~", 1)[1]): v.text for v in variants if v.source_id == "r1"}
    assert set(r1) == {(kind, k) for kind in KINDS for k in ("0", "1")}
    assert all(r1[(kind, "0")] != r1[(kind, "1")] for kind in KINDS)
    # "12345 !!!" has no letters: only nothing-to-do kinds are skipped, never a copy of the source.
    assert {v.kind for v in variants if v.source_id == "r3"} <= set(KINDS)
    assert all(v.text != "12345 !!!" for v in variants if v.source_id == "r3")


def test_recipe_is_returned_for_recording() -> None:
    variants = perturb(ROWS, ("leetspeak", "casing"), seed=3, per_example=1)
    assert isinstance(variants, tuple)
    assert variants.recipe == PerturbationRecipe(kinds=("leetspeak", "casing"), seed=3, per_example=1)
    assert variants.recipe.as_dict() == {
        "kinds": ["leetspeak", "casing"],
        "seed": 3,
        "per_example": 1,
        "version": RECIPE_VERSION,
    }
    copy = pickle.loads(pickle.dumps(variants))
    assert copy == variants and copy.recipe == variants.recipe


def test_each_kind_does_what_it_says() -> None:
    text = "hate speech is bad"
    rng = lambda: random.Random(0)  # noqa: E731
    swap = perturb_text(text, "char_swap", rng())
    assert sorted(swap) == sorted(text) and swap != text
    leet = perturb_text(text, "leetspeak", rng())
    assert any(c in leet for c in "4351") and len(leet) == len(text)
    spaced = perturb_text(text, "spaces", rng())
    assert spaced.replace(" ", "") == text.replace(" ", "") and len(spaced) > len(text)
    glyph = perturb_text(text, "homoglyph", rng())
    assert len(glyph) == len(text) and any(ord(c) > 127 for c in glyph)
    cased = perturb_text(text, "casing", rng())
    assert cased.lower() == text and cased != text


def test_inputs_accepted_and_rejected() -> None:
    as_pairs = perturb([("a", "some text here")], ["casing"], seed=0)
    as_dicts = perturb([{"id": "a", "text": "some text here"}], ["casing"], seed=0)
    assert as_pairs == as_dicts and as_pairs[0] == Variant("a", "casing", "a~casing~0", as_pairs[0].text)
    for bad in ({"kinds": ["nope"]}, {"kinds": []}, {"kinds": ["casing", "casing"]}, {"per_example": 0}, {"seed": "1"}):
        options = {"kinds": ["casing"], "seed": 0, "per_example": 1, **bad}
        with pytest.raises(EngineError) as caught:
            perturb([("a", "text")], **options)
        assert caught.value.code == "invalid_parameter"
    with pytest.raises(EngineError):
        perturb([("a", "x"), ("a", "y")], ["casing"], seed=0)


def test_variant_rows_link_to_sources() -> None:
    variants = perturb(ROWS[:1], ["homoglyph"], seed=0)
    (row,) = variant_rows(ROWS, variants)
    assert row == ParsedRow(
        external_id="r1~homoglyph~0",
        text=variants[0].text,
        label="hatespeech",
        slice="adversarial",
        tags=("slur", "perturbed", "homoglyph"),
        subgroup="women",
        source_id="r1",
        line=2,
    )
    with pytest.raises(EngineError):
        variant_rows(ROWS[1:], variants)
