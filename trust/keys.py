"""Ed25519 system key: generate, load, key id, sign, verify.

The system key signs ledger checkpoints and DSSE envelopes (provenance statements, evidence
bundles). It is a plain Ed25519 key stored as PEM (PKCS#8 private, SubjectPublicKeyInfo public).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["generate_ed25519", "load_private", "load_public", "public_of", "key_id", "sign", "verify"]


def _write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with the final mode so the private key is never world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)  # O_CREAT's mode is filtered by the umask, and ignored for an existing file


def generate_ed25519(path_private: str | os.PathLike, path_public: str | os.PathLike) -> Ed25519PrivateKey:
    """Generate a key pair; write the private key (PEM PKCS#8, mode 0600) and the public key (PEM)."""
    private = Ed25519PrivateKey.generate()
    _write_file(
        Path(path_private),
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _write_file(
        Path(path_public),
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )
    return private


def load_private(path: str | os.PathLike) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path}: not an Ed25519 private key")
    return key


def load_public(path: str | os.PathLike) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError(f"{path}: not an Ed25519 public key")
    return key


def public_of(key: Ed25519PrivateKey | Ed25519PublicKey) -> Ed25519PublicKey:
    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


def key_id(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """sha256 hex of the 32 raw public key bytes (a private key is accepted for convenience)."""
    raw = public_of(public_key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(private: Ed25519PrivateKey, data: bytes) -> bytes:
    return private.sign(data)


def verify(public: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        public.verify(signature, data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
