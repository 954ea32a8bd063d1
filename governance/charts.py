"""Small server-side SVG charts (no JavaScript, no extra dependency, no Django): the gate chart the release
page and the dossier draw (exports.charts re-exports it), and the line chart of an external run's metric."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from governance.svg import (
    GRID,
    LINE,
    MUTED,
    ZONE_COLOURS,
    _circle,
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

GATE_ROW_HEIGHT = 50


def _gate_bands(low: float, high: float, green: float, red: float, higher: bool) -> tuple:
    if higher:
        return ((low, red, "red"), (red, green, "amber"), (green, high, "green"))
    return ((low, green, "green"), (green, red, "amber"), (red, high, "red"))


LABEL_CHARS = 34  # what fits the label column at size 10; a longer title wraps onto a second line


def _label(title: str, x: float, cy: float) -> list[str]:
    """A rule's title right-aligned before its band: one line, or two split at a space (never clipped)."""
    if len(title) <= LABEL_CHARS or " " not in title:
        return [_text(x, cy + 4, title, anchor="end", size=10)]
    cut = title.rfind(" ", 0, LABEL_CHARS + 1)
    cut = cut if cut > 0 else title.find(" ")
    first, second = title[:cut], title[cut + 1 :]
    return [_text(x, cy - 2, first, anchor="end", size=10), _text(x, cy + 10, second, anchor="end", size=10)]


def _gate_row(rule: Mapping, cy: float, left: float, right: float, label_w: float) -> list[str]:
    """One rule on its own scale: the red, amber and green ranges as a shaded band, the limits as labelled
    ticks above it, the scale's values below it, the judged value as a dot in its zone's colour."""
    green, red = _num(rule.get("green_limit")), _num(rule.get("red_limit"))
    value = _num(rule.get("value"))
    signed = rule.get("kind") == "delta"
    zone = str(rule.get("zone")) if rule.get("zone") in ZONE_COLOURS else "amber"
    body = _label(str(rule.get("title") or rule.get("rule") or "rule"), label_w, cy)
    limits = [v for v in (green, red) if v is not None]
    values = limits + ([value] if value is not None else [])
    if not values:
        return [*body, _text(left, cy + 4, "no limits recorded", size=10, fill=MUTED)]
    low, high = min(values), max(values)
    span = (abs(green - red) if green is not None and red is not None else 0) or (high - low) or max(abs(high), 0.01)
    low, high = low - 0.6 * span, high + 0.6 * span
    scale = _Scale(low, high, left, right)
    if green is not None and red is not None:
        for a, b, colour in _gate_bands(low, high, green, red, bool(rule.get("higher_is_better"))):
            body.append(_rect(scale(a), cy - 5, scale(b) - scale(a), 10, fill=ZONE_COLOURS[colour], opacity=0.22))
    else:
        body.append(_rect(left, cy - 5, right - left, 10, fill=LINE))
    step = _nice_step(high - low, 4)
    for tick in _ticks(low, high, 4):
        body.append(_line(scale(tick), cy + 5, scale(tick), cy + 9, stroke=GRID))
        body.append(_text(scale(tick), cy + 19, _tick_text(tick, step), anchor="middle", size=8, fill=MUTED))
    for limit, colour in ((green, "green"), (red, "red")):
        if limit is not None:
            body.append(_line(scale(limit), cy - 8, scale(limit), cy + 8, stroke=ZONE_COLOURS[colour], width=2))
            body.append(
                _text(
                    scale(limit), cy - 11, _fmt(limit, 3, signed), anchor="middle", size=8.5, fill=ZONE_COLOURS[colour]
                )
            )
    if low <= 0 <= high and signed:
        body.append(_line(scale(0), cy - 9, scale(0), cy + 9, stroke=GRID, dash="2 2"))
    if value is None:
        body.append(_text(right + 8, cy + 4, "no evidence", size=10, fill=ZONE_COLOURS["amber"], weight="bold"))
    else:
        body.append(_circle(scale(value), cy, 5.5, fill=ZONE_COLOURS[zone]))
        body.append(
            _text(
                right + 8, cy + 4, f"{_fmt(value, 3, signed)} {zone}", size=10, fill=ZONE_COLOURS[zone], weight="bold"
            )
        )
    return body


def gate_chart(gate: Sequence[Mapping] | None, *, width: int = 660) -> str:
    """The gate as inline SVG (the release page and the dossier draw it): one row per rule on the rule's own
    scale, so a latency ratio and an accuracy change are each readable. Per row: the red, amber and green ranges
    as a shaded band, the limits as labelled ticks, the scale's values below the band, and the judged value as a
    dot in its zone colour with its value beside it ("no evidence" when undefined). "" when there is no rule."""
    if not gate:
        return ""
    label_w, value_w = 200, 96
    left, right = label_w + 10, width - value_w
    top = 4
    body: list[str] = []
    for i, rule in enumerate(gate):
        y = top + i * GATE_ROW_HEIGHT
        if i:
            body.append(_line(0, y - 2, width, y - 2, stroke=LINE))
        body.extend(_gate_row(rule, y + 22, left, right, label_w))
    return _svg(
        width, int(top + len(gate) * GATE_ROW_HEIGHT), body, "Gate: judged value of each rule against its limits"
    )


@dataclass(frozen=True)
class LineChart:
    """One metric's reported history as an SVG polyline: `points` is the `points` attribute, `dots` the
    vertices (drawn when there are few), the labels the value range and the step range."""

    width: int
    height: int
    points: str
    dots: list[tuple[float, float]]
    low: str
    high: str
    first_step: int
    last_step: int


def line_chart(history: list[tuple[int, float]], *, width: int = 320, height: int = 90) -> LineChart | None:
    """A small line chart of (step, value) pairs in step order; None when there is nothing to draw. A single
    value (or a flat line) is drawn mid-height."""
    if not history:
        return None
    steps, values = [s for s, _ in history], [v for _, v in history]
    low, high = min(values), max(values)
    left, right, top, bottom = 8, width - 8, 8, height - 18
    step_span, value_span = (max(steps) - min(steps)) or 1, (high - low) or None

    def x(i: int, step: int) -> float:
        if len(set(steps)) == 1:  # several values at one step: spread them in logging order
            return round(left + (i / max(len(steps) - 1, 1)) * (right - left), 1)
        return round(left + (step - min(steps)) / step_span * (right - left), 1)

    def y(v: float) -> float:
        return round((top + bottom) / 2 if value_span is None else bottom - (v - low) / value_span * (bottom - top), 1)

    coords = [(x(i, s), y(v)) for i, (s, v) in enumerate(history)]
    return LineChart(
        width=width,
        height=height,
        points=" ".join(f"{cx},{cy}" for cx, cy in coords),
        dots=coords if len(coords) <= 40 else [coords[-1]],
        low=f"{low:.4g}",
        high=f"{high:.4g}",
        first_step=min(steps),
        last_step=max(steps),
    )
