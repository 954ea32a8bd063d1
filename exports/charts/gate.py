"""The gate chart: each rule's judged value against its green and red limits, coloured by zone, on the rule's own
scale. Drawn by ``governance.charts.gate_chart`` (the release page shows the same chart); re-exported here."""

from __future__ import annotations

from governance.charts import gate_chart

__all__ = ["gate_chart"]
