"""Agreement between reviewers, as pure maths (no Django): used by governance.services.reviews, and the
words for it used by the pages and the dossier."""

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

# Why kappa has no value (or has one), as recorded in a review outcome's `kappa_status`.
KAPPA_VALUE = "value"
KAPPA_NO_PAIRS = "no_pairs"  # no item was reviewed twice
KAPPA_UNDEFINED = "undefined"  # chance agreement is 1: both reviewers gave every item the same one label


@dataclass(frozen=True)
class Agreement:
    kappa: float | None
    pairs: int  # doubly-reviewed items
    status: str  # KAPPA_VALUE, KAPPA_NO_PAIRS or KAPPA_UNDEFINED


def agreement(pairs: list[tuple[str, str]]) -> Agreement:
    """Cohen's kappa for two raters over the same items, with why it is undefined when it is: no items, or
    chance agreement is 1 (both raters used one and the same label for every item, so they agreed on all)."""
    n = len(pairs)
    if not n:
        return Agreement(kappa=None, pairs=0, status=KAPPA_NO_PAIRS)
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    chance = sum(first[k] * second[k] for k in first.keys() & second.keys())  # expected agreement × n²
    if chance == n * n:
        return Agreement(kappa=None, pairs=n, status=KAPPA_UNDEFINED)
    observed = sum(a == b for a, b in pairs) / n
    expected = chance / (n * n)
    return Agreement(kappa=(observed - expected) / (1 - expected), pairs=n, status=KAPPA_VALUE)


def cohens_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa for two raters over the same items; None when undefined (no items, or chance agreement
    is 1)."""
    return agreement(pairs).kappa


def kappa_status(outcome: Mapping) -> tuple[str, int | None]:
    """Why a review outcome's kappa is what it is, and over how many doubly-reviewed items (None: unknown).
    Outcomes recorded before `kappa_status` existed are read from their counts: an outcome with more reviews
    than items had an item reviewed twice, so a missing kappa there was undefined, not uncomputed."""
    status, pairs = outcome.get("kappa_status"), outcome.get("kappa_pairs")
    pairs = pairs if isinstance(pairs, int) and not isinstance(pairs, bool) and pairs >= 0 else None
    kappa, items, reviews = outcome.get("kappa"), outcome.get("items"), outcome.get("reviews")
    has_value = isinstance(kappa, (int, float)) and not isinstance(kappa, bool) and math.isfinite(kappa)
    if has_value:  # a value is a value, whatever the status says
        return KAPPA_VALUE, pairs
    if status in (KAPPA_NO_PAIRS, KAPPA_UNDEFINED):
        return status, pairs
    if isinstance(items, int) and isinstance(reviews, int) and reviews > items:
        return KAPPA_UNDEFINED, pairs
    return KAPPA_NO_PAIRS, 0 if isinstance(items, int) and isinstance(reviews, int) else pairs


def kappa_text(outcome: Mapping, *, digits: int = 2) -> str:
    """Cohen's kappa of a review outcome in words: its value, or why it has none."""
    status, pairs = kappa_status(outcome)
    if status == KAPPA_VALUE:
        value = f"{outcome['kappa']:.{digits}f}"
        value = value[1:] if value[0] == "-" and not value.strip("-0.") else value  # no "-0.00"
        return value if pairs is None else f"{value} (over {pairs} doubly-reviewed item{'' if pairs == 1 else 's'})"
    if status == KAPPA_UNDEFINED:
        if pairs == 1:
            return "undefined — the one doubly-reviewed item got the same label twice (chance agreement is 1)"
        every = "all doubly-reviewed items" if pairs is None else f"all {pairs} doubly-reviewed items"
        return f"undefined — {every} agreed on one label (chance agreement is 1)"
    return "not computed (no item was reviewed twice)"
