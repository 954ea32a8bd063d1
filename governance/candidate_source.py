"""How a release's candidate was made, as SafeShrink can vouch for it: by SafeShrink's own compression run
(`safeshrink`, verified: SafeShrink ran it and signed its provenance) or by a run done elsewhere (`external`,
reported: the engineer's word). Plain reads shared by the API, the pages and the evidence bundle, so that all of
them say the same thing. Nothing here writes."""

from __future__ import annotations

from accounts.models import User
from governance.models import Release
from tracking.models import ExternalRun, ExternalRunProvenance
from tracking.selectors import metric_summary, run_record

SAFESHRINK = "safeshrink"
VERIFIED = "verified"  # SafeShrink ran the compression itself
GATE_BASIS = (
    "The gate judged only SafeShrink's own evaluation of the baseline and the candidate; nothing the engineer "
    "reported (metrics included) entered it."
)


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def provenance_status(run: ExternalRun) -> dict:
    """The newest provenance statement attached to the run and whether its signature verified under a key the
    run's owner registered: `verified` is None when none was attached. The signature says who signed, not that
    what the statement claims is true: the contents stay reported."""
    statements = list(ExternalRunProvenance.objects.filter(run=run).order_by("created_at", "id"))
    newest = statements[-1] if statements else None
    return {
        "verified": None if newest is None else newest.signature_verified,
        "key_id": newest.key_id if newest else "",
        "reason": newest.verification_reason if newest else "",
        "statements": [
            {
                "envelope_digest": p.envelope_digest,
                "payload_type": p.payload_type,
                "signature_verified": p.signature_verified,
                "key_id": p.key_id,
                "reason": p.verification_reason,
                "attached_at": _iso(p.created_at),
            }
            for p in statements
        ],
    }


def provenance_words(status: dict) -> str:
    if status["verified"] is None:
        return "none attached"
    if status["verified"]:
        return f"signature verified by the engineer's registered key {status['key_id']}"
    return "signature not verified" + (f" ({status['reason']})" if status["reason"] else "")


def external_run_brief(run: ExternalRun) -> dict:
    """What a release's API record says about its external run."""
    return {
        "id": run.pk,
        "run_uuid": run.run_uuid,
        "method": run.method,
        "verification": ExternalRun.VERIFICATION,
        "provenance_verified": provenance_status(run)["verified"],
    }


def external_run_report(run: ExternalRun) -> dict:
    """Everything the engineer reported about the run, with each metric's latest value (highest step), the
    provenance status and the digest of the contents pinned when the run ended."""
    recorded_by = User.objects.filter(pk=run.recorded_by_id).values_list("username", flat=True).first()
    record = run_record(run)  # the fields the run's contents digest covers, defined once in tracking
    for derived in ("experiment", "source", "verification"):
        record.pop(derived)
    return {
        "id": run.pk,
        **record,
        "recorded_by": recorded_by,
        "params": dict(run.params.order_by("key").values_list("key", "value")),
        "tags": dict(run.tags.order_by("key").values_list("key", "value")),
        "metrics": [
            {"key": m["key"], "value": m["latest_value"], "step": m["last_step"], "count": m["count"]}
            for m in metric_summary(run)
        ],
        "provenance": provenance_status(run),
        "contents_digest": run.contents_digest or None,
    }


def external_run_page(run: ExternalRun) -> dict:
    """The report as the pages show it: with the provenance status in words."""
    report = external_run_report(run)
    return {**report, "provenance_words": provenance_words(report["provenance"])}


def candidate_source(release: Release) -> dict:
    """The bundle's `candidate_source`: who made the candidate and how far SafeShrink vouches for it."""
    if release.external_run_id:
        return {
            "source": ExternalRun.SOURCE,
            "verification": ExternalRun.VERIFICATION,
            "compression_run": None,
            "run": external_run_report(release.external_run),
            "gate_basis": GATE_BASIS,
        }
    return {
        "source": SAFESHRINK,
        "verification": VERIFIED,
        "compression_run": release.compression_run_id,
        "run": None,
        "gate_basis": GATE_BASIS,
    }
