"""The reliability diagram: accuracy against confidence per bin, baseline and candidate, with their ECE."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .svg import (
    ACCENT,
    BASELINE,
    GRID,
    INK,
    LINE,
    MUTED,
    ZONE_COLOURS,
    _c,
    _fmt,
    _line,
    _nice_step,
    _num,
    _rect,
    _Scale,
    _svg,
    _text,
    _tick_text,
    _ticks,
)


def _clean_bins(bins: Any) -> list[dict]:
    out = []
    for b in bins or ():
        if not isinstance(b, Mapping):
            continue
        lower, upper = _num(b.get("lower")), _num(b.get("upper"))
        count = _num(b.get("count")) or 0.0
        if lower is None or upper is None or upper <= lower:
            continue
        out.append(
            {
                "lower": lower,
                "upper": upper,
                "count": count,
                "accuracy": _num(b.get("accuracy")),
                "confidence": _num(b.get("confidence")),
            }
        )
    return sorted(out, key=lambda b: (b["lower"], b["upper"]))


def reliability_diagram(
    baseline_bins: Any, candidate_bins: Any, *, baseline_ece: Any = None, candidate_ece: Any = None, width: int = 660
) -> str:
    """Accuracy against confidence per bin, with the diagonal (perfect calibration), the gap to the
    bin's mean confidence shaded, and the bin counts as a histogram strip under each panel."""
    runs = [
        ("Baseline", _clean_bins(baseline_bins), _num(baseline_ece), BASELINE),
        ("Candidate", _clean_bins(candidate_bins), _num(candidate_ece), ACCENT),
    ]
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
            body.append(
                _text(x0 + plot / 2, top + plot / 2, "no per-bin data recorded", anchor="middle", size=10, fill=MUTED)
            )
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
        body.append(
            f'<text x="{_c(x0 - 32)}" y="{_c(top + plot / 2)}" text-anchor="middle" font-size="9" '
            f'fill="{MUTED}" transform="rotate(-90 {_c(x0 - 32)} {_c(top + plot / 2)})">accuracy</text>'
        )
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
