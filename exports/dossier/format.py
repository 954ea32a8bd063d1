"""Formatting for the dossier: pure functions from bundle values to display strings (no locale, so the
output is the same on every machine), and the metric titles and directions, from the metric catalogue."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from evaluations.engine.catalog import CATALOG

# The metrics of the comparison table and forest plot, and which metrics are better lower: shared with the release
# page (governance.evidence), re-exported for the dossier's sections.
from governance.evidence import COMPARED_METRICS as COMPARED_METRICS
from governance.evidence import LOWER_IS_BETTER as LOWER_IS_BETTER
from governance.evidence import compared_metrics as compared_metrics

JSON_SHOWN = 4000  # characters of a free-form JSON block (parameters, configs)

OTHER_METRIC_ORDER = (
    "perplexity",
    "ece",
    "brier",
    "nll",
    "mean_confidence",
    "binary_macro_f1",
    "macro_f1",
    "fnr",
    "fnr_gap",
    "fpr_gap",
    "perturbation_accuracy",
    "consistency",
)
# Titles and directions from the metric catalogue (n_perturbed is a count, not a metric).
METRIC_NAMES = {spec.name: spec.title for spec in CATALOG} | {"n_perturbed": "Perturbed examples"}
SKIPPED_METRICS = {"n", "n_unsafe", "n_safe", "ece_bins", "reliability", "subgroups", "n_perturbed"}
STATUS_NAMES = {
    "in_review": "in review",
    "awaiting_decision": "awaiting decision",
    "rolling_out": "rolling out",
    "rolled_back": "rolled back",
    "roll_back": "roll back",
}


def _d(value: Any) -> dict:
    return value if isinstance(value, Mapping) else {}


def _l(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fixed(value: Any, digits: int = 3, signed: bool = False) -> str:
    v = _num(value)
    if v is None:
        return "—"
    text = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    if text[0] in "+-" and not text.strip("+-0."):
        text = text[1:]
    return text


def _int(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    return f"{int(round(v)):,}"


def _pct(value: Any, digits: int = 1) -> str:
    v = _num(value)
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def _pvalue(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    if v < 0.0001:
        return "< 0.0001"
    return f"{v:.4f}" if v < 0.01 else f"{v:.3f}"


def _bytes(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{int(v)} B"


def _seconds(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    if v < 1:
        return f"{v * 1000:.1f} ms"
    return f"{v:.2f} s"


def _ratio(candidate: Any, baseline: Any) -> str:
    c, b = _num(candidate), _num(baseline)
    if c is None or b is None or b == 0:
        return "—"
    return f"{c / b:.2f}×"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed


def _time_key(value: Any) -> tuple[float, str]:
    """Sort key for a time: UTC instant first (unparseable or naive times first), then the raw text."""
    parsed = _parse_time(value)
    return (parsed.timestamp() if parsed and parsed.tzinfo else float("-inf"), str(value))


def _time(value: Any, *, seconds: bool = True) -> str:
    parsed = _parse_time(value)
    if parsed is None:
        return str(value) if value not in (None, "") else "—"
    text = parsed.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return text + (" UTC" if parsed.tzinfo else "")


def _date(value: Any) -> str:
    parsed = _parse_time(value)
    return parsed.strftime("%d %B %Y").lstrip("0") if parsed else "—"


def _text(value: Any, default: str = "—") -> str:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else default
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or default
    if isinstance(value, Mapping):
        return _json(value)
    return str(value)


def _words(value: Any) -> str:
    text = _text(value)
    return STATUS_NAMES.get(text, text.replace("_", " "))


def _json(value: Any, limit: int = JSON_SHOWN) -> str:
    try:
        text = json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "\n… (truncated; see the JSON bundle)"


def _truncate(text: Any, limit: int) -> str:
    text = _text(text, "")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _zone(value: Any) -> str:
    return value if value in ("green", "amber", "red") else ""


def _metric_name(metric: Any) -> str:
    return METRIC_NAMES.get(metric, _text(metric).replace("_", " "))


def _cell(text: str, width: int) -> str:
    """Fit text into a fixed-width column of a monospace listing (truncated with an ellipsis)."""
    text = " ".join(text.split())
    return (text if len(text) <= width else text[: width - 1] + "…").ljust(width)


def _listing(header: tuple[str, ...], rows: list[tuple[str, ...]], widths: tuple[int, ...]) -> str:
    """A plain-text table in fixed columns; WeasyPrint lays out one line of text per row, which is far
    cheaper than an HTML table (the ledger excerpt would otherwise dominate the rendering time)."""
    lines = ["  ".join(_cell(h, w) for h, w in zip(header, widths, strict=False)).rstrip()]
    lines += ["  ".join(_cell(c, w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    return "\n".join(lines)


def _pairs(mapping: Any) -> list[tuple[str, str]]:
    return [(str(k), _text(v)) for k, v in sorted(_d(mapping).items(), key=lambda kv: str(kv[0]))]
