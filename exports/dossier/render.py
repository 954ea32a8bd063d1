"""The dossier's context (every section, formatted) and its rendering to HTML and to deterministic PDF
bytes; the digest it prints is the bundle's canonical-JSON digest (trust.canonical.digest), the same
function that gives ``Export.bundle_digest``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from exports import charts
from trust.canonical import digest as canonical_digest

from .evidence_sections import (
    FLIPS_SHOWN,
    TEXT_SHOWN,
    _bins,
    _candidates,
    _evaluation_runs,
    _flips,
    _gate,
    _groups_table,
    _other_metrics,
    _policy,
    _rules,
    _runtime,
    _subgroup_sources,
    _taxonomy,
)
from .format import (
    _d,
    _int,
    _l,
    _metric_name,
    _num,
    _pairs,
    _pct,
    _seconds,
    _text,
    _time,
    _words,
    _zone,
    compared_metrics,
)
from .governance_sections import (
    LEDGER_EVENTS_SHOWN,
    _artifact,
    _artifacts,
    _decisions,
    _envelope,
    _escalations,
    _incidents,
    _ledger,
    _newest_decision,
    _provenance,
    _reviews,
    _rollout,
)
from .narrative import _summary
from .source_section import _candidate_source, _distill
from .stability_sections import _conditions, _stability
from .warnings_section import evidence_warnings

TEMPLATE = "exports/dossier.html"
#: (anchor, heading) of every numbered section, in order; the template renders exactly these.
SECTIONS = (
    ("summary", "Executive summary"),
    ("policy", "Risk taxonomy, threshold policy and gate result"),
    ("provenance", "Provenance of the artifacts"),
    ("metrics", "Metrics with confidence intervals"),
    ("stability", "Decision stability"),
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


def bundle_digest(bundle: Mapping) -> str:
    """sha256 (hex) of the bundle's canonical JSON, UTF-8 encoded: the digest the PDF prints and the
    DSSE payload of the signed JSON bundle hashes to."""
    return canonical_digest(bundle)


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
        "sections": [
            {"anchor": a, "title": t, "number": "A" if a == "verify" else str(i + 1)}
            for i, (a, t) in enumerate(SECTIONS)
        ],
        "release": {
            "id": _text(release.get("id")),
            "status": _words(release.get("status") or verdict.get("status")),
            "version": _text(release.get("version")),
            "risk_tier": _text(release.get("risk_tier")),
            "created": _time(release.get("created_at"), seconds=False),
            "candidate_digest": candidate_digest,
        },
        "zone": zone,
        "verdict": {
            "status": _words(verdict.get("status") or release.get("status")),
            "summary": _text(verdict.get("summary"), ""),
        },
        "experiment": {
            "id": _text(experiment.get("id")),
            "name": _text(experiment.get("name")),
            "description": _text(experiment.get("description"), ""),
            "owner": _text(experiment.get("owner")),
            "risk_tier": _text(experiment.get("risk_tier")),
            "unsafe_labels": _text(experiment.get("unsafe_labels")),
        },
        "artifacts": _artifacts(bundle),
        "run": {
            "present": bool(run),
            "id": _text(run.get("id")),
            "method": _text(run.get("method")),
            "parameters": _pairs(run.get("parameters")),
            "seed": _text(run.get("seed")),
            "status": _text(run.get("status")),
            "wall": _seconds(run.get("wall_seconds")),
        },
        "candidate_source": _candidate_source(bundle),
        "distill": _distill(bundle),
        "provenance": _provenance(run),
        "envelope": _envelope(run.get("provenance_envelope"), run.get("provenance")),
        "suite": {
            "present": bool(suite),
            "name": _text(suite.get("suite")),
            "number": _text(suite.get("number")),
            "digest": _text(suite.get("digest")),
            "examples": _int(suite.get("example_count")),
            "unsafe_labels": _text(suite.get("unsafe_labels")),
            "source": _text(suite.get("source")),
        },
        "taxonomy": _taxonomy(bundle),
        "policy": _policy(bundle),
        "warnings": evidence_warnings(bundle),
        "gate": _gate(bundle),
        "rules": _rules(bundle),
        "comparison": {
            "present": bool(comparison),
            "id": _text(comparison.get("id")),
            # The profile and the stable-only test have their own parts (evaluation conditions, stability).
            "statistics": [
                (k.replace("_", " "), v) for k, v in _pairs(statistics) if k not in ("profile", "stable_test")
            ],
            "groups": _groups_table(comparison),
            "level": _pct(statistics.get("level"), 0) if _num(statistics.get("level")) is not None else "",
        },
        "metric_names": [_metric_name(m) for m in compared_metrics(comparison)],
        "other_metrics": _other_metrics(evaluations),
        "evaluation_runs": _evaluation_runs(evaluations),
        "conditions": _conditions(evaluations, comparison, bundle.get("policy")),
        "stability": _stability(bundle),
        "runtime": _runtime(evaluations, comparison),
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
        "flips_text_shown": TEXT_SHOWN,
        "ledger_cap": LEDGER_EVENTS_SHOWN,
    }
    ctx["summary"] = _summary(bundle, ctx)
    base_overall = _d(_d(base_run.get("metrics")).get("overall"))
    cand_overall = _d(_d(cand_run.get("metrics")).get("overall"))
    ctx["charts"] = {
        "gate": mark_safe(charts.gate_chart([v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)])),
        "forest": mark_safe(
            charts.forest_plot(
                _d(comparison.get("groups")),
                gate=[v for v in _l(bundle.get("gate")) if isinstance(v, Mapping)],
                policy_rules=[r for r in _l(_d(bundle.get("policy")).get("rules")) if isinstance(r, Mapping)],
                metrics=compared_metrics(comparison),
            )
        ),
        "reliability": mark_safe(
            charts.reliability_diagram(
                _bins(base_run),
                _bins(cand_run),
                baseline_ece=base_overall.get("ece"),
                candidate_ece=cand_overall.get("ece"),
            )
        ),
        "subgroups": mark_safe(charts.subgroup_gaps(*_subgroup_sources(evaluations, comparison))),
        "stability": mark_safe(charts.instability_chart(_d(comparison.get("groups")))),
        # governance.rounds_chart (the run and release pages draw the same chart); rendered by a Django template.
        "rounds": ctx["distill"]["chart"] if ctx["distill"] and ctx["distill"]["drawn"] else "",
    }
    # Figures are numbered in document order, counting only the charts drawn.
    drawn = [
        name for name in ("gate", "rounds", "forest", "stability", "reliability", "subgroups") if ctx["charts"][name]
    ]
    ctx["figures"] = {name: str(i + 1) for i, name in enumerate(drawn)}
    return ctx


def render_dossier_html(bundle: Mapping) -> str:
    """The dossier as an HTML document (print stylesheet inline)."""
    return render_to_string(TEMPLATE, dossier_context(bundle))


# Where WeasyPrint subsets fonts with fontTools (no HarfBuzz-Subset library), each embedded font's `head` table
# gets the current time as its modification date, unless SOURCE_DATE_EPOCH is set: then it gets that instant.
FONT_TIMESTAMP_EPOCH = "0"


@contextmanager
def _fixed_font_timestamps():
    """SOURCE_DATE_EPOCH for the duration of one rendering, unless the environment already sets it."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        yield
        return
    os.environ["SOURCE_DATE_EPOCH"] = FONT_TIMESTAMP_EPOCH
    try:
        yield
    finally:
        os.environ.pop("SOURCE_DATE_EPOCH", None)


def render_dossier_pdf(bundle: Mapping) -> bytes:
    """The dossier as PDF bytes; the same bundle always gives the same bytes (see the module docstring)."""
    from weasyprint import HTML  # imported lazily: only the export worker renders PDFs

    digest = bundle_digest(bundle)
    html = render_dossier_html(bundle)
    with _fixed_font_timestamps():
        document = HTML(string=html, base_url=None).render()
        return document.write_pdf(pdf_identifier=digest.encode("ascii"), uncompressed_pdf=False)
