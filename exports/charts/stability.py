"""Decision stability per group: the share of each model's decisions that changed when the batches were
recomposed (the stability pass), baseline (grey) beside candidate (blue), on one shared percent scale."""

from __future__ import annotations

from collections.abc import Mapping

from .groups import group_label, group_sort_key
from .svg import (
    ACCENT,
    BASELINE,
    INK,
    LINE,
    MUTED,
    _fmt,
    _line,
    _mapping,
    _nice_step,
    _num,
    _rect,
    _Scale,
    _svg,
    _text,
    _tick_text,
    _ticks,
)


def instability_shares(groups: Mapping | None) -> list[tuple[str, float | None, float | None]]:
    """[(group key, baseline share, candidate share)] for the groups of a comparison that carry
    ``instability`` (comparisons with a stability pass), overall first, then slices, then subgroups."""
    out = []
    for key in sorted(_mapping(groups), key=lambda k: group_sort_key(str(k))):
        shares = _mapping(_mapping(_mapping(groups).get(key)).get("instability"))
        if shares:
            out.append((str(key), _num(shares.get("baseline")), _num(shares.get("candidate"))))
    return out


def instability_chart(groups: Mapping | None, *, width: int = 660) -> str:
    """Per group, two bars: the baseline's and the candidate's unstable share, each labelled in percent.
    "" when no group carries stability data (the comparison had no stability pass)."""
    rows = instability_shares(groups)
    if not rows or all(b is None and c is None for _, b, c in rows):
        return ""
    label_w, bar_h, row_gap, top = 130, 10, 9, 30
    row_h = 2 * bar_h + row_gap
    plot_h = row_h * len(rows)
    left, right = label_w, width - 60
    values = [100 * v for _, b, c in rows for v in (b, c) if v is not None]
    high = max(max(values) * 1.18, 1.0)  # percent; at least 0 to 1% so that zeros still show a scale
    scale = _Scale(0.0, high, left, right)
    step = _nice_step(high)
    body: list[str] = [_text(0, 12, "Unstable decisions (% of the group)", size=10.5, weight="bold")]
    for t in _ticks(0.0, high):
        body.append(_line(scale(t), top - 4, scale(t), top + plot_h, stroke=LINE))
        body.append(_text(scale(t), top + plot_h + 12, f"{_tick_text(t, step)}%", anchor="middle", size=9, fill=MUTED))
    for i, (key, *shares) in enumerate(rows):
        y = top + i * row_h
        body.append(_text(left - 6, y + bar_h + 4, group_label(key), anchor="end", size=10))
        for j, (share, colour) in enumerate(zip(shares, (BASELINE, ACCENT), strict=True)):
            by = y + j * bar_h
            if share is None:
                body.append(_text(left + 3, by + bar_h - 1, "n/a", size=8, fill=MUTED))
                continue
            x = scale(100 * share)
            body.append(_rect(left, by + 0.5, x - left, bar_h - 1, fill=colour))
            body.append(_text(x + 3, by + bar_h - 2, f"{_fmt(100 * share, 1)}%", size=8, fill=INK))
    body.append(_rect(width - 150, 4, 9, 8, fill=BASELINE))
    body.append(_text(width - 138, 12, "baseline", size=8.5, fill=MUTED))
    body.append(_rect(width - 80, 4, 9, 8, fill=ACCENT))
    body.append(_text(width - 68, 12, "candidate", size=8.5, fill=MUTED))
    return _svg(width, int(top + plot_h + 20), body, "Share of unstable decisions per group, baseline and candidate")
