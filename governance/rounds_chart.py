"""The rounds chart of a ``behavioural_distill`` run, as inline SVG (no JavaScript): per round, the student's
harmful compliance, over-refusal and degeneration on the held-back split (three lines on a 0–100 % axis, each
value labelled) and, below on the same round axis, the teacher's accepted and rejected answers and the dropped
prompts (grouped bars, counts labelled).

The run page, the release page and the dossier all draw it, so it lives here: exports may import governance,
never the other way round. The geometry is computed here, the markup is ``templates/governance/_rounds_chart.svg``
(Django escapes every text). Series differ by colour, dash pattern and marker shape; bars by fill, outline and
dash; the legend names each. Output is deterministic: rounds in round order, every number at fixed precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

__all__ = ["BARS", "EMPTY", "SERIES", "ordered_rounds", "percent", "rounds_chart"]

TEMPLATE = "governance/_rounds_chart.svg"
EMPTY = (
    "No finished rounds yet: the chart appears once the first round has been trained and the student tested on "
    "the held-back split."
)
FONT = "Liberation Sans, DejaVu Sans, Arial, sans-serif"
INK, MUTED, GRID = "#1d2430", "#667085", "#e4e7ec"


@dataclass(frozen=True)
class Series:
    key: str  # the rate in the round's "heldout" record
    name: str
    colour: str
    dash: str  # stroke-dasharray ("" = solid)
    marker: str  # circle, square or triangle


@dataclass(frozen=True)
class BarKind:
    key: str  # the count in the round record
    name: str
    fill: str
    stroke: str
    dash: str


SERIES = (
    Series("harmful_compliance_rate", "Harmful compliance", "#c0392b", "", "circle"),
    Series("over_refusal_rate", "Over-refusal", "#b7791f", "7 4", "square"),
    Series("degenerate_rate", "Degeneration", "#5b4bb7", "2 3", "triangle"),
)
BARS = (
    BarKind("accepted", "Accepted answers", fill="#1f8a4c", stroke="#1f8a4c", dash=""),
    BarKind("rejected", "Rejected answers", fill="#f6d5d1", stroke="#c0392b", dash=""),
    BarKind("dropped_prompts", "Dropped prompts", fill="#ffffff", stroke="#667085", dash="3 2"),
)
WIDTH, LEFT, RIGHT = 660, 48, 16
LINE_TOP, LINE_HEIGHT = 40, 150
BAR_GAP, BAR_HEIGHT = 78, 120
LABEL_SPACING = 11  # the least vertical distance between two value labels of one round


def _number(value: Any) -> float | None:
    """A finite number, or None (null, missing, a bool, a string or NaN are 'not measured')."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _c(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def percent(rate: Any) -> str:
    """A rate (0–1) as a percentage with one decimal, or "—" when it was not measured."""
    value = _number(rate)
    return "—" if value is None else f"{value * 100:.1f}%"


def _heldout(record: Mapping) -> Mapping:
    heldout = record.get("heldout")
    return heldout if isinstance(heldout, Mapping) else {}


def _count(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(round(number))


def ordered_rounds(rounds: Any) -> list[Mapping]:
    """The round records in round order (records without a number keep their place after the numbered ones)."""
    records = [r for r in (rounds if isinstance(rounds, list | tuple) else []) if isinstance(r, Mapping)]
    return sorted(records, key=lambda r: (_number(r.get("round")) is None, _number(r.get("round")) or 0.0))


def _round_label(record: Mapping, position: int) -> str:
    number = _count(record.get("round"))
    return f"Round {number if number is not None else position + 1}"


def _marker_points(shape: str, x: float, y: float) -> str:
    corners: tuple[tuple[float, float], ...]
    if shape == "square":
        corners = ((x - 3.6, y - 3.6), (x + 3.6, y - 3.6), (x + 3.6, y + 3.6), (x - 3.6, y + 3.6))
    else:  # triangle
        corners = ((x, y - 4.8), (x + 4.6, y + 3.4), (x - 4.6, y + 3.4))
    return " ".join(f"{_c(a)},{_c(b)}" for a, b in corners)


def _spread(labels: list[dict], low: float, high: float) -> None:
    """Move one round's value labels apart (at least LABEL_SPACING) and keep them inside [low, high]."""
    labels.sort(key=lambda item: item["y"])
    for before, after in zip(labels, labels[1:], strict=False):
        after["y"] = max(after["y"], before["y"] + LABEL_SPACING)
    overflow = labels[-1]["y"] - high if labels else 0.0
    if overflow > 0:
        for item in labels:
            item["y"] -= overflow
    for before, after in zip(reversed(labels[:-1]), reversed(labels[1:]), strict=False):
        before["y"] = min(before["y"], after["y"] - LABEL_SPACING)
    for item in labels:
        item["y"] = max(item["y"], low)


def _nice_top(value: float) -> tuple[float, float]:
    """(top of the count axis, tick step): about four ticks of 1, 2, 2.5 or 5 × 10^k."""
    if value <= 0:
        return 1.0, 1.0
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next((f * power for f in (1, 2, 2.5, 5, 10) if raw <= f * power), 10 * power)
    step = max(step, 1.0)  # counts: whole ticks
    return math.ceil(value / step) * step, step


def _tick_text(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _lines(records: list[Mapping], xs: list[float]) -> dict:
    bottom = LINE_TOP + LINE_HEIGHT

    def y(rate: float) -> float:
        return bottom - min(max(rate, 0.0), 1.0) * LINE_HEIGHT

    grid = [{"y": _c(y(t / 100)), "text": f"{t}%", "text_y": _c(y(t / 100) + 3.5)} for t in (0, 25, 50, 75, 100)]
    series, labels = [], []
    per_round: list[list[dict]] = [[] for _ in records]
    for s in SERIES:
        segments: list[list[str]] = [[]]
        markers = []
        for i, record in enumerate(records):
            rate = _number(_heldout(record).get(s.key))
            if rate is None:
                segments.append([])  # a gap: the rate was not measured (no harmful or no safe prompts)
                continue
            segments[-1].append(f"{_c(xs[i])},{_c(y(rate))}")
            markers.append({"x": _c(xs[i]), "y": _c(y(rate)), "points": _marker_points(s.marker, xs[i], y(rate))})
            per_round[i].append({"x": xs[i] + 8, "y": y(rate) + 3.5, "text": percent(rate), "colour": s.colour})
        series.append(
            {
                "name": s.name,
                "colour": s.colour,
                "dash": s.dash,
                "marker": s.marker,
                "polylines": [" ".join(points) for points in segments if len(points) > 1],
                "markers": markers,
            }
        )
    for items in per_round:
        _spread(items, LINE_TOP + 4, bottom + 3.5)
        # Each label on a white box, so the lines it sits on do not run through its digits.
        labels += [
            {
                **item,
                "x": _c(item["x"]),
                "y": _c(item["y"]),
                "box_x": _c(item["x"] - 2),
                "box_y": _c(item["y"] - 8.5),
                "box_width": _c(5.2 * len(item["text"]) + 4),
            }
            for item in items
        ]
    return {"top": LINE_TOP, "bottom": bottom, "grid": grid, "series": series, "labels": labels}


def _bars(records: list[Mapping], xs: list[float], band: float, top: float) -> dict:
    bottom = top + BAR_HEIGHT
    counts = [[_count(record.get(kind.key)) for kind in BARS] for record in records]
    highest, step = _nice_top(max((c for row in counts for c in row if c is not None), default=0))
    width = min(band * 0.8 / len(BARS), 30.0)
    ticks = []
    value = 0.0
    while value <= highest + 1e-9:
        ty = bottom - value / highest * BAR_HEIGHT
        ticks.append({"y": _c(ty), "text": _tick_text(value), "text_y": _c(ty + 3.5)})
        value += step
    bars = []
    for i, row in enumerate(counts):
        for j, (kind, count) in enumerate(zip(BARS, row, strict=True)):
            x = xs[i] - width * len(BARS) / 2 + j * width
            height = 0.0 if count is None else count / highest * BAR_HEIGHT
            bars.append(
                {
                    "kind": kind.key,
                    "x": _c(x + 1),
                    "y": _c(bottom - height),
                    "width": _c(width - 2),
                    "height": _c(height),
                    "fill": kind.fill,
                    "stroke": kind.stroke,
                    "dash": kind.dash,
                    "label_x": _c(x + width / 2),
                    "label_y": _c(bottom - height - 3),
                    "text": "—" if count is None else str(count),
                }
            )
    return {"top": top, "bottom": bottom, "ticks": ticks, "bars": bars}


def _legend(y: float, items: list[dict]) -> list[dict]:
    """Legend entries left to right from the plot's left edge: a sample (line with its marker, or a bar
    swatch) 22 wide, then the name."""
    x = float(LEFT)
    out = []
    for item in items:
        marker = item.get("marker")
        out.append(
            {
                **item,
                "x": _c(x),
                "x_end": _c(x + 22),
                "x_mid": _c(x + 11),
                "y": _c(y),
                "swatch_x": _c(x + 4),
                "swatch_y": _c(y - 5),
                "points": _marker_points(marker, x + 11, y) if marker and marker != "circle" else "",
                "text_x": _c(x + 28),
                "text_y": _c(y + 3.5),
            }
        )
        x += 28 + 6.0 * len(item["name"]) + 24
    return out


def _description(records: list[Mapping]) -> str:
    parts = []
    for i, record in enumerate(records):
        rates = ", ".join(f"{s.name.lower()} {percent(_heldout(record).get(s.key))}" for s in SERIES)
        counts = ", ".join(
            f"{'—' if _count(record.get(k.key)) is None else _count(record.get(k.key))} {k.name.lower()}" for k in BARS
        )
        parts.append(f"{_round_label(record, i)}: {rates} on the held-back split; {counts}.")
    return " ".join(parts)


def rounds_chart(rounds: Sequence[Mapping] | Any) -> str:
    """The chart's SVG markup, or the sentence EMPTY when no round has finished (never an empty SVG)."""
    records = ordered_rounds(rounds)
    if not records:
        return EMPTY
    band = (WIDTH - LEFT - RIGHT) / len(records)
    xs = [LEFT + band * (i + 0.5) for i in range(len(records))]
    lines = _lines(records, xs)
    bar_top = lines["bottom"] + BAR_GAP
    bars = _bars(records, xs, band, bar_top)
    height = bars["bottom"] + 22
    context = {
        "width": WIDTH,
        "height": int(height),
        "font": FONT,
        "ink": INK,
        "muted": MUTED,
        "grid": GRID,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "title": "Distillation rounds: the student on the held-back split, and the teacher's answers per round",
        "description": _description(records),
        "line_heading_y": LINE_TOP - 26,
        "line_legend": _legend(
            LINE_TOP - 12, [{"name": s.name, "colour": s.colour, "dash": s.dash, "marker": s.marker} for s in SERIES]
        ),
        "lines": lines,
        "bar_heading_y": bar_top - 40,
        "bar_legend": _legend(
            bar_top - 24, [{"name": k.name, "fill": k.fill, "stroke": k.stroke, "dash": k.dash} for k in BARS]
        ),
        "bars": bars,
        "rounds": [
            {"x": _c(x), "text": _round_label(r, i), "line_y": lines["bottom"] + 14, "bar_y": bars["bottom"] + 14}
            for i, (x, r) in enumerate(zip(xs, records, strict=True))
        ],
    }
    # The template escaped every text; strip() would drop the string's "safe" mark, so it is marked again.
    return mark_safe(render_to_string(TEMPLATE, context).strip())
