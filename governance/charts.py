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
