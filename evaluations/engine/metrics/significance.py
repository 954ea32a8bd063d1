"""Paired significance of two models' decisions: McNemar's exact test, the flip set, and
multiple-comparison adjustments (Holm, Benjamini-Hochberg) of the per-group p-values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compression.engine.errors import EngineError

from .inputs import bool_vector, same_length

__all__ = ["McNemarResult", "benjamini_hochberg", "flip_indices", "holm", "mcnemar_exact"]

# Above this many discordant pairs the exact integer sum gets slow; switch to log-space.
_MCNEMAR_EXACT_INT_LIMIT = 2000


@dataclass(frozen=True)
class McNemarResult:
    """Discordant pairs (b: baseline right & candidate wrong, c: the reverse) and the exact two-sided p."""

    b: int
    c: int
    p_value: float


def _binomial_two_sided_half(b: int, c: int) -> float:
    """Exact two-sided p of min(b, c) under Binomial(b + c, 1/2), capped at 1."""
    m = b + c
    k = min(b, c)
    if m <= _MCNEMAR_EXACT_INT_LIMIT:
        tail = sum(math.comb(m, i) for i in range(k + 1))
        # Python's int / int is correctly rounded even for huge operands.
        return min(1.0, 2 * tail / 2**m)
    log_terms = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) for i in range(k + 1)]
    top = max(log_terms)
    log_tail = top + math.log(math.fsum(math.exp(term - top) for term in log_terms)) - m * math.log(2.0)
    return min(1.0, math.exp(math.log(2.0) + log_tail))


def mcnemar_exact(base_correct: np.ndarray, cand_correct: np.ndarray) -> McNemarResult:
    """McNemar's exact test on paired correctness: b = baseline right & candidate wrong, c = the
    reverse, p = two-sided exact binomial(b + c, 1/2) p-value (1.0 when b + c == 0)."""
    base = bool_vector(base_correct, "base_correct")
    cand = bool_vector(cand_correct, "cand_correct")
    same_length(base_correct=base, cand_correct=cand)
    b = int((base & ~cand).sum())
    c = int((~base & cand).sum())
    p_value = 1.0 if b + c == 0 else _binomial_two_sided_half(b, c)
    return McNemarResult(b=b, c=c, p_value=p_value)


def flip_indices(dec_base: np.ndarray, dec_cand: np.ndarray) -> np.ndarray:
    """Return the sorted int64 indices where the candidate's decision differs from the baseline's."""
    base = bool_vector(dec_base, "dec_base")
    cand = bool_vector(dec_cand, "dec_cand")
    same_length(dec_base=base, dec_cand=cand)
    return np.flatnonzero(base != cand).astype(np.int64)


def _pvalue_vector(pvalues: object) -> np.ndarray:
    array = np.asarray(list(pvalues) if not isinstance(pvalues, np.ndarray) else pvalues, dtype=np.float64)  # type: ignore[call-overload]
    if array.ndim != 1:
        raise EngineError("invalid_parameter", "p-values must be a flat sequence")
    if array.size and (not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0):
        raise EngineError("invalid_parameter", "p-values must lie in [0, 1]")
    return array


def holm(pvalues: object) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in input order.

    With p sorted ascending p_(1) <= ... <= p_(m): adj_(i) = max_{j<=i} min(1, (m − j + 1)·p_(j)).
    Reject at level α exactly when adj <= α. Ties keep input order (stable sort).
    """
    p = _pvalue_vector(pvalues)
    m = p.size
    if not m:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def benjamini_hochberg(pvalues: object) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order.

    With p sorted ascending: adj_(i) = min_{j>=i} min(1, m·p_(j) / j).
    """
    p = _pvalue_vector(pvalues)
    m = p.size
    if not m:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]
