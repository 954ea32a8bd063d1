"""The dossier's governance sections: the artifacts and their provenance (SLSA statement, DSSE envelope),
blind reviews, escalations, incidents, decisions, the rollout and the audit-ledger excerpt with its signed
checkpoint. Each turns one part of the evidence bundle into display-ready rows; a missing part gives an
empty section (stated in one line by the template), never an error."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from governance.agreement import kappa_text
from trust.canonical import canonical_bytes, sha256_hex

from .format import (
    _bytes,
    _d,
    _date,
    _int,
    _json,
    _l,
    _listing,
    _num,
    _pairs,
    _pct,
    _seconds,
    _text,
    _time,
    _time_key,
    _words,
)

LEDGER_EVENTS_SHOWN = 30


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
    details = _d(extra.get("details"))
    if isinstance(details.get("rounds"), list):  # behavioural_distill: its rounds have their own tables
        rounds = len(details["rounds"])
        extra["details"] = {**details, "rounds": f"{rounds} round{'s' if rounds != 1 else ''}, shown above"}
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


def _label_visibility(bundle: Mapping) -> str:
    """Whether the blind reviewers saw the expected label, as the pinned policy version says. A bundle from
    before the setting does not carry it: its reviewers always saw the label."""
    shown = _d(bundle.get("policy")).get("reviewers_see_expected_label")
    if shown is False:
        return "Reviewers did not see the expected label (the policy keeps blind review blind to it)."
    if shown is True:
        return "Reviewers saw the expected label (the policy shows it to them)."
    return "Reviewers saw the expected label (the bundle predates the policy setting; reviews then always showed it)."


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
                "carried_from": _text(r.get("carried_from_release"), ""),
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
            "kappa": kappa_text(outcome),
            "verdict": _text(outcome.get("verdict")),
        }
    return {
        "rows": rows,
        "outcome": summary,
        "label_visibility": _label_visibility(bundle),
        "carried": sum(1 for r in rows if r["carried_from"]),
    }


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
