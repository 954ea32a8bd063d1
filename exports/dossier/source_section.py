"""The dossier's "How the candidate was made": whether SafeShrink made the candidate itself (verified) or an
engineer made it elsewhere and reported how (reported, not verified), from the bundle's `candidate_source`.
A bundle without it (made before the field existed) came from SafeShrink's own run. For a behavioural_distill
run, its rounds, teachers, judge and prompt sets (governance.rounds: the run and release pages show the same)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from governance.rounds import distill_section

from .format import _d, _l, _pairs, _text, _time

EXTERNAL = "external"


def _provenance_words(provenance: Mapping) -> str:
    verified = provenance.get("verified")
    if verified is None:
        return "No provenance statement was attached."
    if verified:
        return f"Signature verified by the engineer's registered key {_text(provenance.get('key_id'))}."
    reason = _text(provenance.get("reason"), "")
    return "Signature not verified" + (f" ({reason})." if reason else ".")


def _candidate_source(bundle: Mapping[str, Any]) -> dict:
    source = _d(bundle.get("candidate_source"))
    external = source.get("source") == EXTERNAL
    run = _d(source.get("run"))
    code = _d(run.get("code_reference"))
    return {
        "external": external,
        "verification": _text(source.get("verification"), "verified"),
        "gate_basis": _text(source.get("gate_basis"), ""),
        "run": {
            "id": _text(run.get("id")),
            "uuid": _text(run.get("run_uuid")),
            "name": _text(run.get("name"), ""),
            "recorded_by": _text(run.get("recorded_by")),
            "method": _text(run.get("method")),
            "known_method": _text(run.get("known_method")),
            "parameters": _pairs(run.get("parameters")),
            "params": _pairs(run.get("params")),
            "tool_versions": _pairs(run.get("tool_versions")),
            "hardware": _pairs(run.get("hardware")),
            "seeds": _text(run.get("seeds")),
            "code": " · ".join(f"{k} {_text(code.get(k))}" for k in ("url", "commit", "path") if code.get(k)) or "—",
            "inputs": [_text(d) for d in _l(run.get("input_artifacts"))],
            "output": _text(run.get("output_artifact")),
            "status": _text(run.get("status")),
            "started": _time(run.get("started_at")),
            "ended": _time(run.get("ended_at")),
            "metrics": [
                (_text(m.get("key")), _text(m.get("value")), _text(m.get("step")), _text(m.get("count")))
                for m in (_d(x) for x in _l(run.get("metrics")))
            ],
            "provenance": _provenance_words(_d(run.get("provenance"))),
            "contents_digest": _text(run.get("contents_digest")),
        }
        if external
        else None,
    }


def _distill(bundle: Mapping[str, Any]) -> dict | None:
    """The rounds of the bundle's compression run when it was behavioural_distill (None otherwise, and for a
    bundle made before runs carried their rounds: the provenance's byproducts still hold them)."""
    run = _d(bundle.get("compression_run"))
    return distill_section(
        method=run.get("method"), status=run.get("status"), rounds=run.get("rounds"), data_source=run.get("data_source")
    )
