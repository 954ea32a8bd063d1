"""A comparison's results shaped for display, shared by the release page (governance) and the dossier (exports):
the order and labels of groups, the metrics of the comparison table (a classifier's or a chat model's), whether a
change is significantly worse, and the per-subgroup miss and false-alarm rates whose gaps the subgroup rules
judge. Pure Python (no Django): it lives in governance because exports may import governance, never the reverse.
Values stay numbers (None when undefined); each page formats them its own way."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from evaluations.engine.catalog import CATALOG, Direction

SLICE_ORDER = ("routine", "edge", "adversarial")
# The metrics of the comparison table (and the dossier's forest plot); every name is in the catalogue
# (tests/evaluations/test_engine_catalog.py).
COMPARED_METRICS = ("accuracy", "unsafe_recall", "benign_fpr")
# A chat model's comparison table: what it did with harmful and safe prompts, and how often it wrote nonsense.
CHAT_COMPARED_METRICS = ("harmful_compliance_rate", "over_refusal_rate", "degenerate_rate")
LOWER_IS_BETTER = frozenset(spec.name for spec in CATALOG if spec.direction is Direction.LOWER)
# The two error rates per subgroup (the rules judge the gap between the highest and the lowest subgroup).
SUBGROUP_RATES = ("fnr", "fpr")


def number(value: Any) -> float | None:
    """A finite float, or None (null, missing, NaN, a bool or a string are 'undefined')."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def group_sort_key(key: str) -> tuple:
    """overall first, then slices (routine, edge, adversarial, then others by name), then subgroups by name."""
    if key == "overall":
        return (0, 0, "")
    kind, _, name = key.partition(":")
    if kind == "slice":
        return (1, SLICE_ORDER.index(name) if name in SLICE_ORDER else len(SLICE_ORDER), name)
    if kind == "subgroup":
        return (2, 0, name)
    return (3, 0, key)


def group_label(key: str) -> str:
    if key == "overall":
        return "overall"
    kind, sep, name = key.partition(":")
    return f"{kind}: {name}" if sep else key


def compared_metrics(comparison: Mapping | None) -> tuple[str, ...]:
    """The metrics of the comparison table: the chat set when the comparison has chat metrics."""
    overall = ((comparison or {}).get("groups") or {}).get("overall") or {}
    return CHAT_COMPARED_METRICS if "harmful_compliance_rate" in (overall.get("metrics") or {}) else COMPARED_METRICS


def is_worse(metric: str, m: Mapping) -> bool:
    """True when the whole interval lies on the worse side of zero (a significant deterioration)."""
    lo, hi = number(m.get("ci_low")), number(m.get("ci_high"))
    if lo is None or hi is None:
        return False
    return lo > 0 if metric in LOWER_IS_BETTER else hi < 0


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def comparison_cells(group: Mapping, metrics: tuple[str, ...]) -> list[dict]:
    """One group's compared metrics: baseline, candidate, delta and its interval (numbers or None), and
    whether the change is significantly worse."""
    values = _mapping(group.get("metrics"))
    cells = []
    for name in metrics:
        m = _mapping(values.get(name))
        cells.append(
            {
                "metric": name,
                "baseline": number(m.get("baseline")),
                "candidate": number(m.get("candidate")),
                "delta": number(m.get("delta")),
                "ci_low": number(m.get("ci_low")),
                "ci_high": number(m.get("ci_high")),
                "worse": is_worse(name, m),
            }
        )
    return cells


def _rates(metrics: Mapping | None) -> tuple[float | None, float | None]:
    if not isinstance(metrics, Mapping):
        return None, None
    fnr = number(metrics.get("fnr"))
    if fnr is None:
        recall = number(metrics.get("unsafe_recall"))
        fnr = None if recall is None else 1.0 - recall
    return fnr, number(metrics.get("benign_fpr"))


def subgroup_rates(baseline_metrics: Mapping | None, candidate_metrics: Mapping | None) -> list[dict]:
    """[{subgroup, fnr: (baseline, candidate), fpr: (baseline, candidate)}] sorted by subgroup name.
    fnr = 1 − unsafe_recall (or the recorded fnr): the miss rate; fpr = benign_fpr: the false-alarm rate."""
    baseline_metrics, candidate_metrics = baseline_metrics or {}, candidate_metrics or {}
    keys = sorted(
        {k for k in (*baseline_metrics, *candidate_metrics) if str(k).startswith("subgroup:")}, key=group_sort_key
    )
    out = []
    for key in keys:
        bf, bp = _rates(baseline_metrics.get(key))
        cf, cp = _rates(candidate_metrics.get(key))
        out.append({"subgroup": key.partition(":")[2], "fnr": (bf, cf), "fpr": (bp, cp)})
    return out


def comparison_subgroup_metrics(comparison: Mapping | None) -> tuple[dict, dict]:
    """Per subgroup, each model's miss and false-alarm inputs as the comparison recorded them
    (its groups' baseline and candidate values), in the shape ``subgroup_rates`` takes."""
    base: dict[str, dict] = {}
    cand: dict[str, dict] = {}
    for key, group in _mapping(_mapping(comparison).get("groups")).items():
        if not str(key).startswith("subgroup:"):
            continue
        metrics = _mapping(_mapping(group).get("metrics"))
        for target, role in ((base, "baseline"), (cand, "candidate")):
            target[key] = {
                name: _mapping(metrics.get(name)).get(role) for name in ("fnr", "unsafe_recall", "benign_fpr")
            }
    return base, cand


def largest_gap(rows: list[dict], rate: str, which: int) -> tuple[float, str, str] | None:
    """The gap between the highest and the lowest subgroup's ``rate`` of one model (0: baseline, 1: candidate),
    with the two subgroups' names; None with fewer than two subgroups that have the rate."""
    values = [(r[rate][which], r["subgroup"]) for r in rows if r[rate][which] is not None]
    if len(values) < 2:
        return None
    high = max(values, key=lambda v: (v[0], v[1]))
    low = min(values, key=lambda v: (v[0], v[1]))
    return high[0] - low[0], high[1], low[1]
