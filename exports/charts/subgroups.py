"""The chart of the subgroup error rates (FNR, FPR) of baseline and candidate and their gaps; the rates come from
``governance.evidence.subgroup_rates`` (the release page shows the same rates as a table)."""

from __future__ import annotations

from collections.abc import Mapping

from governance.evidence import largest_gap as _gap
from governance.evidence import subgroup_rates

from .svg import (
    ACCENT,
    BASELINE,
    INK,
    LINE,
    MUTED,
    ZONE_COLOURS,
    _fmt,
    _line,
    _nice_step,
    _rect,
    _Scale,
    _svg,
    _text,
    _tick_text,
    _ticks,
)


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
            for j, (value, colour) in enumerate(zip(r[rate], (BASELINE, ACCENT), strict=True)):
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
            body.append(
                _text(x0, ay + 15, f"gap {_fmt(gap, 3)}: {hi_name} − {lo_name}", size=9.5, fill=colour, weight="bold")
            )
            if base:
                body.append(
                    _text(x0, ay + 27, f"baseline {_fmt(base[0], 3)}: {base[1]} − {base[2]}", size=8.5, fill=MUTED)
                )
        else:
            body.append(_text(x0, ay + 15, "no gap (fewer than 2 subgroups)", size=8.5, fill=MUTED))
    legend_y = top - 16
    body.append(_rect(width - 150, legend_y - 8, 9, 8, fill=BASELINE))
    body.append(_text(width - 138, legend_y, "baseline", size=8.5, fill=MUTED))
    body.append(_rect(width - 80, legend_y - 8, 9, 8, fill=ACCENT))
    body.append(_text(width - 68, legend_y, "candidate", size=8.5, fill=MUTED))
    return _svg(width, int(top + plot_h + 24 + 32), body, "Subgroup false-negative and false-positive rates")
