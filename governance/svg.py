"""SVG primitives shared by the release page's charts (governance.charts) and the dossier's (exports.charts):
colours, escaping, fixed-precision numbers, ticks, a linear scale and the elements (text, line, rect, circle),
each with presentation attributes only, so a chart looks the same in WeasyPrint and in a browser. Pure Python
(no Django): it lives in governance because exports may import governance, never the other way round."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

INK, MUTED, LINE, GRID = "#1d2430", "#667085", "#e4e7ec", "#98a2b3"
ACCENT, BASELINE = "#2f5bd3", "#98a2b3"
ZONE_COLOURS = {"green": "#1f8a4c", "amber": "#b7791f", "red": "#c0392b"}
FONT = "Liberation Sans, DejaVu Sans, Arial, sans-serif"


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
    if step * 10**digits % 1:  # 2.5 × 10^k needs one more digit
        digits += 1
    return _fmt(value, digits)


def _svg(width: int, height: int, body: Iterable[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}" font-size="11" fill="{INK}">'
        f"<title>{_e(title)}</title>" + "".join(body) + "</svg>"
    )


def _text(
    x: float,
    y: float,
    content: Any,
    *,
    anchor: str = "start",
    size: float = 11,
    fill: str = INK,
    weight: str | None = None,
) -> str:
    extra = f' font-weight="{weight}"' if weight else ""
    return (
        f'<text x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}" font-size="{size:g}" fill="{fill}"{extra}>'
        f"{_e(content)}</text>"
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, *, stroke: str = INK, width: float = 1, dash: str | None = None
) -> str:
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{_c(x1)}" y1="{_c(y1)}" x2="{_c(x2)}" y2="{_c(y2)}" stroke="{stroke}" '
        f'stroke-width="{width:g}"{extra}/>'
    )


def _rect(
    x: float, y: float, w: float, h: float, *, fill: str, opacity: float | None = None, stroke: str | None = None
) -> str:
    extra = f' fill-opacity="{opacity:g}"' if opacity is not None else ""
    extra += f' stroke="{stroke}" stroke-width="1"' if stroke else ""
    return f'<rect x="{_c(x)}" y="{_c(y)}" width="{_c(max(w, 0.0))}" height="{_c(max(h, 0.0))}" fill="{fill}"{extra}/>'


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
