"""Issue 13 item 6: what SafeShrink produces is signed in the OpenSSF model-signing format (checked here with
the real `model_signing` CLI); a folder that arrives with a model.sig is verified against the registering
engineer's keys and the result recorded."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from compression.models import CompressionRun, ModelArtifact, RunStatus
from compression.services.artifacts import artifact_register, artifact_root
from compression.services.experiments import experiment_create
from compression.services.runs import compression_run_execute
from compression.services.signatures import _KEY_SOURCES, register_public_key_source, system_signature_prepare
from ledger.models import LedgerEvent
from tests.compression.test_uploads import _create, _send, folder  # noqa: F401 (a fixture)
from trust.model_signing import key_fingerprint, sign_model

CLI = Path(sys.executable).with_name("model_signing")


def cli_verify(model: Path, signature: Path, public_key: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), "verify", "key", "--signature", str(signature), "--public_key", str(public_key), str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def events(action: str) -> list[dict]:
    return [json.loads(e.payload_json) for e in LedgerEvent.objects.filter(action=action).order_by("id")]


# --- What SafeShrink produces is signed -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_runs_output_is_signed_once_and_the_cli_verifies_it(engineer, engineer_api, base_artifact, tmp_path):
    experiment = experiment_create(
        actor=engineer, name="exp", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    body = {"method": "magnitude_prune", "parameters": {"sparsity": 0.5}, "seed": 3}
    r = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", body, format="json")
    run = CompressionRun.objects.get(pk=r.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    artifact = run.output_artifact
    assert artifact.system_signature is not None and artifact.system_signed_at is not None
    signed = events("artifact.signed")
    assert [e["digest"] for e in signed] == [artifact.digest]

    # What a user downloads: the signature, the public key; and the artifact's files.
    signature = engineer_api.get(f"/api/artifacts/{artifact.pk}/model-signature/")
    assert signature.status_code == 200, signature.content
    assert signature.json() == artifact.system_signature
    key = engineer_api.get("/api/artifacts/model-signing-key/")
    assert key.status_code == 200 and key["Content-Type"] == "application/x-pem-file"
    pem = key.content.decode()
    assert isinstance(serialization.load_pem_public_key(key.content), ec.EllipticCurvePublicKey)
    assert artifact.system_signature_key == key_fingerprint(pem) == signed[0]["key"]
    shown = engineer_api.get(f"/api/artifacts/{artifact.pk}/").json()
    assert shown["system_signature_key"] == key_fingerprint(pem) and shown["signature_status"] == "none"
    (tmp_path / "model.sig").write_bytes(signature.content)
    (tmp_path / "key.pub.pem").write_bytes(key.content)
    model = tmp_path / "downloaded"

    shutil.copytree(artifact_root() / artifact.digest, model)
    ok = cli_verify(model, tmp_path / "model.sig", tmp_path / "key.pub.pem")
    assert ok.returncode == 0, ok.stderr
    weights = next(p for p in model.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert cli_verify(model, tmp_path / "model.sig", tmp_path / "key.pub.pem").returncode != 0

    # Delivered twice, or the same bytes produced again: still one signature, one event.
    bundle = artifact.system_signature
    compression_run_execute(run_id=run.pk)
    again = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", body, format="json").json()
    assert CompressionRun.objects.get(pk=again["id"]).output_artifact_id == artifact.pk
    assert system_signature_prepare(artifact.digest) is None
    artifact.refresh_from_db()
    assert artifact.system_signature == bundle and len(events("artifact.signed")) == 1


def test_an_artifact_safeshrink_did_not_produce_has_no_signature_to_serve(engineer_api, base_artifact, officer_api):
    r = engineer_api.get(f"/api/artifacts/{base_artifact.pk}/model-signature/")
    assert r.status_code == 404 and r.json()["code"] == "not_signed"
    assert engineer_api.get("/api/artifacts/999999/model-signature/").status_code == 404
    assert officer_api.get(f"/api/artifacts/{base_artifact.pk}/model-signature/").status_code == 404  # not visible
    assert not events("artifact.signed")


def test_a_model_safeshrink_built_is_signed_when_registered_with_sign(db, engineer, tiny_model_dir, tmp_path):
    artifact = artifact_register(actor=engineer, name="teacher", path=str(tiny_model_dir), sign=True)
    assert artifact.system_signature is not None
    from compression.services.signatures import model_signing_public_key

    (tmp_path / "k.pem").write_text(model_signing_public_key())
    (tmp_path / "s.sig").write_text(json.dumps(artifact.system_signature))
    assert cli_verify(artifact_root() / artifact.digest, tmp_path / "s.sig", tmp_path / "k.pem").returncode == 0


# --- What arrives with a signature is checked -------------------------------------------------------------


@pytest.fixture
def engineer_keys(tmp_path):
    """EC keys 'registered' by users: the source tracking registers for its EngineerKey rows, stood in here."""
    registered: dict[int, list[tuple[str, str]]] = {}

    def make(user, name: str) -> Path:
        private = ec.generate_private_key(ec.SECP256R1())
        path = tmp_path / f"{name}.pem"
        path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        if user is not None:
            pem = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            registered.setdefault(user.pk, []).append((f"key-{name}", pem.decode()))
        return path

    before = dict(_KEY_SOURCES)
    register_public_key_source("tests", lambda user: registered.get(user.pk, []))
    yield make
    _KEY_SOURCES.clear()
    _KEY_SOURCES.update(before)


def _upload(api, folder: Path) -> ModelArtifact:  # noqa: F811
    created = _create(api, folder)
    assert created.status_code == 201, created.json()
    _send(api, created.json(), folder)
    finished = api.post(f"/api/uploads/{created.json()['id']}/finish/", {}, format="json")
    assert finished.status_code == 200, finished.json()
    return ModelArtifact.objects.get(pk=finished.json()["artifact"]["id"])


@pytest.mark.django_db
def test_an_upload_signed_with_the_engineers_registered_key_is_verified(
    engineer,
    engineer_api,
    engineer_keys,
    folder,  # noqa: F811
):
    key = engineer_keys(engineer, "eve")
    sign_model(folder, key, folder / "model.sig")
    artifact = _upload(engineer_api, folder)
    assert artifact.signature_status == "verified", artifact.signature_reason
    assert artifact.signature_key_id == "key-eve" and artifact.signature_checked_at is not None
    assert "model.sig" in {f["path"] for f in artifact.manifest}  # the artifact is the bytes that arrived
    [event] = events("artifact.signature_checked")
    assert (event["digest"], event["status"], event["key_id"]) == (artifact.digest, "verified", "key-eve")
    shown = engineer_api.get(f"/api/artifacts/{artifact.pk}/").json()
    assert (shown["signature_status"], shown["signature_key_id"]) == ("verified", "key-eve")
    # The stored folder still verifies with the CLI (it leaves model.sig out, as SafeShrink's check does).
    pub = folder.parent / "eve.pub.pem"
    pem = serialization.load_pem_private_key(key.read_bytes(), None).public_key()
    pub.write_bytes(pem.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    stored = artifact_root() / artifact.digest
    assert cli_verify(stored, stored / "model.sig", pub).returncode == 0


@pytest.mark.django_db
def test_an_upload_signed_with_an_unregistered_key_is_recorded_failed(
    engineer,
    engineer_api,
    engineer_keys,
    folder,  # noqa: F811
):
    engineer_keys(engineer, "eve")
    stranger = engineer_keys(None, "stranger")
    sign_model(folder, stranger, folder / "model.sig")
    artifact = _upload(engineer_api, folder)
    assert artifact.signature_status == "failed" and artifact.signature_key_id == ""
    assert "key-eve" in artifact.signature_reason and "mismatch" in artifact.signature_reason.lower()
    assert events("artifact.signature_checked")[0]["status"] == "failed"


@pytest.mark.django_db
def test_a_tampered_signed_upload_is_recorded_failed_naming_the_file(
    engineer,
    engineer_api,
    engineer_keys,
    folder,  # noqa: F811
):
    key = engineer_keys(engineer, "eve")
    sign_model(folder, key, folder / "model.sig")
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhijacked\n")
    artifact = _upload(engineer_api, folder)
    assert artifact.signature_status == "failed"
    assert "tokenizer/vocab.txt" in artifact.signature_reason


@pytest.mark.django_db
def test_an_engineer_without_keys_gets_failed_with_the_reason(engineer, engineer_api, engineer_keys, folder):  # noqa: F811
    sign_model(folder, engineer_keys(None, "someone"), folder / "model.sig")
    artifact = _upload(engineer_api, folder)
    assert artifact.signature_status == "failed" and "no registered public key" in artifact.signature_reason


@pytest.mark.django_db
def test_an_upload_without_a_signature_is_none_and_checked_by_nobody(engineer_api, engineer_keys, folder):  # noqa: F811
    artifact = _upload(engineer_api, folder)
    assert artifact.signature_status == "none" and artifact.signature_checked_at is None
    assert not events("artifact.signature_checked")
    assert engineer_api.get(f"/api/artifacts/{artifact.pk}/").json()["signature_status"] == "none"


@pytest.mark.django_db
def test_a_registered_folder_with_a_signature_is_checked_and_a_later_registrant_does_not_undo_it(
    engineer, make_user, engineer_keys, tiny_model_dir, tmp_path
):

    model = tmp_path / "signed"
    shutil.copytree(tiny_model_dir, model)
    sign_model(model, engineer_keys(engineer, "eve"), model / "model.sig")
    artifact = artifact_register(actor=engineer, name="signed", path=str(model))
    assert artifact.signature_status == "verified"
    other = make_user("otto", "engineer")
    again = artifact_register(actor=other, name="signed", path=str(model))
    assert again.pk == artifact.pk
    again.refresh_from_db()
    assert again.signature_status == "verified" and again.signature_key_id == "key-eve"
    assert [e["status"] for e in events("artifact.signature_checked")] == ["verified"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["tokenizer/model.sig", "other.sig"])
def test_only_the_top_level_model_sig_is_let_through_the_suffix_list(engineer_api, folder, path):  # noqa: F811
    (folder / path).write_text("{}")
    refused = _create(engineer_api, folder)
    assert refused.status_code == 400 and refused.json()["code"] == "upload_format_refused", refused.json()
    (folder / path).unlink()
    (folder / "model.sig").write_text("{}")
    assert _create(engineer_api, folder).status_code == 201


@pytest.mark.django_db
def test_an_upload_signed_with_a_key_registered_through_the_api_is_verified_by_tracking_s_source(
    engineer,
    engineer_api,
    folder,  # noqa: F811
    tmp_path,
):
    """No stand-in: the key goes through POST /api/engineer-keys/ and tracking's registered key source."""
    private = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / "eve.key.pem"
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    registered = engineer_api.post("/api/engineer-keys/", {"public_key": pem.decode(), "name": "ci"}, format="json")
    assert registered.status_code == 201, registered.json()
    sign_model(folder, key, folder / "model.sig")
    artifact = _upload(engineer_api, folder)
    assert artifact.signature_status == "verified", artifact.signature_reason
    assert artifact.signature_key_id == registered.json()["key_id"]
