"""A signed export end to end: build, verify (ours and the schema), tamper, rebuild, download. The predictions
file (the third part) and its recomputation: tests/exports/test_recompute.py."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from compression.models import RunStatus
from exports.models import Export
from exports.services.exports import export_dir, export_request, export_verify, regulator_grant
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)
SCHEMA = Path(__file__).resolve().parents[2] / "exports" / "evidence-bundle.schema.json"


@pytest.fixture
def export(engineer, officer, officer2, base_artifact, demo_suite, demo_policy):
    from governance.services.releases import release_decide

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="Within policy.")
    made = export_request(actor=officer, release_id=release.pk)  # eager: built here
    made.refresh_from_db()
    assert made.status == RunStatus.SUCCEEDED, made.failure_reason
    return made


def test_signed_dossier_and_bundle_verify_and_carry_the_same_digest(export):
    import jsonschema

    pdf = (export_dir(export) / "dossier.pdf").read_bytes()
    envelope = (export_dir(export) / "bundle.dsse.json").read_bytes()
    dossier = export_verify(pdf)
    assert (dossier.kind, dossier.valid, dossier.intact, dossier.trusted) == ("dossier", True, True, True)
    assert dossier.signer and dossier.signing_time
    bundle_report = export_verify(envelope)
    assert bundle_report.valid and bundle_report.bundle_digest == export.bundle_digest
    import base64

    bundle = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    jsonschema.validate(bundle, json.loads(SCHEMA.read_text()))
    assert bundle["release"]["id"] == export.release_id
    assert bundle["ledger"]["checkpoint"]["seq"] == export.checkpoint.seq
    assert f"/ID [({export.bundle_digest})".encode() in pdf  # the PDF's document identifier is the bundle digest
    if shutil.which("pdftotext"):  # and it is printed (where poppler-utils is installed to read the text back)
        assert export.bundle_digest.encode() in _pdf_text(pdf)
    # The bundle carries the predictions file's digest (so its signature covers it) and the new evidence.
    predictions = (export_dir(export) / "predictions.csv.gz").read_bytes()
    assert bundle["predictions"]["sha256"] == hashlib.sha256(predictions).hexdigest() == export.predictions_sha256
    comparison = bundle["comparison"]
    assert comparison["statistics"]["profile"] == bundle["evaluations"]["baseline"]["config"]["profile"]
    assert (
        comparison["stability"]["flips"]["stable"] + comparison["stability"]["flips"]["unstable"]
        == (comparison["flip_count"])
    )
    assert comparison["runtime"]["measurement"] and bundle["policy"]["flip_basis"] in ("stable", "all")
    flip_rules = [verdict for verdict in bundle["gate"] if verdict["metric"] == "flip_rate"]
    assert flip_rules and all(verdict["flip_basis"] == "stable" for verdict in flip_rules)  # stable flips counted


def _pdf_text(pdf: bytes) -> bytes:
    import subprocess

    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout


def test_one_changed_byte_fails_verification(export, tmp_path):
    pdf = bytearray((export_dir(export) / "dossier.pdf").read_bytes())
    middle = len(pdf) // 3
    pdf[middle] = (pdf[middle] + 1) % 256
    assert not export_verify(bytes(pdf)).valid
    bad = tmp_path / "tampered.pdf"
    bad.write_bytes(bytes(pdf))
    with pytest.raises(CommandError, match="INVALID"):
        call_command("verify_export", str(bad))
    call_command("verify_export", str(export_dir(export) / "dossier.pdf"))  # the original passes
    envelope = json.loads((export_dir(export) / "bundle.dsse.json").read_text())
    envelope["payload"] = envelope["payload"][:-8] + ("A" * 8 if not envelope["payload"].endswith("A" * 8) else "B" * 8)
    assert not export_verify(json.dumps(envelope).encode()).valid
    assert not export_verify(b"not a signed file").valid


def test_rebuilding_from_the_same_records_gives_the_same_content_digest(export, officer):
    again = export_request(actor=officer, release_id=export.release_id)
    again.refresh_from_db()
    assert again.status == RunStatus.SUCCEEDED
    assert again.bundle_digest == export.bundle_digest and again.checkpoint_id == export.checkpoint_id
    assert again.predictions_sha256 == export.predictions_sha256 != ""  # deterministic bytes (gzip mtime 0)
    assert Export.objects.count() == 2


def test_regulator_downloads_are_ledger_events_and_verify_endpoint(export, officer, make_user):
    regulator = make_user("rhea", "regulator")
    regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=export.release_id, days=7, reason="audit")
    api = api_client_for(regulator)
    r = api.get(f"/api/exports/{export.pk}/dossier/")
    assert r.status_code == 200 and r["Content-Type"] == "application/pdf"
    pdf = b"".join(r.streaming_content)
    assert LedgerEvent.objects.filter(action="access.downloaded", actor_username="rhea").count() == 1
    from django.core.files.uploadedfile import SimpleUploadedFile

    report = api.post("/api/exports/verify/", {"file": SimpleUploadedFile("d.pdf", pdf)}, format="multipart").json()
    assert report["valid"] is True and report["kind"] == "dossier"
    assert api.post(f"/api/releases/{export.release_id}/exports/").status_code == 403  # read-only
