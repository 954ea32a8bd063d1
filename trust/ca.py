"""An internal certificate authority for signing dossier PDFs.

``create_internal_ca`` writes, into one directory:

- ``ca.pem`` / ``ca.key.pem``: a self-signed root (basicConstraints CA, pathLen 0; keyCertSign, cRLSign);
- ``signer.pem`` / ``signer.key.pem``: the document-signing certificate issued by that root
  (keyUsage digitalSignature + nonRepudiation, critical; extendedKeyUsage documentSigning
  (1.3.6.1.5.5.7.3.36, RFC 9336) and emailProtection, the purpose NSS/poppler check for signers);
- ``crl.pem`` / ``crl.der``: an empty CRL signed by the root, valid until the root expires, so that
  revocation can be checked, and embedded in signed PDFs, without any network.

Keys are ECDSA P-256 by default (RSA 3072 with ``key_algorithm="rsa-3072"``); private keys are
unencrypted PEM (PKCS#8) with mode 0600: protect the directory.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = ["CaFiles", "CaExistsError", "DOCUMENT_SIGNING_EKU", "create_internal_ca", "issue_crl", "ca_files"]

DOCUMENT_SIGNING_EKU = ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning, RFC 9336
KEY_ALGORITHMS = ("ecdsa-p256", "rsa-3072")


class CaExistsError(FileExistsError):
    """The output directory already holds a CA; pass force=True to replace it."""


@dataclass(frozen=True)
class CaFiles:
    directory: Path
    ca_cert: Path
    ca_key: Path
    signer_cert: Path
    signer_key: Path
    crl_pem: Path
    crl_der: Path

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.ca_cert, self.ca_key, self.signer_cert, self.signer_key, self.crl_pem, self.crl_der)


def ca_files(out_dir: str | os.PathLike) -> CaFiles:
    """The paths an internal CA in ``out_dir`` has (whether or not they exist yet)."""
    d = Path(out_dir)
    return CaFiles(
        directory=d,
        ca_cert=d / "ca.pem",
        ca_key=d / "ca.key.pem",
        signer_cert=d / "signer.pem",
        signer_key=d / "signer.key.pem",
        crl_pem=d / "crl.pem",
        crl_der=d / "crl.der",
    )


def _new_key(algorithm: str):
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"key_algorithm must be one of {KEY_ALGORITHMS}")


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def issue_crl(
    ca_cert: x509.Certificate,
    ca_key,
    *,
    revoked: Sequence[tuple[int, dt.datetime]] = (),
    number: int = 1,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL from the CA listing ``revoked`` (serial, revocation time); by default valid until the CA expires."""
    now = last_update or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(next_update or ca_cert.not_valid_after_utc)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def create_internal_ca(
    out_dir: str | os.PathLike,
    organisation: str,
    days: int = 3650,
    *,
    force: bool = False,
    key_algorithm: str = "ecdsa-p256",
    signer_common_name: str | None = None,
    crl_url: str | None = None,
) -> CaFiles:
    """Create a root CA, a document-signing certificate and an empty CRL in ``out_dir``.

    Refuses (``CaExistsError``) when any of the files already exists, unless ``force=True``.
    ``crl_url``: where the CRL will be published, written into the signer certificate as its CRL
    distribution point. Leave it None unless the URL really serves the CRL: validators that may go
    online (pyHanko's CLI by default) try to fetch it and fail hard when they cannot.
    """
    if not organisation or not organisation.strip():
        raise ValueError("organisation must be a non-empty name")
    if days < 1:
        raise ValueError("days must be positive")
    files = ca_files(out_dir)
    existing = [p.name for p in files.all if p.exists()]
    if existing and not force:
        raise CaExistsError(
            f"{files.directory} already holds a CA ({', '.join(existing)}); use force=True to replace it"
        )
    files.directory.mkdir(parents=True, exist_ok=True)

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before = now - dt.timedelta(minutes=5)  # tolerate small clock skew between machines
    not_after = now + dt.timedelta(days=days)

    ca_key = _new_key(key_algorithm)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} Document Signing CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    signer_key = _new_key(key_algorithm)
    signer_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, signer_common_name or f"{organisation} Dossier Signer"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )
    signer_builder = (
        x509.CertificateBuilder()
        .subject_name(signer_name)
        .issuer_name(ca_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([DOCUMENT_SIGNING_EKU, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if crl_url:
        signer_builder = signer_builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    signer_cert = signer_builder.sign(ca_key, hashes.SHA256())

    crl = issue_crl(ca_cert, ca_key, last_update=not_before, next_update=not_after)

    _write(files.ca_key, _key_pem(ca_key), 0o600)
    _write(files.signer_key, _key_pem(signer_key), 0o600)
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.signer_cert, signer_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.crl_pem, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.crl_der, crl.public_bytes(serialization.Encoding.DER), 0o644)
    return files
