"""The gate chart: each rule's judged value against its green and red limits, coloured by zone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .svg import GRID, LINE, MUTED, ZONE_COLOURS, _circle, _fmt, _line, _num, _rect, _Scale, _svg, _text


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
        span = (
            (abs(green - red) if green is not None and red is not None else 0) or (high - low) or max(abs(high), 0.01)
        )
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
                body.append(
                    _text(
                        scale(limit),
                        cy + 19,
                        _fmt(limit, 3, signed=rule.get("kind") == "delta"),
                        anchor="middle",
                        size=8.5,
                        fill=ZONE_COLOURS[colour],
                    )
                )
        if low <= 0 <= high and rule.get("kind") == "delta":
            body.append(_line(scale(0), cy - 9, scale(0), cy + 9, stroke=GRID, dash="2 2"))
        if value is None:
            body.append(_text(right + 8, cy + 4, "no evidence", size=10, fill=ZONE_COLOURS["amber"], weight="bold"))
        else:
            body.append(_circle(scale(value), cy, 5.5, fill=ZONE_COLOURS[zone]))
            body.append(
                _text(
                    right + 8,
                    cy + 4,
                    f"{_fmt(value, 3, signed=rule.get('kind') == 'delta')} {zone}",
                    size=10,
                    fill=ZONE_COLOURS[zone],
                    weight="bold",
                )
            )
        if i:
            body.append(_line(0, y - 2, width, y - 2, stroke=LINE))
    return _svg(width, int(top + len(gate) * row_h), body, "Gate: judged value of each rule against its limits")
