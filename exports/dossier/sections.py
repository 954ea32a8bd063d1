"""The dossier's section builders: each turns one part of the evidence bundle into display-ready rows.
A missing part gives an empty section (stated in one line by the template), never an error."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from exports import charts
from trust.canonical import canonical_bytes, sha256_hex

from .format import (
    COMPARED_METRICS,
    LOWER_IS_BETTER,
    OTHER_METRIC_ORDER,
    SKIPPED_METRICS,
    _bytes,
    _d,
    _date,
    _fixed,
    _int,
    _json,
    _l,
    _listing,
    _metric_name,
    _num,
    _pairs,
    _pct,
    _pvalue,
    _ratio,
    _seconds,
    _text,
    _time,
    _time_key,
    _truncate,
    _words,
    _zone,
)

FLIPS_SHOWN = 25
LEDGER_EVENTS_SHOWN = 30
TEXT_SHOWN = 280  # characters of a flipped example's text


def _artifacts(bundle: Mapping) -> list[dict]:
    out = []
    for a in sorted(
        (x for x in _l(bundle.get("artifacts")) if isinstance(x, Mapping)),
        key=lambda a: (0 if a.get("role") == "base" else 1 if a.get("role") == "candidate" else 2, str(a.get("id"))),
    ):
        out.append(
            {
                "role": _text(a.get("role")),
                "id": _text(a.get("id")),
                "name": _text(a.get("name")),
                "digest": _text(a.get("digest")),
                "format": _text(a.get("format")),
                "size": _bytes(a.get("size_bytes")),
                "size_exact": _int(a.get("size_bytes")),
                "parameters": _int(a.get("parameter_count")),
                "parent_digest": _text(a.get("parent_digest"), "none (root artifact)"),
            }
        )
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
        deps.append(
            {
                "name": _text(dep.get("name"), ""),
                "uri": _text(dep.get("uri")),
                "digests": [f"{k}:{v}" for k, v in sorted(digests.items())],
                "annotations": _pairs(dep.get("annotations")),
            }
        )
        if "gitCommit" in digests and code is None:
            code = {
                "commit": _text(digests["gitCommit"]),
                "uri": _text(dep.get("uri")),
                "dirty": _text(_d(dep.get("annotations")).get("dirty"), "unknown"),
            }
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
        shown = (
            _bytes(value) if key.endswith("_bytes") else _seconds(value) if key.endswith("seconds") else _text(value)
        )
        env_rows.append((key.replace("_", " "), shown))
    subjects = [
        {"name": _text(_d(s).get("name")), "digests": [f"{k}:{v}" for k, v in sorted(_d(_d(s).get("digest")).items())]}
        for s in _l(statement.get("subject"))
    ]
    return {
        "present": bool(statement),
        "type": _text(statement.get("_type")),
        "predicate_type": _text(statement.get("predicateType")),
        "subjects": subjects,
        "build_type": _text(build.get("buildType")),
        "external_parameters": _json(build.get("externalParameters", {})),
        "internal_parameters": _pairs(build.get("internalParameters")),
        "dependencies": deps,
        "code": code,
        "builder": _text(_d(details.get("builder")).get("id")),
        "invocation": _text(meta.get("invocationId")),
        "started": _time(meta.get("startedOn")),
        "finished": _time(meta.get("finishedOn")),
        "packages": _pairs(environment.get("packages")),
        "hardware": _pairs(environment.get("hardware")),
        "environment": env_rows,
        "other_byproducts": other_byproducts,
    }


def _envelope(envelope: Any, statement: Any) -> dict | None:
    envelope = _d(envelope)
    if not envelope:
        return None
    payload_digest, matches = "—", "cannot tell (payload is not valid base64)"
    try:
        payload = base64.b64decode(str(envelope.get("payload", "")), validate=False)
        payload_digest = sha256_hex(payload)
        if statement:
            matches = (
                "yes"
                if payload == canonical_bytes(statement)
                else "no — the statement shown differs from the signed payload"
            )
        else:
            matches = "no statement recorded to compare"
    except (binascii.Error, ValueError, TypeError):
        pass
    return {
        "payload_type": _text(envelope.get("payloadType")),
        "payload_sha256": payload_digest,
        "matches": matches,
        "signatures": [
            {"keyid": _text(_d(s).get("keyid"), "(none)"), "sig": _text(_d(s).get("sig"))}
            for s in _l(envelope.get("signatures"))
        ],
    }


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
    groups = _d(comparison.get("groups"))
    out = []
    for key in sorted(groups, key=charts.group_sort_key):
        g = _d(groups[key])
        metrics = _d(g.get("metrics"))
        cells = []
        for name in COMPARED_METRICS:
            m = _d(metrics.get(name))
            cells.append(
                {
                    "baseline": _fixed(m.get("baseline")),
                    "candidate": _fixed(m.get("candidate")),
                    "delta": _fixed(m.get("delta"), 3, True),
                    "ci": (
                        f"[{_fixed(m.get('ci_low'), 3, True)}, {_fixed(m.get('ci_high'), 3, True)}]"
                        if _num(m.get("ci_low")) is not None and _num(m.get("ci_high")) is not None
                        else ""
                    ),
                    "worse": _worse(name, m),
                }
            )
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


def _runtime(evaluations: Mapping) -> list[dict]:
    base = _d(_d(evaluations.get("baseline")).get("runtime"))
    cand = _d(_d(evaluations.get("candidate")).get("runtime"))
    rows = []
    for key, label, fmt, _higher in RUNTIME_ROWS:
        if key not in base and key not in cand:
            continue
        rows.append(
            {
                "label": label,
                "baseline": fmt(base.get(key)),
                "candidate": fmt(cand.get(key)),
                "ratio": _ratio(cand.get(key), base.get(key)) if _higher is not None else "",
            }
        )
    return rows


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
                "config": _pairs(run.get("config")),
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
            }
        )
    total = _num(_d(bundle.get("comparison")).get("flip_count"))
    return {
        "rows": rows,
        "shown": len(rows),
        "total": _int(total) if total is not None else _int(len(rows)),
        "to_unsafe": sum(1 for f in items if f.get("direction") == "to_unsafe"),
        "to_safe": sum(1 for f in items if f.get("direction") == "to_safe"),
    }


def _reviews(bundle: Mapping) -> dict:
    outcome = _d(_d(bundle.get("release")).get("review_outcome"))
    flips = {f.get("id"): f for f in _l(bundle.get("flips_excerpt")) if isinstance(f, Mapping) and "id" in f}
    rows = []
    for r in sorted(
        (r for r in _l(bundle.get("reviews")) if isinstance(r, Mapping)),
        key=lambda r: (str(r.get("flip")), str(r.get("submitted_at")), str(r.get("reviewer"))),
    ):
        flip = _d(flips.get(r.get("flip")))
        rows.append(
            {
                "flip": _text(r.get("flip")),
                "example": _text(flip.get("external_id"), ""),
                "reviewer": _text(r.get("reviewer")),
                "label": _words(r.get("label")),
                "note": _text(r.get("note"), ""),
                "at": _time(r.get("submitted_at")),
            }
        )
    summary = None
    if outcome:
        labels = ", ".join(f"{_words(k)}: {_text(v)}" for k, v in sorted(_d(outcome.get("labels")).items()))
        summary = {
            "items": _int(outcome.get("items")),
            "reviews": _int(outcome.get("reviews")),
            "labels": labels or "—",
            "deviation_items": _int(outcome.get("deviation_items")),
            "deviation_share": _pct(outcome.get("deviation_share")),
            "max_share": _pct(outcome.get("max_deviation_share")),
            "kappa": _fixed(outcome.get("kappa"), 2)
            if _num(outcome.get("kappa")) is not None
            else "not computed (no item was reviewed twice)",
            "verdict": _text(outcome.get("verdict")),
        }
    return {"rows": rows, "outcome": summary}


def _escalations(bundle: Mapping) -> list[dict]:
    return [
        {
            "id": _text(e.get("id")),
            "trigger": _words(e.get("trigger")),
            "summary": _text(e.get("summary")),
            "level": _text(e.get("level")),
            "deadline": _time(e.get("deadline"), seconds=False),
            "status": _words(e.get("status")),
            "open": e.get("status") not in ("resolved", "closed"),
            "resolution": _text(e.get("resolution"), ""),
            "opened": _time(e.get("opened_at"), seconds=False),
            "resolved": _time(e.get("resolved_at"), seconds=False) if e.get("resolved_at") else "—",
        }
        for e in _l(bundle.get("escalations"))
        if isinstance(e, Mapping)
    ]


def _incidents(bundle: Mapping) -> list[dict]:
    return [
        {
            "id": _text(i.get("id")),
            "severity": _text(i.get("severity")),
            "severity_class": _int(i.get("severity")),
            "title": _text(i.get("title")),
            "opened": _time(i.get("opened_at"), seconds=False),
        }
        for i in _l(bundle.get("incidents"))
        if isinstance(i, Mapping)
    ]


EVIDENCE_ORDER = ("candidate", "baseline", "suite_version", "policy", "comparison_results", "gate", "review_outcome")


def _decisions(bundle: Mapping) -> list[dict]:
    out = []
    items = [d for d in _l(bundle.get("decisions")) if isinstance(d, Mapping)]
    for d in sorted(items, key=lambda d: _time_key(d.get("created_at"))):
        evidence = _d(d.get("evidence"))
        keys = [k for k in EVIDENCE_ORDER if k in evidence] + sorted(k for k in evidence if k not in EVIDENCE_ORDER)
        pairs = [(k.replace("_", " "), _text(evidence[k], "none")) for k in keys]
        out.append(
            {
                "kind": _words(d.get("kind")),
                "actor": _text(d.get("actor")),
                "role": _text(d.get("actor_role")),
                "rationale": _text(d.get("rationale")),
                "at": _time(d.get("created_at")),
                "evidence": pairs,
                "evidence_listing": "\n".join(f"{k:<19} {v}" for k, v in pairs),
            }
        )
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
    return {
        "kind": _words(d.get("kind")),
        "actor": _text(d.get("actor")),
        "role": _text(d.get("actor_role")),
        "at": _time(d.get("created_at")),
        "date": _date(d.get("created_at")),
    }


def _rollout(release: Mapping) -> list[dict]:
    stages = sorted(
        (s for s in _l(release.get("rollout")) if isinstance(s, Mapping)), key=lambda s: _num(s.get("position")) or 0
    )
    return [
        {
            "position": _text(s.get("position")),
            "percent": f"{_text(s.get('percent'))}%",
            "starts": _time(s.get("starts_at"), seconds=False),
            "started": _time(s.get("started_at"), seconds=False) if s.get("started_at") else "not started",
        }
        for s in stages
    ]


def _ledger(bundle: Mapping) -> dict:
    ledger = _d(bundle.get("ledger"))
    events = sorted(
        (e for e in _l(ledger.get("events")) if isinstance(e, Mapping)), key=lambda e: _num(e.get("seq")) or 0
    )
    shown = events[-LEDGER_EVENTS_SHOWN:]
    checkpoint = ledger.get("checkpoint")
    cp = None
    if isinstance(checkpoint, Mapping):
        cp_seq = _num(checkpoint.get("seq"))
        last = _num(events[-1].get("seq")) if events else None
        covers = (
            "yes"
            if cp_seq is not None and last is not None and cp_seq >= last
            else "no — events after the checkpoint are not yet covered by a signature"
            if last is not None
            else "—"
        )
        cp = {
            "type": _text(checkpoint.get("type")),
            "seq": _text(checkpoint.get("seq")),
            "head_hash": _text(checkpoint.get("head_hash")),
            "at": _time(checkpoint.get("at")),
            "at_raw": _text(checkpoint.get("at")),
            "key_id": _text(checkpoint.get("key_id")),
            "signature": _text(checkpoint.get("signature")),
            "covers": covers,
            "key_matches": ("yes" if checkpoint.get("key_id") == ledger.get("public_key_id") else "no")
            if ledger.get("public_key_id")
            else "—",
        }
    rows = [
        (
            _text(e.get("seq")),
            _time(e.get("occurred_at")).removesuffix(" UTC"),
            _text(e.get("action")),
            _text(e.get("actor"), "system"),
            f"{_text(e.get('object_type'))} {_text(e.get('object_id'), '')}".strip(),
            _text(e.get("hash"))[:16],
        )
        for e in shown
    ]
    listing = (
        _listing(("seq", "time (UTC)", "action", "actor", "object", "hash (first 16)"), rows, (6, 19, 26, 12, 22, 16))
        if rows
        else ""
    )
    return {
        "listing": listing,
        "shown": len(shown),
        "total": len(events),
        "checkpoint": cp,
        "public_key_id": _text(ledger.get("public_key_id")),
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
    for key, group in _d(comparison.get("groups")).items():
        if not str(key).startswith("subgroup:"):
            continue
        metrics = _d(_d(group).get("metrics"))
        for target, role in ((base, "baseline"), (cand, "candidate")):
            if key not in target:
                target[key] = {name: _d(metrics.get(name)).get(role) for name in ("unsafe_recall", "benign_fpr")}
    return base, cand
