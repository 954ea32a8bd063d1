"""Small server-side SVG charts (no JavaScript, no extra dependency)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ChartRow:
    label: str
    zone: str
    y: float
    x_value: float | None
    x_green: float
    x_red: float
    value_text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    x_zero: float | None
    rows: list[ChartRow]


def delta_chart(verdicts: list[dict], *, width: int = 640, row_height: int = 34) -> Chart:
    """One row per rule: the judged value as a dot, the green and red limits as ticks, on a
    shared scale so officers see at a glance how far each value is from its limits."""
    values = [v for row in verdicts for v in (row["value"], row["green_limit"], row["red_limit"]) if v is not None]
    if not values:
        return Chart(width, 0, None, [])
    low, high = min(values + [0.0]), max(values + [0.0])
    span = (high - low) or 1.0
    low, high = low - 0.1 * span, high + 0.1 * span
    left, right = 230, width - 70

    def x(v: float) -> float:
        return round(left + (v - low) / (high - low) * (right - left), 1)

    rows = [
        ChartRow(
            label=f"{row['title']}",
            zone=row["zone"],
            y=20 + i * row_height,
            x_value=x(row["value"]) if row["value"] is not None else None,
            x_green=x(row["green_limit"]),
            x_red=x(row["red_limit"]),
            value_text="no evidence" if row["value"] is None else f"{row['value']:+.3f}",
        )
        for i, row in enumerate(verdicts)
    ]
    return Chart(width, 20 + len(rows) * row_height, x(0.0) if low <= 0 <= high else None, rows)


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
