"""The forest plot: one panel per metric, the delta and its interval per group, with rule limits; the
panel titles and directions come from the metric catalogue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evaluations.engine.catalog import CATALOG, Direction

from .groups import group_label, group_sort_key
from .svg import (
    GRID,
    INK,
    LINE,
    MUTED,
    ZONE_COLOURS,
    _circle,
    _line,
    _mapping,
    _nice_step,
    _num,
    _padded,
    _rect,
    _Scale,
    _svg,
    _text,
    _tick_text,
    _ticks,
)

# The headline metrics, in panel order (every name is in the catalogue).
METRIC_ORDER = ("accuracy", "unsafe_recall", "benign_fpr", "flip_rate")
#: Metrics for which a larger value is better (used for panel titles only), from the metric catalogue.
HIGHER_IS_BETTER = {spec.name: spec.higher_is_better for spec in CATALOG if spec.direction is not Direction.NONE}
METRIC_TITLES = {spec.name: spec.chart_title for spec in CATALOG if spec.chart_title}


def _metric_sort_key(name: str) -> tuple:
    return (METRIC_ORDER.index(name), "") if name in METRIC_ORDER else (len(METRIC_ORDER), name)


def _delta_rules(gate: Sequence[Mapping] | None, policy_rules: Sequence[Mapping] | None) -> dict:
    """(metric, group) -> {green_limit, red_limit, zone} for delta rules (their limits are on the delta scale)."""
    out: dict[tuple[str, str], dict] = {}
    for rule in policy_rules or ():
        if rule.get("kind") == "delta":
            out[(rule.get("metric"), rule.get("group"))] = {
                "green_limit": _num(rule.get("green_limit")),
                "red_limit": _num(rule.get("red_limit")),
                "zone": None,
            }
    for verdict in gate or ():
        if verdict.get("kind") == "delta":
            out[(verdict.get("metric"), verdict.get("group"))] = {
                "green_limit": _num(verdict.get("green_limit")),
                "red_limit": _num(verdict.get("red_limit")),
                "zone": verdict.get("zone") if verdict.get("zone") in ZONE_COLOURS else None,
            }
    return out


def forest_plot(
    groups: Mapping[str, Mapping] | None,
    *,
    gate: Sequence[Mapping] | None = None,
    policy_rules: Sequence[Mapping] | None = None,
    metrics: Sequence[str] | None = None,
    width: int = 660,
) -> str:
    """One panel per metric, side by side, sharing the group labels: the delta (candidate − baseline)
    as a dot, its confidence interval as a whisker, a dashed zero line, and for each group a delta
    rule judges, the rule's green and red limits as ticks (the dot then takes the rule's zone colour).
    Each panel has its own scale. Numbers are in the tables; the SVG carries few characters because
    WeasyPrint lays out SVG text letter by letter."""
    if not groups:
        return ""
    keys = sorted(groups, key=group_sort_key)
    if metrics is None:
        found = {m for k in keys for m in (_mapping(groups[k]).get("metrics") or {})}
        metrics = sorted(found, key=_metric_sort_key)
    metrics = [
        m
        for m in metrics
        if any(isinstance(_mapping(_mapping(groups[k]).get("metrics")).get(m), Mapping) for k in keys)
    ]
    if not metrics:
        return ""
    rules = _delta_rules(gate, policy_rules)
    row_h, top, label_w, gap = 18, 30, 104, 14
    panel_w = (width - label_w - gap * (len(metrics) - 1)) / len(metrics)
    bottom = top + row_h * len(keys)
    body: list[str] = []
    for i, key in enumerate(keys):
        body.append(_text(label_w - 6, top + row_h * i + row_h / 2 + 4, group_label(key), anchor="end", size=9.5))
    for p, metric in enumerate(metrics):
        x0 = label_w + p * (panel_w + gap)
        x1 = x0 + panel_w
        rows = []
        for key in keys:
            m = _mapping(_mapping(_mapping(groups[key]).get("metrics")).get(metric))
            rows.append((key, _num(m.get("delta")), _num(m.get("ci_low")), _num(m.get("ci_high"))))
        values = [v for _, d, lo, hi in rows for v in (d, lo, hi) if v is not None]
        for key, *_ in rows:
            rule = rules.get((metric, key))
            if rule:
                values += [v for v in (rule["green_limit"], rule["red_limit"]) if v is not None]
        low, high = _padded(values or [0.0])
        scale = _Scale(low, high, x0 + 4, x1 - 4)
        direction = HIGHER_IS_BETTER.get(metric)
        body.append(
            _text(
                x0 + panel_w / 2,
                11,
                f"Δ {METRIC_TITLES.get(metric, metric)}",
                anchor="middle",
                size=10.5,
                weight="bold",
            )
        )
        if direction is not None:
            body.append(
                _text(
                    x0 + panel_w / 2,
                    23,
                    "higher is better" if direction else "lower is better",
                    anchor="middle",
                    size=8.5,
                    fill=MUTED,
                )
            )
        body.append(_rect(x0, top, panel_w, bottom - top, fill="#f7f8fa"))
        step = _nice_step(high - low, 4)
        for t in _ticks(low, high, 4):
            body.append(_line(scale(t), top, scale(t), bottom, stroke=LINE))
            body.append(_text(scale(t), bottom + 11, _tick_text(t, step), anchor="middle", size=8, fill=MUTED))
        if low <= 0 <= high:
            body.append(_line(scale(0), top - 2, scale(0), bottom + 2, stroke=GRID, width=1.2, dash="3 3"))
        for i, (key, delta, ci_low, ci_high) in enumerate(rows):
            cy = top + row_h * i + row_h / 2
            rule = rules.get((metric, key))
            colour = ZONE_COLOURS.get(rule["zone"], INK) if rule else INK
            if rule:
                for limit, lc in (
                    (rule["green_limit"], ZONE_COLOURS["green"]),
                    (rule["red_limit"], ZONE_COLOURS["red"]),
                ):
                    if limit is not None:
                        body.append(_line(scale(limit), cy - 7, scale(limit), cy + 7, stroke=lc, width=2.5))
            if ci_low is not None and ci_high is not None:
                xa, xb = scale(ci_low), scale(ci_high)
                body.append(_line(xa, cy, xb, cy, stroke=colour, width=1.5))
                body.append(_line(xa, cy - 4, xa, cy + 4, stroke=colour, width=1.5))
                body.append(_line(xb, cy - 4, xb, cy + 4, stroke=colour, width=1.5))
            if delta is not None:
                body.append(_circle(scale(delta), cy, 3.8, fill=colour))
            elif ci_low is None:
                body.append(_text(x0 + 6, cy + 3, "n/a", size=8, fill=MUTED))
    return _svg(width, int(bottom + 16), body, "Deltas with confidence intervals per group")
