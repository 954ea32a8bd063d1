import hashlib
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from trust import generate_ed25519, key_id, load_private, load_public, sign, verify


def test_generate_load_round_trip(tmp_path):
    priv_path, pub_path = tmp_path / "keys" / "system.key.pem", tmp_path / "keys" / "system.pub.pem"
    generated = generate_ed25519(priv_path, pub_path)

    assert stat.S_IMODE(priv_path.stat().st_mode) == 0o600
    assert priv_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")

    private, public = load_private(priv_path), load_public(pub_path)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert key_id(public) == hashlib.sha256(raw).hexdigest() == key_id(private) == key_id(generated)

    sig = sign(private, b"ledger head")
    assert len(sig) == 64
    assert verify(public, b"ledger head", sig)
    assert not verify(public, b"ledger head!", sig)
    assert not verify(public, b"ledger head", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not verify(public, b"ledger head", b"short")


def test_wrong_key_type_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(TypeError):
        load_private(path)


def test_two_keys_differ(tmp_path):
    a = generate_ed25519(tmp_path / "a", tmp_path / "a.pub")
    b = generate_ed25519(tmp_path / "b", tmp_path / "b.pub")
    assert key_id(a) != key_id(b)
    assert not verify(b.public_key(), b"x", sign(a, b"x"))
