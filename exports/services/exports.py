"""Building, downloading and verifying signed exports, and regulators' access to them."""

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from accounts.models import Role, User
from compression.models import RunStatus
from compression.services.jobs import JobCancelled, job_claim, job_fail, job_progress
from exports import dossier
from exports.error_codes import ExportsErrorCode
from exports.models import Export
from exports.selectors import (
    PREDICTION_COLUMNS,
    bundle_build,
    exports_visible_to,
    last_release_event_seq,
    predictions_rows,
)
from governance.models import RegulatorGrant, ReleaseStatus
from governance.selectors import releases_visible_to
from ledger.services import checkpoint_latest_covering, ledger_append, ledger_seal
from ledger.signing import SigningKeyMissing, system_key_available, system_private_key, system_public_key

logger = logging.getLogger(__name__)
OBJECT_TYPE = "export"
BUNDLE_PAYLOAD_TYPE = "application/vnd.safeshrink.evidence-bundle+json"
PDF_NAME, BUNDLE_NAME, PREDICTIONS_NAME = "dossier.pdf", "bundle.dsse.json", "predictions.csv.gz"
PREDICTIONS_MEDIA_TYPE = "text/csv; charset=utf-8; header=present"  # gzip-compressed (RFC 1952)
PREDICTIONS_RECOMPUTE = "trust/recompute_comparison.py"


def export_dir(export: Export) -> Path:
    return Path(settings.SAFESHRINK["EXPORT_ROOT"]) / str(export.pk)


def export_request(*, actor, release_id: int) -> Export:
    if actor.role not in (Role.OFFICER, Role.ADMIN):
        raise PermissionDenied("Only officers and administrators request exports.")
    if not system_key_available() or not Path(settings.SAFESHRINK["SIGNING_CERT"]).is_file():
        raise Conflict(
            "No signing material: run `python manage.py setup_signing` (or configure the key paths).",
            code=ExportsErrorCode.SIGNING_NOT_CONFIGURED,
        )
    release = releases_visible_to(actor).filter(pk=release_id).first()
    if release is None:
        raise NotFound(f"No release {release_id}.")
    if release.status == ReleaseStatus.EVALUATING:
        # Evidence in the making would be signed half-done; a draft (no evidence yet) or any later state exports.
        raise Conflict(
            f"Release #{release.pk} is still being evaluated: request the export once its verdict is in.",
            code=ExportsErrorCode.RELEASE_EVALUATING,
        )
    with transaction.atomic():
        export = Export.objects.create(release=release, requested_by=actor)
        ledger_append(
            actor=actor,
            action="export.requested",
            object_type=OBJECT_TYPE,
            object_id=export.pk,
            payload={"release": release.pk},
        )
        transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def _enqueue(export_id: int) -> None:
    from exports.tasks import build_export

    build_export.delay(export_id)


def export_build(*, export_id: int) -> None:
    """Render, sign and store the dossier and the bundle. Idempotent per export."""
    export = job_claim(Export, export_id, object_type=OBJECT_TYPE)
    if export is None:
        return
    workdir = export_dir(export).with_suffix(".partial")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        _build(export, workdir)
    except JobCancelled:
        shutil.rmtree(workdir, ignore_errors=True)
    except (SigningKeyMissing, OSError, ValueError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        job_fail(Export, export.pk, object_type=OBJECT_TYPE, code=ExportsErrorCode.EXPORT_FAILED, reason=str(exc))
    except SoftTimeLimitExceeded:
        shutil.rmtree(workdir, ignore_errors=True)
        job_fail(
            Export,
            export.pk,
            object_type=OBJECT_TYPE,
            code=ExportsErrorCode.TIME_LIMIT,
            reason="The export took too long.",
        )
    except Exception as exc:  # noqa: BLE001 - any failure must end as a readable FAILED state
        logger.exception("export %s failed", export.pk)
        shutil.rmtree(workdir, ignore_errors=True)
        job_fail(
            Export,
            export.pk,
            object_type=OBJECT_TYPE,
            code=ExportsErrorCode.INTERNAL_ERROR,
            reason=f"Unexpected error: {type(exc).__name__}: {exc}",
        )


def predictions_file(comparison) -> tuple[bytes, int]:
    """The comparison's per-example predictions as a gzip-compressed CSV (header row, then one row per example
    in suite order) and the number of rows. Deterministic bytes: the same records give the same file (and so
    the same bundle digest), since gzip records no name and a zero modification time."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    rows = 0
    for row in predictions_rows(comparison):
        writer.writerow(row)
        rows += 1
    return gzip.compress(text.getvalue().encode("utf-8"), compresslevel=9, mtime=0), rows


def _write_predictions(release, workdir: Path) -> dict | None:
    """Write the predictions file of the release's comparison into the export; its description for the bundle
    (so the bundle's signature covers its sha256), or None when the release has no comparison yet."""
    comparison = release.comparison
    if comparison is None:
        return None
    data, rows = predictions_file(comparison)
    (workdir / PREDICTIONS_NAME).write_bytes(data)
    return {
        "name": PREDICTIONS_NAME,
        "media_type": PREDICTIONS_MEDIA_TYPE,
        "compression": "gzip",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "rows": rows,
        "columns": list(PREDICTION_COLUMNS),
        "classes": list(comparison.baseline_run.artifact.labels),
        "comparison": comparison.pk,
        "baseline_run": comparison.baseline_run_id,
        "candidate_run": comparison.candidate_run_id,
        "recompute": PREDICTIONS_RECOMPUTE,
    }


def _build(export: Export, workdir: Path) -> None:
    from exports.dossier import render_dossier_pdf
    from trust.dsse import dsse_sign_json
    from trust.pades import sign_pdf

    conf = settings.SAFESHRINK
    job_progress(Export, export.pk, stage="collecting evidence", percent=5)
    ledger_seal()  # every event about the release is chained before the excerpt is taken
    release = export.release
    checkpoint = checkpoint_latest_covering(last_release_event_seq(release))
    predictions = _write_predictions(release, workdir)
    bundle = bundle_build(release, checkpoint=checkpoint, predictions=predictions)
    bundle_digest = dossier.bundle_digest(bundle)  # the function the PDF prints its digest with
    job_progress(Export, export.pk, stage="rendering dossier", percent=20)
    pdf = render_dossier_pdf(bundle)
    job_progress(Export, export.pk, stage="signing dossier", percent=80)
    signed = sign_pdf(
        pdf,
        signer_key_path=conf["SIGNING_KEY"],
        signer_cert_path=conf["SIGNING_CERT"],
        chain_paths=list(conf["SIGNING_CHAIN"]),
        crl_paths=list(conf["SIGNING_CRLS"]),
        reason=f"SafeShrink evidence for release {release.pk} (bundle {bundle_digest})",
        location=conf["ORGANISATION"],
    )
    envelope = dsse_sign_json(bundle, system_private_key(), BUNDLE_PAYLOAD_TYPE)
    bundle_bytes = json.dumps(envelope, sort_keys=True, indent=1).encode()
    (workdir / PDF_NAME).write_bytes(signed)
    (workdir / BUNDLE_NAME).write_bytes(bundle_bytes)
    with transaction.atomic():
        locked = Export.objects.select_for_update().get(pk=export.pk)
        if locked.status != RunStatus.RUNNING:
            raise JobCancelled(f"export {export.pk} is {locked.status}")
        target = export_dir(locked)
        shutil.rmtree(target, ignore_errors=True)
        workdir.rename(target)
        now = timezone.now()
        assert locked.started_at is not None  # job_claim stamps started_at when the export starts running
        locked.bundle_digest, locked.checkpoint = bundle_digest, checkpoint
        locked.pdf_sha256 = hashlib.sha256(signed).hexdigest()
        locked.bundle_sha256 = hashlib.sha256(bundle_bytes).hexdigest()
        locked.pdf_bytes = len(signed)
        locked.predictions_sha256 = predictions["sha256"] if predictions else ""
        locked.predictions_bytes = predictions["size_bytes"] if predictions else None
        locked.status, locked.progress_stage, locked.progress_percent = RunStatus.SUCCEEDED, "done", 100
        locked.finished_at, locked.wall_seconds = now, (now - locked.started_at).total_seconds()
        locked.save()
        ledger_append(
            actor=None,
            action="export.succeeded",
            object_type=OBJECT_TYPE,
            object_id=export.pk,
            payload={
                "release": release.pk,
                "bundle_digest": bundle_digest,
                "pdf_sha256": locked.pdf_sha256,
                "bundle_sha256": locked.bundle_sha256,
                "predictions_sha256": locked.predictions_sha256 or None,
                "checkpoint_seq": checkpoint.seq,
            },
        )


EXPORT_PARTS = {"dossier": PDF_NAME, "bundle": BUNDLE_NAME, "predictions": PREDICTIONS_NAME}


def export_open(*, actor, export_id: int, part: str) -> tuple[Path, str]:
    """The file of one part ("dossier", "bundle" or "predictions") for download; every download is a ledger
    event."""
    export = exports_visible_to(actor).filter(pk=export_id).first()
    if export is None:
        raise NotFound(f"No export {export_id}.")
    if export.status != RunStatus.SUCCEEDED:
        raise Conflict(f"Export {export.pk} is {export.status}.", code=ExportsErrorCode.EXPORT_NOT_READY)
    name = EXPORT_PARTS.get(part)
    if name is None:
        raise ValidationFailed("Unknown part.", details={"part": [f"One of {', '.join(EXPORT_PARTS)}."]})
    if part == "predictions" and not export.predictions_sha256:
        raise Conflict(
            f"Export {export.pk} has no predictions file: its release had no comparison when it was built.",
            code=ExportsErrorCode.PREDICTIONS_MISSING,
        )
    sha256 = {"dossier": export.pdf_sha256, "bundle": export.bundle_sha256, "predictions": export.predictions_sha256}
    with transaction.atomic():
        ledger_append(
            actor=actor,
            action="access.downloaded",
            object_type=OBJECT_TYPE,
            object_id=export.pk,
            payload={
                "part": part,
                "release": export.release_id,
                "sha256": sha256[part],
            },
        )
    return export_dir(export) / name, name


def regulator_grant(*, actor, regulator_id: int, release_id: int, days: int, reason: str) -> RegulatorGrant:
    if actor.role != Role.OFFICER:
        raise PermissionDenied("Only officers grant regulators access.")
    regulator = User.objects.filter(pk=regulator_id, role=Role.REGULATOR).first()
    if regulator is None:
        raise ValidationFailed("Not a regulator.", details={"regulator": [f"No regulator {regulator_id}."]})
    if not 1 <= days <= 366:
        raise ValidationFailed("Grants last 1 to 366 days.", details={"days": ["Between 1 and 366."]})
    if not reason.strip():
        raise ValidationFailed("Say why the regulator needs access.", details={"reason": ["May not be blank."]})
    release = releases_visible_to(actor).filter(pk=release_id).first()
    if release is None:
        raise NotFound(f"No release {release_id}.")
    now = timezone.now()
    with transaction.atomic():
        grant = RegulatorGrant.objects.create(
            regulator=regulator,
            release=release,
            granted_by=actor,
            reason=reason,
            valid_from=now,
            valid_until=now + dt.timedelta(days=days),
        )
        ledger_append(
            actor=actor,
            action="grant.created",
            object_type="release",
            object_id=release.pk,
            payload={
                "grant": grant.pk,
                "regulator": regulator.username,
                "valid_until": grant.valid_until.isoformat(),
                "reason": reason,
            },
        )
    return grant


def regulator_grant_revoke(*, actor, grant_id: int) -> RegulatorGrant:
    if actor.role != Role.OFFICER:
        raise PermissionDenied("Only officers revoke grants.")
    with transaction.atomic():
        grant = RegulatorGrant.objects.select_for_update().filter(pk=grant_id).first()
        if grant is None:
            raise NotFound(f"No grant {grant_id}.")
        if grant.revoked_at:
            raise Conflict("Already revoked.", code=ExportsErrorCode.ALREADY_REVOKED)
        grant.revoked_at = timezone.now()
        grant.save(update_fields=["revoked_at"])
        ledger_append(
            actor=actor,
            action="grant.revoked",
            object_type="release",
            object_id=grant.release_id,
            payload={"grant": grant.pk},
        )
    return grant


@dataclass(frozen=True)
class ExportVerification:
    kind: str
    valid: bool
    intact: bool
    trusted: bool
    signer: str | None
    signing_time: str | None
    bundle_digest: str | None
    summary: str
    problems: tuple[str, ...]
    # A predictions file checked against the bundle: whether its sha256 and size are the ones the bundle
    # records (None when no predictions file was given).
    predictions_match: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def export_verify(data: bytes, predictions: bytes | None = None) -> ExportVerification:
    """Verify a dossier PDF (PAdES, against the configured trust roots) or a bundle envelope (DSSE,
    against the system key), and a predictions file against the bundle's record of it. Never raises on bad
    input: an invalid file is reported invalid."""
    from trust.dsse import SignatureInvalid, dsse_verify
    from trust.keys import key_id
    from trust.pades import verify_pdf

    conf = settings.SAFESHRINK
    if data[:5] == b"%PDF-":
        result = verify_pdf(data, trust_roots=list(conf["TRUST_ROOTS"]), crl_paths=list(conf["SIGNING_CRLS"]))
        problems = tuple(result.problems)
        if predictions is not None:
            problems += ("a predictions file is checked against the bundle (bundle.dsse.json), not the dossier",)
        return ExportVerification(
            "dossier",
            result.valid and predictions is None,
            result.intact,
            result.trusted,
            result.signer,
            result.signing_time,
            None,
            result.summary,
            problems,
        )
    try:
        envelope = json.loads(data)
        public = system_public_key()
        payload = dsse_verify(envelope, {key_id(public): public}, payload_type=BUNDLE_PAYLOAD_TYPE)
        bundle = json.loads(payload)
    except (ValueError, SignatureInvalid, SigningKeyMissing, TypeError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return ExportVerification("bundle", False, False, False, None, None, None, f"INVALID: {reason}", (reason,))
    problem = None if predictions is None else _predictions_problem(bundle, predictions)
    summary = "VALID: DSSE envelope signed by the system key"
    if predictions is not None:
        summary = f"INVALID: {problem}" if problem else f"{summary}; the predictions file is the one it records"
    return ExportVerification(
        "bundle",
        problem is None,
        True,
        True,
        f"system key {key_id(public)}",
        None,
        dossier.bundle_digest(bundle),
        summary,
        (problem,) if problem else (),
        None if predictions is None else problem is None,
    )


def _predictions_problem(bundle: dict, predictions: bytes) -> str | None:
    """Why a predictions file is not the one the (verified) bundle records, or None when it is."""
    record = bundle.get("predictions") if isinstance(bundle, dict) else None
    if not isinstance(record, dict):
        return "the bundle records no predictions file"
    actual = hashlib.sha256(predictions).hexdigest()
    if actual != record.get("sha256") or len(predictions) != record.get("size_bytes"):
        return (
            f"the predictions file (sha256 {actual}, {len(predictions)} bytes) is not the one the bundle records "
            f"(sha256 {record.get('sha256')}, {record.get('size_bytes')} bytes)"
        )
    return None
