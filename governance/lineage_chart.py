"""An artifact's lineage as inline SVG (no JavaScript): its parent, the runs that made it, the artifact itself, the
runs that read it and its children, left to right in columns, each record a box that links to its page, arrows
from what was read to what was made.

The geometry is computed here, the markup is ``templates/governance/_lineage.svg`` (Django escapes every text and
link), as for the rounds chart. Columns with nothing in them are left out; a column holds at most MAX_PER_COLUMN
boxes, the last of them then saying how many more there are and linking to the page's table that lists them all.
Output is deterministic: boxes in the order given, every number at fixed precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from governance.rounds_chart import FONT, INK

__all__ = ["COLUMNS", "MAX_PER_COLUMN", "LineageNode", "lineage_chart"]

TEMPLATE = "governance/_lineage.svg"
ACCENT, EDGE, BORDER, HIDDEN_FILL, CURRENT_FILL = "#2f5bd3", "#98a2b3", "#cbd2dc", "#f7f8fa", "#eef2ff"
MUTED = "#5b6474"  # app.css --muted: 4.5:1 or more on every box fill
# (key, heading, the anchor of the page's table listing the column's records in full)
COLUMNS = (
    ("parent", "Parent", "parent"),
    ("made_by", "Made by", "made-by"),
    ("current", "This artifact", "artifact"),
    ("used_by", "Used by", "used-by"),
    ("children", "Children", "children"),
)
MAX_PER_COLUMN = 6
NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP = 150, 52, 34, 12
PAD, TOP = 10, 30  # TOP: the column headings above the boxes
TEXT_CHARS = 23  # characters of a name or method that fit a box at 10.5 px


@dataclass(frozen=True)
class LineageNode:
    key: str  # unique in the graph, e.g. "artifact:12", "run:5", "external:3"
    column: str  # a key of COLUMNS
    title: str  # "Artifact #12", "Run #5"
    subtitle: str = ""  # the artifact's name or the run's method
    detail: str = ""  # a short digest or a status
    href: str = ""  # empty: not a link (the artifact itself, or a record the viewer may not see)
    current: bool = False
    hidden: bool = False  # a record outside the viewer's scope: drawn dashed, without a link


def _c(value: float) -> str:
    return f"{value:.1f}"


def _fit(text: str, chars: int = TEXT_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _columns(nodes: Sequence[LineageNode], totals: Mapping[str, int]) -> list[tuple[str, str, list[LineageNode]]]:
    """The non-empty columns in order, each capped at MAX_PER_COLUMN boxes (the last then a "more" box)."""
    out = []
    for key, heading, anchor in COLUMNS:
        members = [n for n in nodes if n.column == key]
        if not members:
            continue
        total = max(len(members), totals.get(key, 0))
        if total > MAX_PER_COLUMN:
            rest = total - (MAX_PER_COLUMN - 1)
            more = LineageNode(
                key=f"more:{key}", column=key, title=f"+{rest} more", subtitle="listed below", href=f"#{anchor}"
            )
            members = [*members[: MAX_PER_COLUMN - 1], more]
        out.append((key, heading, members))
    return out


def _box(node: LineageNode, x: float, y: float) -> dict:
    if node.current:
        fill, stroke, width, dash, ink = CURRENT_FILL, ACCENT, 2, "", INK
    elif node.hidden:
        fill, stroke, width, dash, ink = HIDDEN_FILL, EDGE, 1, "4 3", MUTED
    else:
        fill, stroke, width, dash, ink = "#ffffff", BORDER, 1, "", ACCENT if node.href else INK
    words = " · ".join(t for t in (node.title, node.subtitle, node.detail) if t)
    return {
        "key": node.key,
        "href": node.href,
        "label": words,
        "x": _c(x),
        "y": _c(y),
        "width": NODE_WIDTH,
        "height": NODE_HEIGHT,
        "fill": fill,
        "stroke": stroke,
        "stroke_width": width,
        "dash": dash,
        "ink": ink,
        "text_x": _c(x + 8),
        "title": _fit(node.title),
        "title_y": _c(y + 16),
        "subtitle": _fit(node.subtitle),
        "subtitle_y": _c(y + 30),
        "detail": _fit(node.detail),
        "detail_y": _c(y + 44),
        "current": node.current,
    }


def _arrow(start: tuple[float, float], end: tuple[float, float]) -> dict:
    (x1, y1), (x2, y2) = start, end
    tip = x2 - 1
    middle = (x1 + tip) / 2
    return {
        "d": f"M{_c(x1)},{_c(y1)} C{_c(middle)},{_c(y1)} {_c(middle)},{_c(y2)} {_c(tip - 6)},{_c(y2)}",
        "head": f"{_c(tip)},{_c(y2)} {_c(tip - 7)},{_c(y2 - 4)} {_c(tip - 7)},{_c(y2 + 4)}",
    }


def _description(columns: list[tuple[str, str, list[LineageNode]]]) -> str:
    return " ".join(
        f"{heading}: {'; '.join(' '.join(t for t in (n.title, n.subtitle, n.detail) if t) for n in members)}."
        for _, heading, members in columns
    )


def lineage_chart(
    nodes: Sequence[LineageNode], edges: Sequence[tuple[str, str]], totals: Mapping[str, int] | None = None
) -> str:
    """The graph's SVG markup. ``edges`` are (from key, to key): from what a record read to what it made; edges
    to a box left out of a full column are dropped. ``totals``: a column's true count when only its first
    records were passed."""
    columns = _columns(nodes, totals or {})
    rows = max((len(members) for _, _, members in columns), default=1)
    plot_height = rows * NODE_HEIGHT + (rows - 1) * ROW_GAP
    boxes, headings, places = [], [], {}
    for i, (_, heading, members) in enumerate(columns):
        x = PAD + i * (NODE_WIDTH + COLUMN_GAP)
        height = len(members) * NODE_HEIGHT + (len(members) - 1) * ROW_GAP
        top = TOP + (plot_height - height) / 2
        headings.append({"x": _c(x + NODE_WIDTH / 2), "text": heading})
        for j, node in enumerate(members):
            y = top + j * (NODE_HEIGHT + ROW_GAP)
            places[node.key] = (x, y + NODE_HEIGHT / 2)
            boxes.append(_box(node, x, y))
    arrows = [
        _arrow((places[a][0] + NODE_WIDTH, places[a][1]), places[b])
        for a, b in edges
        if a in places and b in places and places[a][0] < places[b][0]
    ]
    context = {
        "width": PAD * 2 + len(columns) * NODE_WIDTH + (len(columns) - 1) * COLUMN_GAP,
        "height": int(TOP + plot_height + PAD),
        "font": FONT,
        "ink": INK,
        "muted": MUTED,
        "edge": EDGE,
        "heading_y": TOP - 12,
        "headings": headings,
        "boxes": boxes,
        "arrows": arrows,
        "title": "Lineage: where the artifact came from and what was made from it",
        "description": _description(columns),
    }
    # The template escaped every text; strip() would drop the string's "safe" mark, so it is marked again.
    return mark_safe(render_to_string(TEMPLATE, context).strip())
