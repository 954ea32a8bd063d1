"""The dossier's evidence sections: the risk taxonomy, the threshold policy and the gate verdict per rule,
the per-group comparison table, other metrics, runtime and size, the evaluation runs, the calibration bins,
the flip-set excerpt, the alternatives considered and the subgroup sources of the subgroup chart.
Each turns one part of the evidence bundle into display-ready rows; a missing part gives an empty section
(stated in one line by the template), never an error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exports import charts
from governance.evidence import comparison_cells, comparison_subgroup_metrics

from .format import (
    COMPARED_METRICS,
    LOWER_IS_BETTER,
    OTHER_METRIC_ORDER,
    SKIPPED_METRICS,
    _bytes,
    _d,
    _fixed,
    _int,
    _l,
    _metric_name,
    _num,
    _pairs,
    _pct,
    _pvalue,
    _ratio,
    _seconds,
    _text,
    _truncate,
    _words,
    _zone,
    compared_metrics,
)
from .warnings_section import training_overlap_sentence

FLIPS_SHOWN = 25
TEXT_SHOWN = 280  # characters of a flipped example's text


def _rule_index(bundle: Mapping) -> tuple[dict, dict]:
    taxonomy = _d(bundle.get("taxonomy"))
    modes = {m.get("code"): m for m in _l(taxonomy.get("failure_modes")) if isinstance(m, Mapping)}
    rules = {r.get("code"): r for r in _l(_d(bundle.get("policy")).get("rules")) if isinstance(r, Mapping)}
    return modes, rules


def _limit_text(rule: Mapping) -> tuple[str, str]:
    signed = rule.get("kind") == "delta"
    op_green, op_red = ("≥", "<") if rule.get("higher_is_better") else ("≤", ">")
    return (
        f"{op_green} {_fixed(rule.get('green_limit'), 3, signed)}",
        f"{op_red} {_fixed(rule.get('red_limit'), 3, signed)}",
    )


def _taxonomy(bundle: Mapping) -> dict | None:
    taxonomy = bundle.get("taxonomy")
    if not isinstance(taxonomy, Mapping):
        return None
    judged: dict[Any, list[str]] = {}
    for r in _l(_d(bundle.get("policy")).get("rules")):
        if isinstance(r, Mapping):
            judged.setdefault(r.get("failure_mode_code"), []).append(_text(r.get("code")))
    modes = []
    for m in sorted(
        (m for m in _l(taxonomy.get("failure_modes")) if isinstance(m, Mapping)),
        key=lambda m: (-(_num(m.get("severity")) or 0), str(m.get("code"))),
    ):
        measures = [
            f"{_text(_d(x).get('metric'))} on {charts.group_label(_text(_d(x).get('group')))}"
            f" ({_text(_d(x).get('worse'))} is worse)"
            for x in _l(m.get("measures"))
        ]
        modes.append(
            {
                "code": _text(m.get("code")),
                "category": _text(m.get("category")),
                "title": _text(m.get("title")),
                "severity": _text(m.get("severity")),
                "severity_class": _int(m.get("severity")),
                "likelihood": _text(m.get("likelihood")),
                "measures": measures,
                "refs": [_text(r) for r in _l(m.get("regulatory_refs"))],
                "rules": judged.get(m.get("code"), []),
            }
        )
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
        rules.append(
            {
                "code": _text(r.get("code")),
                "title": _text(r.get("title")),
                "failure_mode": _text(r.get("failure_mode_code")),
                "failure_mode_title": _text(mode.get("title"), ""),
                "severity": _text(mode.get("severity"), ""),
                "refs": [_text(x) for x in _l(mode.get("regulatory_refs"))],
                "measure": f"{_metric_name(r.get('metric'))} · {charts.group_label(_text(r.get('group')))}",
                "kind": _text(r.get("kind")),
                "bound": _text(r.get("bound")),
                "green": green,
                "red": red,
            }
        )
    return {
        "name": _text(policy.get("name")),
        "version": _text(policy.get("version")),
        "rules": rules,
        "training_overlap": training_overlap_sentence(bundle),
    }


def _rules(bundle: Mapping) -> list[dict]:
    """The policy's rules in policy order, each with its gate verdict (value, zone); verdicts for rules
    the policy does not list (should not happen) are appended."""
    modes, _ = _rule_index(bundle)
    verdicts = {v.get("rule"): v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)}
    rules = [r for r in _l(_d(bundle.get("policy")).get("rules")) if isinstance(r, Mapping)]
    codes = {r.get("code") for r in rules}
    rows = []
    for rule, verdict in [(r, _d(verdicts.get(r.get("code")))) for r in rules] + [
        (v, v) for v in _l(bundle.get("gate")) if isinstance(v, Mapping) and v.get("rule") not in codes
    ]:
        mode = _d(modes.get(rule.get("failure_mode_code")))
        green, red = _limit_text(rule)
        signed = rule.get("kind") == "delta"
        value = _num(verdict.get("value"))
        rows.append(
            {
                "code": _text(rule.get("code") or rule.get("rule")),
                "title": _text(rule.get("title")),
                "failure_mode": _text(rule.get("failure_mode_code")),
                "failure_mode_title": _text(mode.get("title"), ""),
                "severity": _int(mode.get("severity")) if _num(mode.get("severity")) is not None else "",
                "refs": [_text(x) for x in _l(mode.get("regulatory_refs"))],
                "measure": f"{_metric_name(rule.get('metric'))} · {charts.group_label(_text(rule.get('group')))}",
                "judged": f"{_text(rule.get('kind'))}, {_text(rule.get('bound'))}",
                "green": green,
                "red": red,
                "value": _fixed(value, 4, signed)
                if value is not None
                else ("no evidence" if verdict else "not judged"),
                "zone": _zone(verdict.get("zone")),
                "reason": _text(verdict.get("reason"), ""),
            }
        )
    return rows


def _gate(bundle: Mapping) -> dict:
    rows, counts = [], {"green": 0, "amber": 0, "red": 0}
    for v in (v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)):
        zone = _zone(v.get("zone"))
        if zone:
            counts[zone] += 1
        green, red = _limit_text(v)
        signed = v.get("kind") == "delta"
        rows.append(
            {
                "rule": _text(v.get("rule")),
                "title": _text(v.get("title")),
                "measure": f"{_metric_name(v.get('metric'))} · {charts.group_label(_text(v.get('group')))}",
                "judged": f"{_text(v.get('kind'))}, {_text(v.get('bound'))}",
                "value": _fixed(v.get("value"), 4, signed) if _num(v.get("value")) is not None else "no evidence",
                "green": green,
                "red": red,
                "zone": zone,
                "reason": _text(v.get("reason"), ""),
            }
        )
    return {"rows": rows, "counts": counts}


def _groups_table(comparison: Mapping) -> list[dict]:
    """The comparison table's rows: per group (in governance.evidence's order), each compared metric as
    baseline → candidate, the change and its interval (the release page shapes its table with the same helpers)."""
    groups = _d(comparison.get("groups"))
    compared = compared_metrics(comparison)
    out = []
    for key in sorted(groups, key=charts.group_sort_key):
        g = _d(groups[key])
        cells = [
            {
                "baseline": _fixed(c["baseline"]),
                "candidate": _fixed(c["candidate"]),
                "delta": _fixed(c["delta"], 3, True),
                "ci": (
                    f"[{_fixed(c['ci_low'], 3, True)}, {_fixed(c['ci_high'], 3, True)}]"
                    if c["ci_low"] is not None and c["ci_high"] is not None
                    else ""
                ),
                "worse": c["worse"],
            }
            for c in comparison_cells(g, compared)
        ]
        mc = _d(g.get("mcnemar"))
        n = _num(g.get("n"))
        flips = _num(g.get("flips"))
        out.append(
            {
                "label": charts.group_label(str(key)),
                "n": _int(g.get("n")),
                "n_unsafe": _int(g.get("n_unsafe")),
                "flips": _int(g.get("flips")),
                "flip_rate": _pct(flips / n) if n and flips is not None else "—",
                "b": _int(mc.get("b")),
                "c": _int(mc.get("c")),
                "p": _pvalue(mc.get("p_value")),
                "cells": cells,
            }
        )
    return out


def _other_metrics(evaluations: Mapping) -> list[dict]:
    base = _d(_d(_d(evaluations.get("baseline")).get("metrics")).get("overall"))
    cand = _d(_d(_d(evaluations.get("candidate")).get("metrics")).get("overall"))
    names = [n for n in OTHER_METRIC_ORDER if n in base or n in cand]
    names += sorted(
        n
        for n in {*base, *cand}
        if n not in names
        and n not in SKIPPED_METRICS
        and n not in COMPARED_METRICS
        and _num(base.get(n, cand.get(n))) is not None
    )
    rows = []
    for name in names:
        b, c = _num(base.get(name)), _num(cand.get(name))
        delta = c - b if b is not None and c is not None else None
        rows.append(
            {
                "name": _metric_name(name),
                "key": name,
                "baseline": _fixed(b, 4),
                "candidate": _fixed(c, 4),
                "delta": _fixed(delta, 4, True),
                "direction": "lower is better" if name in LOWER_IS_BETTER else "higher is better",
            }
        )
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


# Timing figures: when the comparison timed both models side by side (results["runtime"]["measurement"]), these
# rows come from that measurement, since the runs' own timings may come from other times and other load.
PAIRED_KEYS = frozenset(
    {
        "examples_per_second",
        "batch_latency_p50_s",
        "batch_latency_p95_s",
        "batch_latency_p99_s",
        "example_latency_p95_s",
        "examples",
        "wall_seconds",
    }
)


def _runtime(evaluations: Mapping, comparison: Mapping | None = None) -> list[dict]:
    """Runtime rows, baseline / candidate / ratio. Timing rows come from the comparison's paired measurement
    when it has one (``source`` says which), the rest (memory, size, parameters) from the evaluation runs."""
    runs = {role: _d(_d(evaluations.get(role)).get("runtime")) for role in ("baseline", "candidate")}
    paired_runtime = _d(_d(comparison).get("runtime"))
    measurement = _d(paired_runtime.get("measurement"))
    paired = bool(measurement) and "error" not in measurement
    rows = []
    for key, label, fmt, _higher in RUNTIME_ROWS:
        from_pair = paired and key in PAIRED_KEYS
        source = {role: _d(paired_runtime.get(role)) if from_pair else runs[role] for role in runs}
        base, cand = source["baseline"], source["candidate"]
        if key not in base and key not in cand:
            continue
        rows.append(
            {
                "label": label,
                "baseline": fmt(base.get(key)),
                "candidate": fmt(cand.get(key)),
                "ratio": _ratio(cand.get(key), base.get(key)) if _higher is not None else "",
                "source": "paired timing" if from_pair else "evaluation runs",
            }
        )
    return rows


def _platform_text(platform: Mapping) -> str:
    """ "AMD EPYC (avx2, avx512f, avx512_vnni; torch quantized engine x86)": where the predictions were computed."""
    isa = ", ".join(_text(x) for x in _l(platform.get("isa"))) or "no listed int8/fp32 extensions"
    engine = platform.get("quantized_engine")
    return f"{_text(platform.get('cpu_model'))} ({isa}{f'; torch quantized engine {_text(engine)}' if engine else ''})"


def _evaluation_runs(evaluations: Mapping) -> list[dict]:
    out = []
    for role in ("baseline", "candidate"):
        run = evaluations.get(role)
        if not isinstance(run, Mapping):
            out.append({"role": role, "missing": True})
            continue
        out.append(
            {
                "role": role,
                "missing": False,
                "id": _text(run.get("id")),
                "digest": _text(run.get("artifact_digest")),
                # The deployment profile is shown on its own (stability_sections._conditions).
                "config": [(k, v) for k, v in _pairs(run.get("config")) if k != "profile"],
                "platforms": [
                    _platform_text(p) for p in _l(_d(run.get("runtime")).get("platforms")) if isinstance(p, Mapping)
                ],
            }
        )
    return out


def _bins(run: Mapping) -> Any:
    overall = _d(_d(run.get("metrics")).get("overall"))
    return overall.get("ece_bins", overall.get("reliability"))


def _flips(bundle: Mapping) -> dict:
    items = [f for f in _l(bundle.get("flips_excerpt")) if isinstance(f, Mapping)][:FLIPS_SHOWN]
    rows = []
    for f in items:
        rows.append(
            {
                "id": _text(f.get("external_id") or f.get("example_id")),
                "example_id": _text(f.get("example_id")),
                "text": _truncate(f.get("text"), TEXT_SHOWN),
                "slice": _text(f.get("slice")),
                "subgroup": _text(f.get("subgroup"), "—"),
                "label": _text(f.get("label")),
                "baseline": _fixed(f.get("baseline_prob")),
                "candidate": _fixed(f.get("candidate_prob")),
                "direction": "→ unsafe"
                if f.get("direction") == "to_unsafe"
                else "→ safe"
                if f.get("direction") == "to_safe"
                else _text(f.get("direction")),
                "correct": _text(f.get("candidate_correct")) if isinstance(f.get("candidate_correct"), bool) else "—",
                # Flip.stable: the flip holds when the batches are recomposed; absent or null: no stability pass.
                "stable": _text(f.get("stable")) if isinstance(f.get("stable"), bool) else "—",
                # chat models: what each model did, and its answer
                "baseline_behaviour": _text(f.get("baseline_behaviour"), ""),
                "candidate_behaviour": _text(f.get("candidate_behaviour"), ""),
                "baseline_output": _truncate(f.get("baseline_output") or "", TEXT_SHOWN),
                "candidate_output": _truncate(f.get("candidate_output") or "", TEXT_SHOWN),
            }
        )
    total = _num(_d(bundle.get("comparison")).get("flip_count"))
    return {
        "rows": rows,
        "shown": len(rows),
        "total": _int(total) if total is not None else _int(len(rows)),
        "to_unsafe": sum(1 for f in items if f.get("direction") == "to_unsafe"),
        "to_safe": sum(1 for f in items if f.get("direction") == "to_safe"),
        "stable": sum(1 for f in items if f.get("stable") is True),
        "unstable": sum(1 for f in items if f.get("stable") is False),
        "marked": any(isinstance(f.get("stable"), bool) for f in items),
        "chat": any(f.get("baseline_behaviour") for f in items),
    }


def _candidates(bundle: Mapping) -> list[dict]:
    """Optional: the other releases of the same experiment (alternatives considered), when the bundle has them."""
    out = []
    for c in (c for c in _l(bundle.get("candidates")) if isinstance(c, Mapping)):
        out.append(
            {
                "release": _text(c.get("release")),
                "method": _text(c.get("method")),
                "parameters": "method defaults"
                if not c.get("parameters")
                else ", ".join(f"{k}={_text(v)}" for k, v in sorted(_d(c.get("parameters")).items())),
                "size": _bytes(c.get("size_bytes")),
                "zone": _zone(c.get("gate_zone")),
                "status": _words(c.get("status")),
                "flips": _int(c.get("flips")),
                "accuracy_delta": _fixed(c.get("accuracy_delta"), 3, True),
                "recall_delta": _fixed(c.get("unsafe_recall_delta"), 3, True),
                "this": bool(c.get("this_release")),
                "digest": _text(c.get("candidate_digest")),
            }
        )
    return out


def _subgroup_sources(evaluations: Mapping, comparison: Mapping) -> tuple[dict, dict]:
    """Per-group metrics of each run; falls back to the comparison's per-group baseline/candidate values."""
    base = dict(_d(_d(evaluations.get("baseline")).get("metrics")))
    cand = dict(_d(_d(evaluations.get("candidate")).get("metrics")))
    for target, recorded in zip((base, cand), comparison_subgroup_metrics(comparison), strict=True):
        for key, metrics in recorded.items():
            target.setdefault(key, metrics)
    return base, cand
