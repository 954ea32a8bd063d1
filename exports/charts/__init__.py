"""Inline SVG charts for the release dossier (pure Python: no Django, no numpy, no matplotlib).

Every function takes plain evidence-bundle data and returns an ``<svg>`` string, or ``""`` when there
is nothing to draw (the template then says so in words). Output is deterministic: the same input
gives the same bytes (rows are put in a fixed order, never in dict order, and every number is
formatted with a fixed precision). Every piece of text is XML-escaped. Styling uses presentation
attributes only, so the SVG looks the same in WeasyPrint and in a browser.

Modules: ``svg`` (primitives), ``groups`` (group order and labels), and one per chart: ``forest``,
``reliability``, ``subgroups``, ``gate``, ``stability``.
"""

from __future__ import annotations

from .forest import forest_plot
from .gate import gate_chart
from .groups import group_label, group_sort_key
from .reliability import reliability_diagram
from .stability import instability_chart, instability_shares
from .subgroups import subgroup_gaps, subgroup_rates

__all__ = [
    "forest_plot",
    "gate_chart",
    "group_label",
    "group_sort_key",
    "instability_chart",
    "instability_shares",
    "reliability_diagram",
    "subgroup_gaps",
    "subgroup_rates",
]
