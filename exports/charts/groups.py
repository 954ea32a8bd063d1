"""Order and labels of evidence groups (overall, slices, subgroups) shared by the charts and the tables."""

from __future__ import annotations

SLICE_ORDER = ("routine", "edge", "adversarial")


def group_sort_key(key: str) -> tuple:
    """overall first, then slices (routine, edge, adversarial, then others by name), then subgroups by name."""
    if key == "overall":
        return (0, 0, "")
    kind, _, name = key.partition(":")
    if kind == "slice":
        return (1, SLICE_ORDER.index(name) if name in SLICE_ORDER else len(SLICE_ORDER), name)
    if kind == "subgroup":
        return (2, 0, name)
    return (3, 0, key)


def group_label(key: str) -> str:
    if key == "overall":
        return "overall"
    kind, sep, name = key.partition(":")
    return f"{kind}: {name}" if sep else key
