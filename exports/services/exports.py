"""Building, downloading and verifying signed exports, and regulators' access to them."""

import datetime as dt
import hashlib
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
from exports.selectors import bundle_build, exports_visible_to, last_release_event_seq
from governance.models import RegulatorGrant
from governance.selectors import releases_visible_to
from ledger.services import checkpoint_latest_covering, ledger_append, ledger_seal
from ledger.signing import SigningKeyMissing, system_key_available, system_private_key, system_public_key

logger = logging.getLogger(__name__)
OBJECT_TYPE = "export"
BUNDLE_PAYLOAD_TYPE = "application/vnd.safeshrink.evidence-bundle+json"
PDF_NAME, BUNDLE_NAME = "dossier.pdf", "bundle.dsse.json"


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


def _build(export: Export, workdir: Path) -> None:
    from exports.dossier import render_dossier_pdf
    from trust.dsse import dsse_sign_json
    from trust.pades import sign_pdf

    conf = settings.SAFESHRINK
    job_progress(Export, export.pk, stage="collecting evidence", percent=5)
    ledger_seal()  # every event about the release is chained before the excerpt is taken
    release = export.release
    checkpoint = checkpoint_latest_covering(last_release_event_seq(release))
    bundle = bundle_build(release, checkpoint=checkpoint)
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
                "checkpoint_seq": checkpoint.seq,
            },
        )


def export_open(*, actor, export_id: int, part: str) -> tuple[Path, str]:
    """The file of one part ("dossier" or "bundle") for download; every download is a ledger event."""
    export = exports_visible_to(actor).filter(pk=export_id).first()
    if export is None:
        raise NotFound(f"No export {export_id}.")
    if export.status != RunStatus.SUCCEEDED:
        raise Conflict(f"Export {export.pk} is {export.status}.", code=ExportsErrorCode.EXPORT_NOT_READY)
    name = {"dossier": PDF_NAME, "bundle": BUNDLE_NAME}.get(part)
    if name is None:
        raise ValidationFailed("Unknown part.", details={"part": ["dossier or bundle"]})
    with transaction.atomic():
        ledger_append(
            actor=actor,
            action="access.downloaded",
            object_type=OBJECT_TYPE,
            object_id=export.pk,
            payload={
                "part": part,
                "release": export.release_id,
                "sha256": export.pdf_sha256 if part == "dossier" else export.bundle_sha256,
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

    def as_dict(self) -> dict:
        return asdict(self)


def export_verify(data: bytes) -> ExportVerification:
    """Verify a dossier PDF (PAdES, against the configured trust roots) or a bundle envelope (DSSE,
    against the system key). Never raises on bad input: an invalid file is reported invalid."""
    from trust.dsse import SignatureInvalid, dsse_verify
    from trust.keys import key_id
    from trust.pades import verify_pdf

    conf = settings.SAFESHRINK
    if data[:5] == b"%PDF-":
        result = verify_pdf(data, trust_roots=list(conf["TRUST_ROOTS"]), crl_paths=list(conf["SIGNING_CRLS"]))
        return ExportVerification(
            "dossier",
            result.valid,
            result.intact,
            result.trusted,
            result.signer,
            result.signing_time,
            None,
            result.summary,
            tuple(result.problems),
        )
    try:
        envelope = json.loads(data)
        public = system_public_key()
        payload = dsse_verify(envelope, {key_id(public): public}, payload_type=BUNDLE_PAYLOAD_TYPE)
        bundle = json.loads(payload)
    except (ValueError, SignatureInvalid, SigningKeyMissing, TypeError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return ExportVerification("bundle", False, False, False, None, None, None, f"INVALID: {reason}", (reason,))
    return ExportVerification(
        "bundle",
        True,
        True,
        True,
        f"system key {key_id(public)}",
        None,
        dossier.bundle_digest(bundle),
        "VALID: DSSE envelope signed by the system key",
        (),
    )
