"""trust.model_signing: OpenSSF model-signing signatures (key-based, offline), checked by this library and
by the published `model_signing` CLI."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trust.model_signing import (
    SIGNATURE_FILE,
    ensure_ec_key,
    generate_ec_key,
    key_fingerprint,
    public_pem_of,
    sign_model,
    verify_model,
)

CLI = Path(sys.executable).with_name("model_signing")


def make_model(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "normal", "1": "offensive"}}))
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "sub" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return folder


@pytest.fixture
def keys(tmp_path):
    generate_ec_key(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    generate_ec_key(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    return tmp_path


def pub(path: Path) -> str:
    return path.read_text()


def cli_verify(folder: Path, signature: Path, public_key: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), "verify", "key", "--signature", str(signature), "--public_key", str(public_key), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_signed_folder_verifies_and_names_the_key(tmp_path, keys):
    model = make_model(tmp_path / "model")
    bundle = sign_model(model, keys / "k.pem", tmp_path / "model.sig")
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == key_fingerprint(pub(keys / "k.pub.pem"))
    result = verify_model(model, tmp_path / "model.sig", [("mine", pub(keys / "k.pub.pem"))])
    assert result.verified, result.reason
    assert (result.key_id, result.fingerprint) == ("mine", key_fingerprint(pub(keys / "k.pub.pem")))
    assert result.unsigned_files == ()


def test_one_changed_byte_fails(tmp_path, keys):
    model = make_model(tmp_path / "model")
    sign_model(model, keys / "k.pem", tmp_path / "model.sig")
    data = bytearray((model / "model.safetensors").read_bytes())
    data[1000] ^= 1
    (model / "model.safetensors").write_bytes(bytes(data))
    result = verify_model(model, tmp_path / "model.sig", [("mine", pub(keys / "k.pub.pem"))])
    assert not result.verified
    assert "model.safetensors" in result.reason and result.key_id == ""


def test_an_added_or_removed_file_fails(tmp_path, keys):
    model = make_model(tmp_path / "model")
    sign_model(model, keys / "k.pem", tmp_path / "model.sig")
    (model / "extra.txt").write_text("x")
    assert not verify_model(model, tmp_path / "model.sig", [("k", pub(keys / "k.pub.pem"))]).verified
    (model / "extra.txt").unlink()
    (model / "sub" / "vocab.txt").unlink()
    assert not verify_model(model, tmp_path / "model.sig", [("k", pub(keys / "k.pub.pem"))]).verified


def test_another_key_fails_and_the_right_one_among_several_verifies(tmp_path, keys):
    model = make_model(tmp_path / "model")
    sign_model(model, keys / "k.pem", tmp_path / "model.sig")
    wrong = verify_model(model, tmp_path / "model.sig", [("other", pub(keys / "other.pub.pem"))])
    assert not wrong.verified and "other" in wrong.reason
    both = verify_model(
        model, tmp_path / "model.sig", [("other", pub(keys / "other.pub.pem")), ("mine", pub(keys / "k.pub.pem"))]
    )
    assert both.verified and both.key_id == "mine"


def test_ed25519_keys_are_skipped_with_a_reason(tmp_path, keys):
    model = make_model(tmp_path / "model")
    sign_model(model, keys / "k.pem", tmp_path / "model.sig")
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = ed.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    result = verify_model(model, tmp_path / "model.sig", [("ed", pem)])
    assert not result.verified and "elliptic-curve" in result.reason
    assert "no public key" in verify_model(model, tmp_path / "model.sig", []).reason
    with pytest.raises(TypeError):
        ed_private = ed25519.Ed25519PrivateKey.generate()
        (tmp_path / "ed.pem").write_bytes(
            ed_private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        sign_model(model, tmp_path / "ed.pem", tmp_path / "ed.sig")


def test_garbage_and_a_changed_payload_fail_without_raising(tmp_path, keys):
    model = make_model(tmp_path / "model")
    (tmp_path / "junk.sig").write_text("not json")
    assert "not a key-based" in verify_model(model, tmp_path / "junk.sig", [("k", pub(keys / "k.pub.pem"))]).reason
    bundle = sign_model(model, keys / "k.pem", tmp_path / "model.sig")
    bundle["dsseEnvelope"]["payload"] = bundle["dsseEnvelope"]["payload"][:-8] + "AAAAAAA="
    (tmp_path / "forged.sig").write_text(json.dumps(bundle))
    assert not verify_model(model, tmp_path / "forged.sig", [("k", pub(keys / "k.pub.pem"))]).verified


def test_a_signature_inside_the_folder_is_left_out_of_what_is_signed(tmp_path, keys):
    model = make_model(tmp_path / "model")
    sign_model(model, keys / "k.pem", model / SIGNATURE_FILE)
    statement = json.loads(
        base64.b64decode(json.loads((model / SIGNATURE_FILE).read_text())["dsseEnvelope"]["payload"])
    )
    assert SIGNATURE_FILE not in {r["name"] for r in statement["predicate"]["resources"]}
    assert verify_model(model, model / SIGNATURE_FILE, [("k", pub(keys / "k.pub.pem"))]).verified
    result = cli_verify(model, model / SIGNATURE_FILE, keys / "k.pub.pem")
    assert result.returncode == 0, result.stderr


def test_the_cli_verifies_what_this_library_signed_and_refuses_a_tampered_folder(tmp_path, keys):
    model = make_model(tmp_path / "model")
    sign_model(model, keys / "k.pem", tmp_path / "model.sig")
    ok = cli_verify(model, tmp_path / "model.sig", keys / "k.pub.pem")
    assert ok.returncode == 0, ok.stderr
    assert "Verification succeeded" in ok.stdout
    assert cli_verify(model, tmp_path / "model.sig", keys / "other.pub.pem").returncode != 0
    (model / "config.json").write_text("{}")
    assert cli_verify(model, tmp_path / "model.sig", keys / "k.pub.pem").returncode != 0


def test_this_library_verifies_what_the_cli_signed(tmp_path, keys):
    model = make_model(tmp_path / "model")
    signed = subprocess.run(
        [
            str(CLI),
            "sign",
            "key",
            "--private_key",
            str(keys / "k.pem"),
            "--signature",
            str(model / "model.sig"),
            str(model),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert signed.returncode == 0, signed.stderr
    assert verify_model(model, model / "model.sig", [("k", pub(keys / "k.pub.pem"))]).verified


def test_ensure_ec_key_creates_once_and_keeps(tmp_path):
    path = ensure_ec_key(tmp_path / "keys" / "ms.pem")
    first = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_ec_key(path).read_bytes() == first
    key = serialization.load_pem_private_key(first, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert public_pem_of(path).startswith("-----BEGIN PUBLIC KEY-----")
    assert [p.name for p in path.parent.iterdir()] == ["ms.pem"]  # no temporary left behind
