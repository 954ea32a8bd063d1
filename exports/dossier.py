"""The release dossier: a PDF for regulators and auditors about one release, rendered only from its
evidence bundle (the same dict that is exported as signed JSON), so the PDF and the JSON carry the
same digests.

- :func:`bundle_digest` — sha256 of the bundle's canonical JSON (printed on the cover and in every
  page footer of the PDF).
- :func:`dossier_context` — the bundle turned into display-ready values (all formatting happens
  here, in Python, so the template holds no logic and the output does not depend on the locale).
- :func:`render_dossier_html` — the dossier as HTML (``templates/exports/dossier.html``).
- :func:`render_dossier_pdf` — the dossier as PDF bytes (WeasyPrint). Deterministic: the same bundle
  gives byte-identical PDFs (no creation date, a fixed ``/ID`` derived from the bundle digest, rows
  in a fixed order rather than dict order, fonts named explicitly).

A missing part of the bundle (no taxonomy, no comparison, no reviews, ...) is stated in one line; it
never makes rendering fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from exports import charts

__all__ = [
    "FLIPS_SHOWN",
    "LEDGER_EVENTS_SHOWN",
    "SECTIONS",
    "bundle_digest",
    "canonical_json",
    "dossier_context",
    "render_dossier_html",
    "render_dossier_pdf",
]

TEMPLATE = "exports/dossier.html"
FLIPS_SHOWN = 25
LEDGER_EVENTS_SHOWN = 30
TEXT_SHOWN = 280  # characters of a flipped example's text
JSON_SHOWN = 4000  # characters of a free-form JSON block (parameters, configs)

#: (anchor, heading) of every numbered section, in order; the template renders exactly these.
SECTIONS = (
    ("summary", "Executive summary"),
    ("policy", "Risk taxonomy, threshold policy and gate result"),
    ("provenance", "Provenance of the artifacts"),
    ("metrics", "Metrics with confidence intervals"),
    ("calibration", "Calibration and subgroup error rates"),
    ("runtime", "Runtime and size"),
    ("flips", "Flip-set excerpt"),
    ("reviews", "Blind review"),
    ("escalations", "Escalation history"),
    ("incidents", "Incidents"),
    ("decisions", "Decisions and rollout"),
    ("ledger", "Audit ledger excerpt and signed checkpoint"),
    ("verify", "Appendix: How to verify this document"),
)

COMPARED_METRICS = ("accuracy", "unsafe_recall", "benign_fpr")
METRIC_NAMES = {
    "accuracy": "Accuracy", "unsafe_recall": "Unsafe recall", "benign_fpr": "Benign FPR", "fnr": "False-negative rate",
    "binary_macro_f1": "Binary macro-F1", "macro_f1": "Macro-F1", "brier": "Brier score", "nll": "Negative log-likelihood",
    "mean_confidence": "Mean confidence", "ece": "Expected calibration error (ECE)", "fnr_gap": "Subgroup FNR gap",
    "fpr_gap": "Subgroup FPR gap", "perturbation_accuracy": "Perturbation accuracy", "consistency": "Consistency",
    "n_perturbed": "Perturbed examples", "flip_rate": "Flip rate",
}
LOWER_IS_BETTER = {"benign_fpr", "fnr", "brier", "nll", "ece", "fnr_gap", "fpr_gap", "flip_rate"}
OTHER_METRIC_ORDER = ("ece", "brier", "nll", "mean_confidence", "binary_macro_f1", "macro_f1", "fnr", "fnr_gap",
                      "fpr_gap", "perturbation_accuracy", "consistency")
SKIPPED_METRICS = {"n", "n_unsafe", "n_safe", "ece_bins", "reliability", "subgroups", "n_perturbed"}
STATUS_NAMES = {"in_review": "in review", "awaiting_decision": "awaiting decision", "rolling_out": "rolling out",
                "rolled_back": "rolled back", "roll_back": "roll back"}


# --------------------------------------------------------------------------------------------------
# Digest
# --------------------------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Sorted keys, no insignificant whitespace, non-ASCII kept (UTF-8), NaN refused — as in the ledger."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def bundle_digest(bundle: Mapping) -> str:
    """sha256 (hex) of the bundle's canonical JSON, UTF-8 encoded: the digest the PDF prints and the
    DSSE payload of the signed JSON bundle hashes to."""
    return hashlib.sha256(canonical_json(bundle).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# Formatting (pure functions; no locale)
# --------------------------------------------------------------------------------------------------


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
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed


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
    lines = ["  ".join(_cell(h, w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(_cell(c, w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _pairs(mapping: Any) -> list[tuple[str, str]]:
    return [(str(k), _text(v)) for k, v in sorted(_d(mapping).items(), key=lambda kv: str(kv[0]))]


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def _artifacts(bundle: Mapping) -> list[dict]:
    out = []
    for a in sorted((x for x in _l(bundle.get("artifacts")) if isinstance(x, Mapping)),
                    key=lambda a: (0 if a.get("role") == "base" else 1 if a.get("role") == "candidate" else 2,
                                   str(a.get("id")))):
        out.append({"role": _text(a.get("role")), "id": _text(a.get("id")), "name": _text(a.get("name")),
                    "digest": _text(a.get("digest")), "format": _text(a.get("format")),
                    "size": _bytes(a.get("size_bytes")), "size_exact": _int(a.get("size_bytes")),
                    "parameters": _int(a.get("parameter_count")),
                    "parent_digest": _text(a.get("parent_digest"), "none (root artifact)")})
    return out


def _artifact(bundle: Mapping, role: str) -> dict:
    for a in _l(bundle.get("artifacts")):
        if isinstance(a, Mapping) and a.get("role") == role:
            return a
    return {}


def _provenance(run: Mapping) -> dict:
    statement = _d(run.get("provenance"))
    predicate = _d(statement.get("predicate"))
    build = _d(predicate.get("buildDefinition"))
    details = _d(predicate.get("runDetails"))
    meta = _d(details.get("metadata"))
    deps, code = [], None
    for dep in _l(build.get("resolvedDependencies")):
        dep = _d(dep)
        digests = _d(dep.get("digest"))
        deps.append({"name": _text(dep.get("name"), ""), "uri": _text(dep.get("uri")),
                     "digests": [f"{k}:{v}" for k, v in sorted(digests.items())],
                     "annotations": _pairs(dep.get("annotations"))})
        if "gitCommit" in digests and code is None:
            code = {"commit": _text(digests["gitCommit"]), "uri": _text(dep.get("uri")),
                    "dirty": _text(_d(dep.get("annotations")).get("dirty"), "unknown")}
    environment: dict = {}
    other_byproducts = []
    for item in _l(details.get("byproducts")):
        item = _d(item)
        if item.get("name") == "environment" and isinstance(item.get("content"), Mapping):
            environment = dict(item["content"])
        elif item:
            other_byproducts.append({"name": _text(item.get("name")), "json": _json(item)})
    extra = {k: v for k, v in environment.items() if k not in ("packages", "hardware")}
    env_rows = []
    for key in sorted(extra):
        value = extra[key]
        shown = _bytes(value) if key.endswith("_bytes") else _seconds(value) if key.endswith("seconds") else _text(value)
        env_rows.append((key.replace("_", " "), shown))
    subjects = [{"name": _text(_d(s).get("name")),
                 "digests": [f"{k}:{v}" for k, v in sorted(_d(_d(s).get("digest")).items())]}
                for s in _l(statement.get("subject"))]
    return {
        "present": bool(statement),
        "type": _text(statement.get("_type")), "predicate_type": _text(statement.get("predicateType")),
        "subjects": subjects, "build_type": _text(build.get("buildType")),
        "external_parameters": _json(build.get("externalParameters", {})),
        "internal_parameters": _pairs(build.get("internalParameters")),
        "dependencies": deps, "code": code,
        "builder": _text(_d(details.get("builder")).get("id")),
        "invocation": _text(meta.get("invocationId")),
        "started": _time(meta.get("startedOn")), "finished": _time(meta.get("finishedOn")),
        "packages": _pairs(environment.get("packages")), "hardware": _pairs(environment.get("hardware")),
        "environment": env_rows, "other_byproducts": other_byproducts,
    }


def _envelope(envelope: Any, statement: Any) -> dict | None:
    envelope = _d(envelope)
    if not envelope:
        return None
    payload_digest, matches = "—", "cannot tell (payload is not valid base64)"
    try:
        payload = base64.b64decode(str(envelope.get("payload", "")), validate=False)
        payload_digest = hashlib.sha256(payload).hexdigest()
        if statement:
            matches = "yes" if payload == canonical_json(statement).encode("utf-8") else \
                "no — the statement shown differs from the signed payload"
        else:
            matches = "no statement recorded to compare"
    except (binascii.Error, ValueError, TypeError):
        pass
    return {"payload_type": _text(envelope.get("payloadType")), "payload_sha256": payload_digest,
            "matches": matches,
            "signatures": [{"keyid": _text(_d(s).get("keyid"), "(none)"), "sig": _text(_d(s).get("sig"))}
                           for s in _l(envelope.get("signatures"))]}


def _rule_index(bundle: Mapping) -> tuple[dict, dict]:
    taxonomy = _d(bundle.get("taxonomy"))
    modes = {m.get("code"): m for m in _l(taxonomy.get("failure_modes")) if isinstance(m, Mapping)}
    rules = {r.get("code"): r for r in _l(_d(bundle.get("policy")).get("rules")) if isinstance(r, Mapping)}
    return modes, rules


def _limit_text(rule: Mapping) -> tuple[str, str]:
    signed = rule.get("kind") == "delta"
    op_green, op_red = (("≥", "<") if rule.get("higher_is_better") else ("≤", ">"))
    return (f"{op_green} {_fixed(rule.get('green_limit'), 3, signed)}", f"{op_red} {_fixed(rule.get('red_limit'), 3, signed)}")


def _taxonomy(bundle: Mapping) -> dict | None:
    taxonomy = bundle.get("taxonomy")
    if not isinstance(taxonomy, Mapping):
        return None
    judged: dict[Any, list[str]] = {}
    for r in _l(_d(bundle.get("policy")).get("rules")):
        if isinstance(r, Mapping):
            judged.setdefault(r.get("failure_mode_code"), []).append(_text(r.get("code")))
    modes = []
    for m in sorted((m for m in _l(taxonomy.get("failure_modes")) if isinstance(m, Mapping)),
                    key=lambda m: (-(_num(m.get("severity")) or 0), str(m.get("code")))):
        measures = [f"{_text(_d(x).get('metric'))} on {charts.group_label(_text(_d(x).get('group')))}"
                    f" ({_text(_d(x).get('worse'))} is worse)" for x in _l(m.get("measures"))]
        modes.append({"code": _text(m.get("code")), "category": _text(m.get("category")), "title": _text(m.get("title")),
                      "severity": _text(m.get("severity")), "severity_class": _int(m.get("severity")),
                      "likelihood": _text(m.get("likelihood")), "measures": measures,
                      "refs": [_text(r) for r in _l(m.get("regulatory_refs"))],
                      "rules": judged.get(m.get("code"), [])})
    return {"name": _text(taxonomy.get("name")), "version": _text(taxonomy.get("version")), "modes": modes}


def _policy(bundle: Mapping) -> dict | None:
    policy = bundle.get("policy")
    if not isinstance(policy, Mapping):
        return None
    modes, _ = _rule_index(bundle)
    rules = []
    for r in (r for r in _l(policy.get("rules")) if isinstance(r, Mapping)):
        mode = _d(modes.get(r.get("failure_mode_code")))
        green, red = _limit_text(r)
        rules.append({"code": _text(r.get("code")), "title": _text(r.get("title")),
                      "failure_mode": _text(r.get("failure_mode_code")), "failure_mode_title": _text(mode.get("title"), ""),
                      "severity": _text(mode.get("severity"), ""),
                      "refs": [_text(x) for x in _l(mode.get("regulatory_refs"))],
                      "measure": f"{_metric_name(r.get('metric'))} · {charts.group_label(_text(r.get('group')))}",
                      "kind": _text(r.get("kind")), "bound": _text(r.get("bound")), "green": green, "red": red})
    return {"name": _text(policy.get("name")), "version": _text(policy.get("version")), "rules": rules}


def _rules(bundle: Mapping) -> list[dict]:
    """The policy's rules in policy order, each with its gate verdict (value, zone); verdicts for rules
    the policy does not list (should not happen) are appended."""
    modes, _ = _rule_index(bundle)
    verdicts = {v.get("rule"): v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)}
    rules = [r for r in _l(_d(bundle.get("policy")).get("rules")) if isinstance(r, Mapping)]
    codes = {r.get("code") for r in rules}
    rows = []
    for rule, verdict in [(r, _d(verdicts.get(r.get("code")))) for r in rules] + [
            (v, v) for v in _l(bundle.get("gate")) if isinstance(v, Mapping) and v.get("rule") not in codes]:
        mode = _d(modes.get(rule.get("failure_mode_code")))
        green, red = _limit_text(rule)
        signed = rule.get("kind") == "delta"
        value = _num(verdict.get("value"))
        rows.append({
            "code": _text(rule.get("code") or rule.get("rule")), "title": _text(rule.get("title")),
            "failure_mode": _text(rule.get("failure_mode_code")), "failure_mode_title": _text(mode.get("title"), ""),
            "severity": _int(mode.get("severity")) if _num(mode.get("severity")) is not None else "",
            "refs": [_text(x) for x in _l(mode.get("regulatory_refs"))],
            "measure": f"{_metric_name(rule.get('metric'))} · {charts.group_label(_text(rule.get('group')))}",
            "judged": f"{_text(rule.get('kind'))}, {_text(rule.get('bound'))}", "green": green, "red": red,
            "value": _fixed(value, 4, signed) if value is not None else ("no evidence" if verdict else "not judged"),
            "zone": _zone(verdict.get("zone")), "reason": _text(verdict.get("reason"), ""),
        })
    return rows


def _gate(bundle: Mapping) -> dict:
    rows, counts = [], {"green": 0, "amber": 0, "red": 0}
    for v in (v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)):
        zone = _zone(v.get("zone"))
        if zone:
            counts[zone] += 1
        green, red = _limit_text(v)
        signed = v.get("kind") == "delta"
        rows.append({"rule": _text(v.get("rule")), "title": _text(v.get("title")),
                     "measure": f"{_metric_name(v.get('metric'))} · {charts.group_label(_text(v.get('group')))}",
                     "judged": f"{_text(v.get('kind'))}, {_text(v.get('bound'))}",
                     "value": _fixed(v.get("value"), 4, signed) if _num(v.get("value")) is not None else "no evidence",
                     "green": green, "red": red, "zone": zone, "reason": _text(v.get("reason"), "")})
    return {"rows": rows, "counts": counts}


def _groups_table(comparison: Mapping) -> list[dict]:
    groups = _d(comparison.get("groups"))
    out = []
    for key in sorted(groups, key=charts.group_sort_key):
        g = _d(groups[key])
        metrics = _d(g.get("metrics"))
        cells = []
        for name in COMPARED_METRICS:
            m = _d(metrics.get(name))
            cells.append({"baseline": _fixed(m.get("baseline")), "candidate": _fixed(m.get("candidate")),
                          "delta": _fixed(m.get("delta"), 3, True),
                          "ci": (f"[{_fixed(m.get('ci_low'), 3, True)}, {_fixed(m.get('ci_high'), 3, True)}]"
                                 if _num(m.get("ci_low")) is not None and _num(m.get("ci_high")) is not None else ""),
                          "worse": _worse(name, m)})
        mc = _d(g.get("mcnemar"))
        n = _num(g.get("n"))
        flips = _num(g.get("flips"))
        out.append({"label": charts.group_label(str(key)), "n": _int(g.get("n")), "n_unsafe": _int(g.get("n_unsafe")),
                    "flips": _int(g.get("flips")),
                    "flip_rate": _pct(flips / n) if n and flips is not None else "—",
                    "b": _int(mc.get("b")), "c": _int(mc.get("c")), "p": _pvalue(mc.get("p_value")),
                    "cells": cells})
    return out


def _worse(metric: str, m: Mapping) -> bool:
    """True when the whole interval lies on the worse side of zero (a significant deterioration)."""
    lo, hi = _num(m.get("ci_low")), _num(m.get("ci_high"))
    if lo is None or hi is None:
        return False
    return lo > 0 if metric in LOWER_IS_BETTER else hi < 0


def _other_metrics(evaluations: Mapping) -> list[dict]:
    base = _d(_d(_d(evaluations.get("baseline")).get("metrics")).get("overall"))
    cand = _d(_d(_d(evaluations.get("candidate")).get("metrics")).get("overall"))
    names = [n for n in OTHER_METRIC_ORDER if n in base or n in cand]
    names += sorted(n for n in {*base, *cand} if n not in names and n not in SKIPPED_METRICS
                    and n not in COMPARED_METRICS and _num(base.get(n, cand.get(n))) is not None)
    rows = []
    for name in names:
        b, c = _num(base.get(name)), _num(cand.get(name))
        delta = c - b if b is not None and c is not None else None
        rows.append({"name": _metric_name(name), "key": name, "baseline": _fixed(b, 4), "candidate": _fixed(c, 4),
                     "delta": _fixed(delta, 4, True),
                     "direction": "lower is better" if name in LOWER_IS_BETTER else "higher is better"})
    return rows


RUNTIME_ROWS = (
    ("examples_per_second", "Throughput (examples/s)", lambda v: _fixed(v, 1), True),
    ("batch_latency_p50_s", "Batch latency p50", _seconds, False),
    ("batch_latency_p95_s", "Batch latency p95", _seconds, False),
    ("batch_latency_p99_s", "Batch latency p99", _seconds, False),
    ("example_latency_p95_s", "Per-example latency p95", _seconds, False),
    ("peak_rss_bytes", "Peak resident memory", _bytes, False),
    ("size_bytes", "Size on disk", _bytes, False),
    ("parameter_count", "Parameters", _int, False),
    ("examples", "Examples evaluated", _int, None),
    ("wall_seconds", "Wall time", _seconds, False),
)


def _runtime(evaluations: Mapping) -> list[dict]:
    base = _d(_d(evaluations.get("baseline")).get("runtime"))
    cand = _d(_d(evaluations.get("candidate")).get("runtime"))
    rows = []
    for key, label, fmt, _higher in RUNTIME_ROWS:
        if key not in base and key not in cand:
            continue
        rows.append({"label": label, "baseline": fmt(base.get(key)), "candidate": fmt(cand.get(key)),
                     "ratio": _ratio(cand.get(key), base.get(key)) if _higher is not None else ""})
    return rows


def _evaluation_runs(evaluations: Mapping) -> list[dict]:
    out = []
    for role in ("baseline", "candidate"):
        run = evaluations.get(role)
        if not isinstance(run, Mapping):
            out.append({"role": role, "missing": True})
            continue
        out.append({"role": role, "missing": False, "id": _text(run.get("id")),
                    "digest": _text(run.get("artifact_digest")), "config": _pairs(run.get("config"))})
    return out


def _bins(run: Mapping) -> Any:
    overall = _d(_d(run.get("metrics")).get("overall"))
    return overall.get("ece_bins", overall.get("reliability"))


def _flips(bundle: Mapping) -> dict:
    items = [f for f in _l(bundle.get("flips_excerpt")) if isinstance(f, Mapping)][:FLIPS_SHOWN]
    rows = []
    for f in items:
        rows.append({"id": _text(f.get("external_id") or f.get("example_id")), "example_id": _text(f.get("example_id")),
                     "text": _truncate(f.get("text"), TEXT_SHOWN),
                     "slice": _text(f.get("slice")), "subgroup": _text(f.get("subgroup"), "—"),
                     "label": _text(f.get("label")),
                     "baseline": _fixed(f.get("baseline_prob")), "candidate": _fixed(f.get("candidate_prob")),
                     "direction": "→ unsafe" if f.get("direction") == "to_unsafe" else
                     "→ safe" if f.get("direction") == "to_safe" else _text(f.get("direction")),
                     "correct": _text(f.get("candidate_correct")) if isinstance(f.get("candidate_correct"), bool) else "—"})
    total = _num(_d(bundle.get("comparison")).get("flip_count"))
    return {"rows": rows, "shown": len(rows), "total": _int(total) if total is not None else _int(len(rows)),
            "to_unsafe": sum(1 for f in items if f.get("direction") == "to_unsafe"),
            "to_safe": sum(1 for f in items if f.get("direction") == "to_safe")}


def _reviews(bundle: Mapping) -> dict:
    outcome = _d(_d(bundle.get("release")).get("review_outcome"))
    flips = {f.get("id"): f for f in _l(bundle.get("flips_excerpt")) if isinstance(f, Mapping) and "id" in f}
    rows = []
    for r in sorted((r for r in _l(bundle.get("reviews")) if isinstance(r, Mapping)),
                    key=lambda r: (str(r.get("flip")), str(r.get("submitted_at")), str(r.get("reviewer")))):
        flip = _d(flips.get(r.get("flip")))
        rows.append({"flip": _text(r.get("flip")), "example": _text(flip.get("external_id"), ""),
                     "reviewer": _text(r.get("reviewer")), "label": _words(r.get("label")),
                     "note": _text(r.get("note"), ""), "at": _time(r.get("submitted_at"))})
    summary = None
    if outcome:
        labels = ", ".join(f"{_words(k)}: {_text(v)}" for k, v in sorted(_d(outcome.get("labels")).items()))
        summary = {"items": _int(outcome.get("items")), "reviews": _int(outcome.get("reviews")), "labels": labels or "—",
                   "deviation_items": _int(outcome.get("deviation_items")),
                   "deviation_share": _pct(outcome.get("deviation_share")),
                   "max_share": _pct(outcome.get("max_deviation_share")),
                   "kappa": _fixed(outcome.get("kappa"), 2) if _num(outcome.get("kappa")) is not None
                   else "not computed (no item was reviewed twice)",
                   "verdict": _text(outcome.get("verdict"))}
    return {"rows": rows, "outcome": summary}


def _escalations(bundle: Mapping) -> list[dict]:
    return [{"id": _text(e.get("id")), "trigger": _words(e.get("trigger")), "summary": _text(e.get("summary")),
             "level": _text(e.get("level")), "deadline": _time(e.get("deadline"), seconds=False),
             "status": _words(e.get("status")), "open": e.get("status") not in ("resolved", "closed"),
             "resolution": _text(e.get("resolution"), ""), "opened": _time(e.get("opened_at"), seconds=False),
             "resolved": _time(e.get("resolved_at"), seconds=False) if e.get("resolved_at") else "—"}
            for e in _l(bundle.get("escalations")) if isinstance(e, Mapping)]


def _incidents(bundle: Mapping) -> list[dict]:
    return [{"id": _text(i.get("id")), "severity": _text(i.get("severity")), "severity_class": _int(i.get("severity")),
             "title": _text(i.get("title")), "opened": _time(i.get("opened_at"), seconds=False)}
            for i in _l(bundle.get("incidents")) if isinstance(i, Mapping)]


EVIDENCE_ORDER = ("candidate", "baseline", "suite_version", "policy", "comparison_results", "gate", "review_outcome")


def _decisions(bundle: Mapping) -> list[dict]:
    out = []
    items = [d for d in _l(bundle.get("decisions")) if isinstance(d, Mapping)]
    for d in sorted(items, key=lambda d: _time_key(d.get("created_at"))):
        evidence = _d(d.get("evidence"))
        keys = [k for k in EVIDENCE_ORDER if k in evidence] + sorted(k for k in evidence if k not in EVIDENCE_ORDER)
        pairs = [(k.replace("_", " "), _text(evidence[k], "none")) for k in keys]
        out.append({"kind": _words(d.get("kind")), "actor": _text(d.get("actor")), "role": _text(d.get("actor_role")),
                    "rationale": _text(d.get("rationale")), "at": _time(d.get("created_at")),
                    "evidence": pairs,
                    "evidence_listing": "\n".join(f"{k:<19} {v}" for k, v in pairs)})
    return out


def _newest_decision(bundle: Mapping) -> dict | None:
    best = None
    for d in _l(bundle.get("decisions")):
        if not isinstance(d, Mapping):
            continue
        key = _time_key(d.get("created_at"))
        if best is None or key > best[0]:
            best = (key, d)
    if best is None:
        return None
    d = best[1]
    return {"kind": _words(d.get("kind")), "actor": _text(d.get("actor")), "role": _text(d.get("actor_role")),
            "at": _time(d.get("created_at")), "date": _date(d.get("created_at"))}


def _rollout(release: Mapping) -> list[dict]:
    stages = sorted((s for s in _l(release.get("rollout")) if isinstance(s, Mapping)),
                    key=lambda s: _num(s.get("position")) or 0)
    return [{"position": _text(s.get("position")), "percent": f"{_text(s.get('percent'))}%",
             "starts": _time(s.get("starts_at"), seconds=False),
             "started": _time(s.get("started_at"), seconds=False) if s.get("started_at") else "not started"}
            for s in stages]


def _ledger(bundle: Mapping) -> dict:
    ledger = _d(bundle.get("ledger"))
    events = sorted((e for e in _l(ledger.get("events")) if isinstance(e, Mapping)),
                    key=lambda e: (_num(e.get("seq")) or 0))
    shown = events[-LEDGER_EVENTS_SHOWN:]
    checkpoint = ledger.get("checkpoint")
    cp = None
    if isinstance(checkpoint, Mapping):
        cp_seq = _num(checkpoint.get("seq"))
        last = _num(events[-1].get("seq")) if events else None
        covers = ("yes" if cp_seq is not None and last is not None and cp_seq >= last else
                  "no — events after the checkpoint are not yet covered by a signature" if last is not None else "—")
        cp = {"type": _text(checkpoint.get("type")), "seq": _text(checkpoint.get("seq")),
              "head_hash": _text(checkpoint.get("head_hash")), "at": _time(checkpoint.get("at")),
              "at_raw": _text(checkpoint.get("at")), "key_id": _text(checkpoint.get("key_id")),
              "signature": _text(checkpoint.get("signature")), "covers": covers,
              "key_matches": ("yes" if checkpoint.get("key_id") == ledger.get("public_key_id") else "no")
              if ledger.get("public_key_id") else "—"}
    rows = [(_text(e.get("seq")), _time(e.get("occurred_at")).removesuffix(" UTC"), _text(e.get("action")),
             _text(e.get("actor"), "system"), f"{_text(e.get('object_type'))} {_text(e.get('object_id'), '')}".strip(),
             _text(e.get("hash"))[:16]) for e in shown]
    listing = _listing(("seq", "time (UTC)", "action", "actor", "object", "hash (first 16)"), rows,
                       (6, 19, 26, 12, 22, 16)) if rows else ""
    return {"listing": listing, "shown": len(shown), "total": len(events), "checkpoint": cp,
            "public_key_id": _text(ledger.get("public_key_id"))}


def _candidates(bundle: Mapping) -> list[dict]:
    """Optional: the other releases of the same experiment (alternatives considered), when the bundle has them."""
    out = []
    for c in (c for c in _l(bundle.get("candidates")) if isinstance(c, Mapping)):
        out.append({"release": _text(c.get("release")), "method": _text(c.get("method")),
                    "parameters": "method defaults" if not c.get("parameters") else
                    ", ".join(f"{k}={_text(v)}" for k, v in sorted(_d(c.get("parameters")).items())),
                    "size": _bytes(c.get("size_bytes")), "zone": _zone(c.get("gate_zone")),
                    "status": _words(c.get("status")), "flips": _int(c.get("flips")),
                    "accuracy_delta": _fixed(c.get("accuracy_delta"), 3, True),
                    "recall_delta": _fixed(c.get("unsafe_recall_delta"), 3, True),
                    "this": bool(c.get("this_release")), "digest": _text(c.get("candidate_digest"))})
    return out


def _summary(bundle: Mapping, ctx: dict) -> list[tuple[str, str]]:
    base, cand = _artifact(bundle, "base"), _artifact(bundle, "candidate")
    run = _d(bundle.get("compression_run"))
    release = _d(bundle.get("release"))
    params = ", ".join(f"{k} = {_text(v)}" for k, v in sorted(_d(run.get("parameters")).items())) or "defaults"
    size_note = ""
    if _num(base.get("size_bytes")) and _num(cand.get("size_bytes")) is not None:
        size_note = (f" Size on disk {_bytes(base.get('size_bytes'))} → {_bytes(cand.get('size_bytes'))} "
                     f"({_ratio(cand.get('size_bytes'), base.get('size_bytes'))} of the base).")
    runtime = {r["label"]: r for r in ctx["runtime"]}
    speed = runtime.get("Throughput (examples/s)")
    if speed and speed["ratio"] != "—":
        size_note += f" Throughput {speed['baseline']} → {speed['candidate']} examples/s ({speed['ratio']})."
    counts = ctx["gate"]["counts"]
    gate_zone = _zone(release.get("gate_zone")) or _zone(_d(bundle.get("verdict")).get("gate_zone"))
    policy_text = (f"policy {ctx['policy']['name']} v{ctx['policy']['version']}, {len(ctx['policy']['rules'])} rules"
                   if ctx["policy"] else "no threshold policy in the bundle")
    if ctx["gate"]["rows"]:
        gate_text = (f"{gate_zone.upper() if gate_zone else 'NOT JUDGED'}: {counts['green']} green, {counts['amber']} amber, "
                     f"{counts['red']} red ({policy_text}).")
    else:
        gate_text = f"Not judged yet ({policy_text})."
    red = [r["title"] for r in ctx["gate"]["rows"] if r["zone"] == "red"]
    amber = [r["title"] for r in ctx["gate"]["rows"] if r["zone"] == "amber"]
    if red:
        gate_text += " Red: " + "; ".join(red) + "."
    if amber:
        gate_text += " Amber: " + "; ".join(amber) + "."
    comparison = _d(bundle.get("comparison"))
    overall = _d(_d(comparison.get("groups")).get("overall"))
    if comparison:
        n, count = _num(overall.get("n")), _num(comparison.get("flip_count"))
        share = f" ({_pct(count / n)})" if n and count is not None else ""
        flips_text = (f"{ctx['flips']['total']} of {_int(n)} decisions changed{share}; "
                      f"{ctx['flips']['shown']} shown in section {ctx['number']['flips']}.")
        mc = _d(overall.get("mcnemar"))
        if mc:
            flips_text += (f" McNemar: baseline right/candidate wrong {_int(mc.get('b'))}, the reverse {_int(mc.get('c'))}, "
                           f"p = {_pvalue(mc.get('p_value'))}.")
    else:
        flips_text = "No comparison of the candidate with the baseline is recorded."
    outcome = ctx["reviews"]["outcome"]
    review_text = (f"{outcome['verdict'].upper()}: {outcome['items']} flipped items, {outcome['reviews']} reviews, "
                   f"safety deviations {outcome['deviation_share']} (limit {outcome['max_share']}), "
                   f"Cohen's kappa {outcome['kappa']}." if outcome else "No blind review was recorded.")
    open_esc = [e for e in ctx["escalations"] if e["open"]]
    esc_text = (f"{len(open_esc)} open of {len(ctx['escalations'])}"
                + (": " + "; ".join(f"#{e['id']} {e['trigger']} (level {e['level']}, due {e['deadline']})" for e in open_esc)
                   if open_esc else "") + "." if ctx["escalations"] else "None.")
    newest = ctx["newest_decision"]
    decision_text = (f"{newest['kind'].capitalize()} by {newest['actor']} ({newest['role']}) on {newest['at']}; "
                     f"{len(ctx['decisions'])} decision(s) in total." if newest else "No decision has been recorded.")
    rollout = ctx["rollout"]
    started = [s for s in rollout if s["started"] != "not started"]
    rollout_text = (f"{len(started)} of {len(rollout)} stages started"
                    + (f", now at {started[-1]['percent']}" if started else "") + "." if rollout else "No rollout plan.")
    return [
        ("Release", f"#{_text(release.get('id'))}, {_words(release.get('status'))}, risk tier "
                    f"{_text(release.get('risk_tier'))}, version {_text(release.get('version'))}, created "
                    f"{_time(release.get('created_at'), seconds=False)}."),
        ("What was compressed", f"{_text(base.get('name'))} ({_int(base.get('parameter_count'))} parameters, "
                                f"{_bytes(base.get('size_bytes'))}), experiment “{_text(_d(bundle.get('experiment')).get('name'))}” "
                                f"owned by {_text(_d(bundle.get('experiment')).get('owner'))}."),
        ("How", f"{_text(run.get('method'))} with {params}; seed {_text(run.get('seed'))}; "
                f"run #{_text(run.get('id'))} {_text(run.get('status'))}"
                f"{' in ' + _seconds(run.get('wall_seconds')) if _num(run.get('wall_seconds')) is not None else ''}."
                f"{size_note}"),
        ("Evaluated on", f"{_text(_d(bundle.get('suite_version')).get('suite'))} v{_text(_d(bundle.get('suite_version')).get('number'))}, "
                         f"{_int(_d(bundle.get('suite_version')).get('example_count'))} examples."),
        ("Gate", gate_text),
        ("Flips", flips_text),
        ("Blind review", review_text),
        ("Escalations", esc_text),
        ("Incidents", f"{len(ctx['incidents'])} reported." if ctx["incidents"] else "None reported."),
        ("Decision", decision_text),
        ("Rollout", rollout_text),
    ]


# --------------------------------------------------------------------------------------------------
# Context and rendering
# --------------------------------------------------------------------------------------------------


def dossier_context(bundle: Mapping) -> dict:
    """Everything the template shows, formatted. Pure: depends only on the bundle's content."""
    if not isinstance(bundle, Mapping):
        raise TypeError("the evidence bundle must be a JSON object (dict)")
    digest = bundle_digest(bundle)
    release = _d(bundle.get("release"))
    verdict = _d(bundle.get("verdict"))
    experiment = _d(bundle.get("experiment"))
    run = _d(bundle.get("compression_run"))
    evaluations = _d(bundle.get("evaluations"))
    comparison = _d(bundle.get("comparison"))
    statistics = _d(comparison.get("statistics"))
    suite = _d(bundle.get("suite_version"))
    base_run, cand_run = _d(evaluations.get("baseline")), _d(evaluations.get("candidate"))
    zone = _zone(release.get("gate_zone")) or _zone(verdict.get("gate_zone"))
    candidate_digest = _text(release.get("candidate_digest") or _artifact(bundle, "candidate").get("digest"))

    ctx: dict[str, Any] = {
        "digest": digest,
        "schema": _text(bundle.get("schema")),
        "number": {a: "A" if a == "verify" else str(i + 1) for i, (a, _) in enumerate(SECTIONS)},
        "titles": dict(SECTIONS),
        "sections": [{"anchor": a, "title": t, "number": "A" if a == "verify" else str(i + 1)}
                     for i, (a, t) in enumerate(SECTIONS)],
        "release": {"id": _text(release.get("id")), "status": _words(release.get("status") or verdict.get("status")),
                    "version": _text(release.get("version")), "risk_tier": _text(release.get("risk_tier")),
                    "created": _time(release.get("created_at"), seconds=False), "candidate_digest": candidate_digest},
        "zone": zone,
        "verdict": {"status": _words(verdict.get("status") or release.get("status")),
                    "summary": _text(verdict.get("summary"), "")},
        "experiment": {"id": _text(experiment.get("id")), "name": _text(experiment.get("name")),
                       "description": _text(experiment.get("description"), ""), "owner": _text(experiment.get("owner")),
                       "risk_tier": _text(experiment.get("risk_tier")),
                       "unsafe_labels": _text(experiment.get("unsafe_labels"))},
        "artifacts": _artifacts(bundle),
        "run": {"present": bool(run), "id": _text(run.get("id")), "method": _text(run.get("method")),
                "parameters": _pairs(run.get("parameters")), "seed": _text(run.get("seed")),
                "status": _text(run.get("status")), "wall": _seconds(run.get("wall_seconds"))},
        "provenance": _provenance(run),
        "envelope": _envelope(run.get("provenance_envelope"), run.get("provenance")),
        "suite": {"present": bool(suite), "name": _text(suite.get("suite")), "number": _text(suite.get("number")),
                  "digest": _text(suite.get("digest")), "examples": _int(suite.get("example_count")),
                  "unsafe_labels": _text(suite.get("unsafe_labels")), "source": _text(suite.get("source"))},
        "taxonomy": _taxonomy(bundle),
        "policy": _policy(bundle),
        "gate": _gate(bundle),
        "rules": _rules(bundle),
        "comparison": {"present": bool(comparison), "id": _text(comparison.get("id")),
                       "statistics": [(k.replace("_", " "), v) for k, v in _pairs(statistics)], "groups": _groups_table(comparison),
                       "level": _pct(statistics.get("level"), 0) if _num(statistics.get("level")) is not None else ""},
        "metric_names": [_metric_name(m) for m in COMPARED_METRICS],
        "other_metrics": _other_metrics(evaluations),
        "evaluation_runs": _evaluation_runs(evaluations),
        "runtime": _runtime(evaluations),
        "flips": _flips(bundle),
        "reviews": _reviews(bundle),
        "escalations": _escalations(bundle),
        "incidents": _incidents(bundle),
        "decisions": _decisions(bundle),
        "newest_decision": _newest_decision(bundle),
        "rollout": _rollout(release),
        "ledger": _ledger(bundle),
        "candidates": _candidates(bundle),
        "flips_cap": FLIPS_SHOWN,
        "ledger_cap": LEDGER_EVENTS_SHOWN,
    }
    ctx["summary"] = _summary(bundle, ctx)
    base_overall = _d(_d(base_run.get("metrics")).get("overall"))
    cand_overall = _d(_d(cand_run.get("metrics")).get("overall"))
    ctx["charts"] = {
        "gate": mark_safe(charts.gate_chart([v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)])),
        "forest": mark_safe(charts.forest_plot(
            _d(comparison.get("groups")), gate=[v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)],
            policy_rules=[r for r in _l(_d(bundle.get("policy")).get("rules")) if isinstance(r, Mapping)],
            metrics=COMPARED_METRICS)),
        "reliability": mark_safe(charts.reliability_diagram(
            _bins(base_run), _bins(cand_run), baseline_ece=base_overall.get("ece"),
            candidate_ece=cand_overall.get("ece"))),
        "subgroups": mark_safe(charts.subgroup_gaps(*_subgroup_sources(evaluations, comparison))),
    }
    return ctx


def _subgroup_sources(evaluations: Mapping, comparison: Mapping) -> tuple[dict, dict]:
    """Per-group metrics of each run; falls back to the comparison's per-group baseline/candidate values."""
    base = dict(_d(_d(evaluations.get("baseline")).get("metrics")))
    cand = dict(_d(_d(evaluations.get("candidate")).get("metrics")))
    for key, group in _d(comparison.get("groups")).items():
        if not str(key).startswith("subgroup:"):
            continue
        metrics = _d(_d(group).get("metrics"))
        for target, role in ((base, "baseline"), (cand, "candidate")):
            if key not in target:
                target[key] = {name: _d(metrics.get(name)).get(role) for name in ("unsafe_recall", "benign_fpr")}
    return base, cand


def render_dossier_html(bundle: Mapping) -> str:
    """The dossier as an HTML document (print stylesheet inline)."""
    return render_to_string(TEMPLATE, dossier_context(bundle))


def render_dossier_pdf(bundle: Mapping) -> bytes:
    """The dossier as PDF bytes; the same bundle always gives the same bytes (see the module docstring)."""
    from weasyprint import HTML  # imported lazily: only the export worker renders PDFs

    digest = bundle_digest(bundle)
    html = render_dossier_html(bundle)
    document = HTML(string=html, base_url=None).render()
    return document.write_pdf(pdf_identifier=digest.encode("ascii"), uncompressed_pdf=False)
