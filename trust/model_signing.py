"""OpenSSF model signing (PyPI `model-signing`), key-based and offline: sign a model folder, verify one.

The signature is the format `model_signing sign key` writes: a Sigstore bundle (JSON) whose DSSE envelope
carries an in-toto Statement listing the sha256 of every file of the folder, signed with an elliptic-curve
key (P-256, P-384 or P-521: the only key types `model_signing` signs and verifies with; Ed25519 is not
among them). Anyone can check such a signature with the published CLI:

    model_signing verify key --signature <model.sig> --public_key <key.pub.pem> <model folder>

Hashing follows the CLI's defaults so that what is signed here verifies there and the other way round:
files serialization, sha256, git paths (.git/, .gitattributes, .github/, .gitignore) ignored, and the
signature file itself ignored when it lies inside the folder. The paths a signer chose to ignore are part
of the signed payload, and verification ignores exactly those (as the CLI does).

Nothing here touches the network: never Sigstore, no transparency log.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "SIGNATURE_FILE",
    "SUPPORTED_CURVES",
    "ModelSignatureResult",
    "generate_ec_key",
    "ensure_ec_key",
    "public_pem_of",
    "key_fingerprint",
    "is_supported_public_key",
    "sign_model",
    "verify_model",
]

# The name `model_signing sign` gives the signature by default (at the model folder's top level).
SIGNATURE_FILE = "model.sig"
SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_MAX_SIGNATURE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ModelSignatureResult:
    """The outcome of checking a model folder against a model-signing signature.

    key_id: the caller's id of the public key that verified (empty when none did);
    fingerprint: sha256 hex of that key's PEM, the `publicKey.hint` model_signing writes into bundles;
    unsigned_files: files of the folder the signature does not cover (the signer ignored them)."""

    verified: bool
    reason: str
    key_id: str = ""
    fingerprint: str = ""
    unsigned_files: tuple[str, ...] = field(default_factory=tuple)


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_ec_key(path_private: str | os.PathLike, path_public: str | os.PathLike | None = None) -> None:
    """A new P-256 key: the private key as PEM PKCS#8 (mode 0600), the public key as PEM (0644) if asked."""
    key = ec.generate_private_key(ec.SECP256R1())
    _write(Path(path_private), _private_pem(key), 0o600)
    if path_public is not None:
        _write(Path(path_public), _public_pem(key.public_key()), 0o644)


def ensure_ec_key(path_private: str | os.PathLike) -> Path:
    """The private key at `path_private`, created (P-256) if there is none. Safe when several processes
    race: the key is written to a private temporary file and linked into place, so exactly one key wins
    and nobody ever reads a half-written file."""
    target = Path(path_private)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".model-signing-", dir=target.parent)
    try:
        os.write(fd, _private_pem(ec.generate_private_key(ec.SECP256R1())))
        os.fchmod(fd, 0o600)
        os.close(fd)
        fd = -1
        with contextlib.suppress(FileExistsError):  # another process created it first: theirs is the key
            os.link(temporary, target)
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(temporary)
    return target


def _load_private(path: str | os.PathLike) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in SUPPORTED_CURVES:
        raise TypeError(f"{path}: not an elliptic-curve private key on {', '.join(SUPPORTED_CURVES)}")
    return key


def public_pem_of(path_private: str | os.PathLike) -> str:
    """The PEM (SubjectPublicKeyInfo) of the public half of the private key at `path_private`."""
    return _public_pem(_load_private(path_private).public_key()).decode("ascii")


def _load_public(pem: str | bytes) -> ec.EllipticCurvePublicKey | None:
    """An EC public key on a supported curve, or None for anything else (another key type, not PEM)."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii") if isinstance(pem, str) else pem)
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in SUPPORTED_CURVES:
        return None
    return key


def is_supported_public_key(pem: str | bytes) -> bool:
    return _load_public(pem) is not None


def key_fingerprint(pem: str | bytes) -> str:
    """sha256 hex of the public key's canonical PEM: the `publicKey.hint` model_signing writes and checks."""
    key = _load_public(pem)
    if key is None:
        raise ValueError("not an elliptic-curve public key on a curve model_signing supports")
    return hashlib.sha256(_public_pem(key)).hexdigest()


def _hashing_config(ignored: Iterable[str | os.PathLike]):
    from model_signing import hashing  # ~1 s to import: only where a model is signed or verified

    return hashing.Config().set_ignored_paths(paths=list(ignored), ignore_git_paths=True)


def sign_model(
    folder: str | os.PathLike, private_key_path: str | os.PathLike, signature_path: str | os.PathLike
) -> dict:
    """Sign every file of `folder` (as `model_signing sign key` would) and write the bundle to
    `signature_path`; a signature path inside the folder is left out of what is signed. Returns the bundle."""
    from model_signing import signing

    folder, signature_path = Path(folder), Path(signature_path)
    _load_private(private_key_path)  # a clear TypeError for an Ed25519 or RSA key
    ignored = [signature_path.resolve().relative_to(folder.resolve())] if _inside(signature_path, folder) else []
    signing.Config().use_elliptic_key_signer(private_key=Path(private_key_path)).set_hashing_config(
        _hashing_config(ignored)
    ).sign(folder, signature_path)
    return json.loads(signature_path.read_text("utf-8"))


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _payload(bundle: dict) -> dict:
    """The in-toto Statement inside a bundle (no signature check: call only after one verified)."""
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def _unsigned_files(folder: Path, bundle: dict, ignored_here: Sequence[str]) -> tuple[str, ...]:
    try:
        statement = _payload(bundle)
        signed = {r["name"] for r in statement["predicate"]["resources"]}
    except (KeyError, TypeError, ValueError):
        return ()
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    return tuple(sorted(present - signed - set(ignored_here)))


def verify_model(
    folder: str | os.PathLike,
    signature_path: str | os.PathLike,
    public_keys: Sequence[tuple[str, str]],
) -> ModelSignatureResult:
    """Check `folder` against the model-signing bundle at `signature_path` under any of `public_keys`
    ((key_id, PEM) pairs; keys model_signing cannot use, such as Ed25519, are skipped). Never raises for
    a bad signature or folder: the result says verified or not, and why."""
    from model_signing import verifying

    folder, signature_path = Path(folder), Path(signature_path)
    try:
        if signature_path.stat().st_size > _MAX_SIGNATURE_BYTES:
            return ModelSignatureResult(False, f"the signature file is over {_MAX_SIGNATURE_BYTES:,} bytes")
        bundle = json.loads(signature_path.read_text("utf-8"))
        hint = bundle["verificationMaterial"]["publicKey"].get("hint", "")
        if not isinstance(bundle["dsseEnvelope"]["signatures"], list):
            raise TypeError("dsseEnvelope.signatures is not a list")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return ModelSignatureResult(False, f"not a key-based model-signing bundle: {type(exc).__name__}: {exc}")
    usable = [(kid, pem, key_fingerprint(pem)) for kid, pem in public_keys if is_supported_public_key(pem)]
    if not usable:
        what = f"none of the {len(public_keys)} public keys given is" if public_keys else "no public key given is"
        return ModelSignatureResult(False, f"{what} an elliptic-curve key (P-256/P-384/P-521) model_signing verifies")
    # The bundle names its key by fingerprint (an unsigned hint): try that key first, then the others, so a
    # bundle without a hint or with a wrong one still gets its chance.
    usable.sort(key=lambda k: k[2] != hint)
    ignored = [signature_path.resolve().relative_to(folder.resolve())] if _inside(signature_path, folder) else []
    reasons = []
    with tempfile.TemporaryDirectory(prefix="model-signing-") as scratch:
        for kid, pem, fingerprint in usable:
            key_file = Path(scratch) / f"{fingerprint}.pem"
            key_file.write_text(pem, "ascii")
            try:
                verifying.Config().use_elliptic_key_verifier(public_key=key_file).set_hashing_config(
                    _hashing_config(ignored)
                ).verify(folder, signature_path)
            except Exception as exc:  # noqa: BLE001 - the library raises ValueError, InvalidSignature, KeyError...
                reasons.append(f"key {kid[:16]}: {type(exc).__name__}: {exc}".rstrip(": "))
                if fingerprint == hint:
                    break  # the signer's own key said no: the others cannot say yes to its signature
                continue
            unsigned = _unsigned_files(folder, bundle, [p.as_posix() for p in ignored])
            note = f"; not covered by the signature: {', '.join(unsigned)}" if unsigned else ""
            return ModelSignatureResult(True, f"verified under key {kid[:16]}{note}", kid, fingerprint, unsigned)
    return ModelSignatureResult(False, "; ".join(reasons)[:2000])
