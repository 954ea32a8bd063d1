"""Order and labels of evidence groups (overall, slices, subgroups) shared by the charts and the tables; defined
in ``governance.evidence``, which the release page uses too."""

from __future__ import annotations

from governance.evidence import SLICE_ORDER, group_label, group_sort_key

__all__ = ["SLICE_ORDER", "group_label", "group_sort_key"]
