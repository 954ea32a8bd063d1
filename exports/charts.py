"""Inline SVG charts for the release dossier (pure Python: no Django, no numpy, no matplotlib).

Every function takes plain evidence-bundle data and returns an ``<svg>`` string, or ``""`` when there
is nothing to draw (the template then says so in words). Output is deterministic: the same input
gives the same bytes (rows are put in a fixed order, never in dict order, and every number is
formatted with a fixed precision). Every piece of text is XML-escaped. Styling uses presentation
attributes only, so the SVG looks the same in WeasyPrint and in a browser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

__all__ = [
    "forest_plot",
    "gate_chart",
    "group_label",
    "group_sort_key",
    "reliability_diagram",
    "subgroup_gaps",
    "subgroup_rates",
]

INK, MUTED, LINE, GRID = "#1d2430", "#667085", "#e4e7ec", "#98a2b3"
ACCENT, BASELINE = "#2f5bd3", "#98a2b3"
ZONE_COLOURS = {"green": "#1f8a4c", "amber": "#b7791f", "red": "#c0392b"}
FONT = "Liberation Sans, DejaVu Sans, Arial, sans-serif"

SLICE_ORDER = ("routine", "edge", "adversarial")
METRIC_ORDER = ("accuracy", "unsafe_recall", "benign_fpr", "flip_rate")
#: Metrics for which a larger value is better (used for panel titles only).
HIGHER_IS_BETTER = {"accuracy": True, "unsafe_recall": True, "benign_fpr": False, "binary_macro_f1": True,
                    "macro_f1": True, "brier": False, "nll": False, "ece": False, "flip_rate": False,
                    "consistency": True, "perturbation_accuracy": True, "fnr": False, "fnr_gap": False,
                    "fpr_gap": False}
METRIC_TITLES = {"accuracy": "accuracy", "unsafe_recall": "unsafe recall", "benign_fpr": "benign false-positive rate",
                 "flip_rate": "flip rate"}


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _c(value: float) -> str:
    """A coordinate with one decimal, never '-0.0'."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _num(value: Any) -> float | None:
    """A finite float, or None (null, missing, NaN, a bool or a string are 'undefined')."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    if text[0] in "+-" and not text.strip("+-0."):
        text = text[1:]  # no '-0.000' or '+0.000'
    return text


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


def _metric_sort_key(name: str) -> tuple:
    return (METRIC_ORDER.index(name), "") if name in METRIC_ORDER else (len(METRIC_ORDER), name)


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _ticks(low: float, high: float, target: int = 5) -> list[float]:
    step = _nice_step(high - low, target)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    k = first
    while k * step <= high + 1e-9:
        value = round(k * step, 10)
        ticks.append(0.0 if value == 0 else value)
        k += 1
    return ticks


def _tick_text(value: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step * 10 ** digits % 1:  # 2.5 × 10^k needs one more digit
        digits += 1
    return _fmt(value, digits)


def _svg(width: int, height: int, body: Iterable[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="{FONT}" font-size="11" fill="{INK}">'
            f"<title>{_e(title)}</title>" + "".join(body) + "</svg>")


def _text(x: float, y: float, content: Any, *, anchor: str = "start", size: float = 11, fill: str = INK,
          weight: str | None = None) -> str:
    extra = f' font-weight="{weight}"' if weight else ""
    return (f'<text x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}" font-size="{size:g}" fill="{fill}"{extra}>'
            f"{_e(content)}</text>")


def _line(x1: float, y1: float, x2: float, y2: float, *, stroke: str = INK, width: float = 1,
          dash: str | None = None) -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{_c(x1)}" y1="{_c(y1)}" x2="{_c(x2)}" y2="{_c(y2)}" stroke="{stroke}" '
            f'stroke-width="{width:g}"{extra}/>')


def _rect(x: float, y: float, w: float, h: float, *, fill: str, opacity: float | None = None,
          stroke: str | None = None) -> str:
    extra = f' fill-opacity="{opacity:g}"' if opacity is not None else ""
    extra += f' stroke="{stroke}" stroke-width="1"' if stroke else ""
    return (f'<rect x="{_c(x)}" y="{_c(y)}" width="{_c(max(w, 0.0))}" height="{_c(max(h, 0.0))}" '
            f'fill="{fill}"{extra}/>')


def _circle(x: float, y: float, r: float, *, fill: str, stroke: str = "#ffffff") -> str:
    return f'<circle cx="{_c(x)}" cy="{_c(y)}" r="{r:g}" fill="{fill}" stroke="{stroke}" stroke-width="1"/>'


class _Scale:
    def __init__(self, low: float, high: float, left: float, right: float):
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        self.low, self.high, self.left, self.right = low, high, left, right

    def __call__(self, value: float) -> float:
        return self.left + (value - self.low) / (self.high - self.low) * (self.right - self.left)


def _padded(values: Sequence[float], pad: float = 0.08, include_zero: bool = True) -> tuple[float, float]:
    values = list(values) + ([0.0] if include_zero else [])
    low, high = min(values), max(values)
    span = (high - low) or max(abs(high), 0.01)
    return low - pad * span, high + pad * span


# --------------------------------------------------------------------------------------------------
# (a) Forest plot: deltas with confidence intervals per group and metric
# --------------------------------------------------------------------------------------------------


def _delta_rules(gate: Sequence[Mapping] | None, policy_rules: Sequence[Mapping] | None) -> dict:
    """(metric, group) -> {green_limit, red_limit, zone} for delta rules (their limits are on the delta scale)."""
    out: dict[tuple[str, str], dict] = {}
    for rule in policy_rules or ():
        if rule.get("kind") == "delta":
            out[(rule.get("metric"), rule.get("group"))] = {"green_limit": _num(rule.get("green_limit")),
                                                              "red_limit": _num(rule.get("red_limit")), "zone": None}
    for verdict in gate or ():
        if verdict.get("kind") == "delta":
            out[(verdict.get("metric"), verdict.get("group"))] = {
                "green_limit": _num(verdict.get("green_limit")), "red_limit": _num(verdict.get("red_limit")),
                "zone": verdict.get("zone") if verdict.get("zone") in ZONE_COLOURS else None}
    return out


def forest_plot(groups: Mapping[str, Mapping] | None, *, gate: Sequence[Mapping] | None = None,
                policy_rules: Sequence[Mapping] | None = None, metrics: Sequence[str] | None = None,
                width: int = 660) -> str:
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
    metrics = [m for m in metrics
               if any(isinstance(_mapping(_mapping(groups[k]).get("metrics")).get(m), Mapping) for k in keys)]
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
        body.append(_text(x0 + panel_w / 2, 11, f"Δ {METRIC_TITLES.get(metric, metric)}", anchor="middle", size=10.5,
                          weight="bold"))
        if direction is not None:
            body.append(_text(x0 + panel_w / 2, 23, "higher is better" if direction else "lower is better",
                              anchor="middle", size=8.5, fill=MUTED))
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
                for limit, lc in ((rule["green_limit"], ZONE_COLOURS["green"]), (rule["red_limit"], ZONE_COLOURS["red"])):
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


# --------------------------------------------------------------------------------------------------
# (b) Reliability diagram (baseline and candidate side by side)
# --------------------------------------------------------------------------------------------------


def _clean_bins(bins: Any) -> list[dict]:
    out = []
    for b in bins or ():
        if not isinstance(b, Mapping):
            continue
        lower, upper = _num(b.get("lower")), _num(b.get("upper"))
        count = _num(b.get("count")) or 0.0
        if lower is None or upper is None or upper <= lower:
            continue
        out.append({"lower": lower, "upper": upper, "count": count, "accuracy": _num(b.get("accuracy")),
                    "confidence": _num(b.get("confidence"))})
    return sorted(out, key=lambda b: (b["lower"], b["upper"]))


def reliability_diagram(baseline_bins: Any, candidate_bins: Any, *, baseline_ece: Any = None,
                        candidate_ece: Any = None, width: int = 660) -> str:
    """Accuracy against confidence per bin, with the diagonal (perfect calibration), the gap to the
    bin's mean confidence shaded, and the bin counts as a histogram strip under each panel."""
    runs = [("Baseline", _clean_bins(baseline_bins), _num(baseline_ece), BASELINE),
            ("Candidate", _clean_bins(candidate_bins), _num(candidate_ece), ACCENT)]
    if not any(bins for _, bins, _, _ in runs):
        return ""
    used = [b for _, bins, _, _ in runs for b in bins if b["count"] > 0]
    floor_candidates = [b["lower"] for b in used] + [b["accuracy"] for b in used if b["accuracy"] is not None]
    low = math.floor(min(floor_candidates or [0.0]) * 10 + 1e-9) / 10 if used else 0.0
    low = min(max(low, 0.0), 0.9)
    max_count = max([b["count"] for b in used] or [1.0]) or 1.0
    panel_w = width / 2
    plot = 220
    strip = 40
    top = 24
    body: list[str] = []
    for index, (name, bins, ece, colour) in enumerate(runs):
        x0 = index * panel_w + 46
        scale_x = _Scale(low, 1.0, x0, x0 + plot)
        scale_y = _Scale(low, 1.0, top + plot, top)
        ece_text = f" · ECE {_fmt(ece, 3)}" if ece is not None else ""
        body.append(_text(x0, 14, f"{name}{ece_text}", size=12, weight="bold"))
        body.append(_rect(x0, top, plot, plot, fill="#f7f8fa", stroke=LINE))
        step = _nice_step(1.0 - low, 4)
        for t in _ticks(low, 1.0, 4):
            body.append(_line(scale_x(t), top + plot, scale_x(t), top + plot + 3, stroke=GRID))
            body.append(_text(scale_x(t), top + plot + 13, _tick_text(t, step), anchor="middle", size=9, fill=MUTED))
            body.append(_line(x0 - 3, scale_y(t), x0, scale_y(t), stroke=GRID))
            body.append(_text(x0 - 5, scale_y(t) + 3, _tick_text(t, step), anchor="end", size=9, fill=MUTED))
        if not bins:
            body.append(_text(x0 + plot / 2, top + plot / 2, "no per-bin data recorded", anchor="middle",
                              size=10, fill=MUTED))
        for b in bins:
            if b["count"] <= 0 or b["accuracy"] is None or b["upper"] <= low:
                continue
            bx1, bx2 = scale_x(max(b["lower"], low)), scale_x(b["upper"])
            acc_y = scale_y(max(b["accuracy"], low))
            body.append(_rect(bx1 + 0.5, acc_y, bx2 - bx1 - 1, top + plot - acc_y, fill=colour, opacity=0.85))
            if b["confidence"] is not None:
                conf_y = scale_y(max(b["confidence"], low))
                y1, y2 = sorted((acc_y, conf_y))
                body.append(_rect(bx1 + 0.5, y1, bx2 - bx1 - 1, y2 - y1, fill=ZONE_COLOURS["red"], opacity=0.28))
                body.append(_line(bx1 + 0.5, conf_y, bx2 - 0.5, conf_y, stroke=ZONE_COLOURS["red"], width=1))
        body.append(_line(scale_x(low), scale_y(low), scale_x(1.0), scale_y(1.0), stroke=INK, width=1, dash="4 3"))
        body.append(_text(x0 + plot / 2, top + plot + 26, "confidence", anchor="middle", size=8.5, fill=MUTED))
        body.append(f'<text x="{_c(x0 - 32)}" y="{_c(top + plot / 2)}" text-anchor="middle" font-size="9" '
                    f'fill="{MUTED}" transform="rotate(-90 {_c(x0 - 32)} {_c(top + plot / 2)})">accuracy</text>')
        # histogram strip
        sy = top + plot + 34
        body.append(_rect(x0, sy, plot, strip, fill="#ffffff", stroke=LINE))
        for b in bins:
            if b["count"] <= 0 or b["upper"] <= low:
                continue
            bx1, bx2 = scale_x(max(b["lower"], low)), scale_x(b["upper"])
            h = (strip - 4) * b["count"] / max_count
            body.append(_rect(bx1 + 0.5, sy + strip - h, bx2 - bx1 - 1, h, fill=colour, opacity=0.85))
        total = int(sum(b["count"] for b in bins))
        body.append(_text(x0 + plot + 4, sy + 10, f"max {int(max_count)}", size=8, fill=MUTED))
        body.append(_text(x0 + plot + 4, sy + strip, f"n {total}", size=8, fill=MUTED))
        body.append(_text(x0 - 5, sy + strip / 2 + 3, "count", anchor="end", size=8, fill=MUTED))
    return _svg(width, int(top + plot + 34 + strip + 6), body, "Reliability diagrams, baseline and candidate")


# --------------------------------------------------------------------------------------------------
# (c) Subgroup gaps: FNR and FPR per subgroup, baseline vs candidate
# --------------------------------------------------------------------------------------------------


def _rates(metrics: Mapping | None) -> tuple[float | None, float | None]:
    if not isinstance(metrics, Mapping):
        return None, None
    fnr = _num(metrics.get("fnr"))
    if fnr is None:
        recall = _num(metrics.get("unsafe_recall"))
        fnr = None if recall is None else 1.0 - recall
    return fnr, _num(metrics.get("benign_fpr"))


def subgroup_rates(baseline_metrics: Mapping | None, candidate_metrics: Mapping | None) -> list[dict]:
    """[{subgroup, fnr: (baseline, candidate), fpr: (baseline, candidate)}] sorted by subgroup name.
    fnr = 1 − unsafe_recall (or the recorded fnr), fpr = benign_fpr."""
    baseline_metrics, candidate_metrics = baseline_metrics or {}, candidate_metrics or {}
    keys = sorted({k for k in (*baseline_metrics, *candidate_metrics) if str(k).startswith("subgroup:")},
                  key=group_sort_key)
    out = []
    for key in keys:
        bf, bp = _rates(baseline_metrics.get(key))
        cf, cp = _rates(candidate_metrics.get(key))
        out.append({"subgroup": key.partition(":")[2], "fnr": (bf, cf), "fpr": (bp, cp)})
    return out


def _gap(rows: list[dict], rate: str, which: int) -> tuple[float, str, str] | None:
    values = [(r[rate][which], r["subgroup"]) for r in rows if r[rate][which] is not None]
    if len(values) < 2:
        return None
    high = max(values, key=lambda v: (v[0], v[1]))
    low = min(values, key=lambda v: (v[0], v[1]))
    return high[0] - low[0], high[1], low[1]


def subgroup_gaps(baseline_metrics: Mapping | None, candidate_metrics: Mapping | None, *, width: int = 660) -> str:
    """Per-subgroup false-negative rate (missed harm) and benign false-positive rate, baseline (grey) vs
    candidate (blue). In each panel the candidate's largest gap (max − min across subgroups) is marked,
    with the baseline's gap for reference."""
    rows = subgroup_rates(baseline_metrics, candidate_metrics)
    if not rows or not any(v is not None for r in rows for pair in (r["fnr"], r["fpr"]) for v in pair):
        return ""
    panel_w = width / 2
    label_w = 86
    bar_h, row_gap = 11, 8
    row_h = 2 * bar_h + row_gap
    top = 40
    plot_h = row_h * len(rows)
    all_values = [v for r in rows for pair in (r["fnr"], r["fpr"]) for v in pair if v is not None]
    high = max(max(all_values) * 1.18, 0.05)
    body: list[str] = []
    for index, (rate, title) in enumerate((("fnr", "FNR (missed harm)"), ("fpr", "FPR (over-flagging)"))):
        x0 = index * panel_w + label_w
        x1 = (index + 1) * panel_w - 18
        scale = _Scale(0.0, high, x0, x1)
        body.append(_text(index * panel_w, 12, title, size=10.5, weight="bold"))
        step = _nice_step(high)
        for t in _ticks(0.0, high):
            body.append(_line(scale(t), top - 4, scale(t), top + plot_h, stroke=LINE))
            body.append(_text(scale(t), top + plot_h + 12, _tick_text(t, step), anchor="middle", size=9, fill=MUTED))
        for i, r in enumerate(rows):
            ry = top + i * row_h
            body.append(_text(x0 - 6, ry + bar_h + 4, r["subgroup"], anchor="end", size=10))
            for j, (value, colour) in enumerate(zip(r[rate], (BASELINE, ACCENT))):
                by = ry + j * bar_h
                if value is None:
                    body.append(_text(x0 + 3, by + bar_h - 1, "n/a", size=8, fill=MUTED))
                    continue
                body.append(_rect(x0, by + 0.5, scale(value) - x0, bar_h - 1, fill=colour))
                body.append(_text(scale(value) + 3, by + bar_h - 2.5, _fmt(value, 3), size=7.5, fill=INK))
        cand, base = _gap(rows, rate, 1), _gap(rows, rate, 0)
        ay = top + plot_h + 24
        if cand is not None:
            gap, hi_name, lo_name = cand
            hi_value = max(v for r in rows if (v := r[rate][1]) is not None)
            lo_value = min(v for r in rows if (v := r[rate][1]) is not None)
            xa, xb = scale(lo_value), scale(hi_value)
            colour = ZONE_COLOURS["red"]
            body.append(_line(xa, top - 4, xa, ay, stroke=colour, width=1, dash="2 2"))
            body.append(_line(xb, top - 4, xb, ay, stroke=colour, width=1, dash="2 2"))
            body.append(_line(xa, ay, xb, ay, stroke=colour, width=1.5))
            body.append(_line(xa, ay - 3, xa, ay + 3, stroke=colour, width=1.5))
            body.append(_line(xb, ay - 3, xb, ay + 3, stroke=colour, width=1.5))
            body.append(_text(x0, ay + 15, f"gap {_fmt(gap, 3)}: {hi_name} − {lo_name}", size=9.5, fill=colour,
                              weight="bold"))
            if base:
                body.append(_text(x0, ay + 27, f"baseline {_fmt(base[0], 3)}: {base[1]} − {base[2]}", size=8.5,
                                  fill=MUTED))
        else:
            body.append(_text(x0, ay + 15, "no gap (fewer than 2 subgroups)", size=8.5, fill=MUTED))
    legend_y = top - 16
    body.append(_rect(width - 150, legend_y - 8, 9, 8, fill=BASELINE))
    body.append(_text(width - 138, legend_y, "baseline", size=8.5, fill=MUTED))
    body.append(_rect(width - 80, legend_y - 8, 9, 8, fill=ACCENT))
    body.append(_text(width - 68, legend_y, "candidate", size=8.5, fill=MUTED))
    return _svg(width, int(top + plot_h + 24 + 32), body, "Subgroup false-negative and false-positive rates")


# --------------------------------------------------------------------------------------------------
# (d) The gate: each rule's judged value against its limits
# --------------------------------------------------------------------------------------------------


def gate_chart(gate: Sequence[Mapping] | None, *, width: int = 660) -> str:
    """One row per rule on the rule's own scale: the red, amber and green ranges as a band, the limits
    as labelled ticks and the judged value as a dot in its zone colour ("no evidence" when undefined)."""
    if not gate:
        return ""
    row_h = 34
    label_w, value_w = 200, 96
    left, right = label_w + 10, width - value_w
    top = 6
    body: list[str] = []
    for i, rule in enumerate(gate):
        y = top + i * row_h
        cy = y + 14
        green, red = _num(rule.get("green_limit")), _num(rule.get("red_limit"))
        value = _num(rule.get("value"))
        higher = bool(rule.get("higher_is_better"))
        zone = rule.get("zone") if rule.get("zone") in ZONE_COLOURS else "amber"
        body.append(_text(label_w, cy + 4, rule.get("title") or rule.get("rule") or "rule", anchor="end", size=10))
        limits = [v for v in (green, red) if v is not None]
        values = limits + ([value] if value is not None else [])
        if not values:
            body.append(_text(left, cy + 4, "no limits recorded", size=10, fill=MUTED))
            continue
        low, high = min(values), max(values)
        span = (abs(green - red) if green is not None and red is not None else 0) or (high - low) or max(abs(high), 0.01)
        low, high = low - 0.6 * span, high + 0.6 * span
        scale = _Scale(low, high, left, right)
        if green is not None and red is not None:
            if higher:
                bands = ((low, red, "red"), (red, green, "amber"), (green, high, "green"))
            else:
                bands = ((low, green, "green"), (green, red, "amber"), (red, high, "red"))
            for a, b, colour in bands:
                body.append(_rect(scale(a), cy - 5, scale(b) - scale(a), 10, fill=ZONE_COLOURS[colour], opacity=0.22))
        else:
            body.append(_rect(left, cy - 5, right - left, 10, fill=LINE))
        for limit, colour in ((green, "green"), (red, "red")):
            if limit is not None:
                body.append(_line(scale(limit), cy - 8, scale(limit), cy + 8, stroke=ZONE_COLOURS[colour], width=2))
                body.append(_text(scale(limit), cy + 19, _fmt(limit, 3, signed=rule.get("kind") == "delta"),
                                  anchor="middle", size=8.5, fill=ZONE_COLOURS[colour]))
        if low <= 0 <= high and rule.get("kind") == "delta":
            body.append(_line(scale(0), cy - 9, scale(0), cy + 9, stroke=GRID, dash="2 2"))
        if value is None:
            body.append(_text(right + 8, cy + 4, "no evidence", size=10, fill=ZONE_COLOURS["amber"], weight="bold"))
        else:
            body.append(_circle(scale(value), cy, 5.5, fill=ZONE_COLOURS[zone]))
            body.append(_text(right + 8, cy + 4, f"{_fmt(value, 3, signed=rule.get('kind') == 'delta')} {zone}",
                              size=10, fill=ZONE_COLOURS[zone], weight="bold"))
        if i:
            body.append(_line(0, y - 2, width, y - 2, stroke=LINE))
    return _svg(width, int(top + len(gate) * row_h), body, "Gate: judged value of each rule against its limits")
