import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from trust import CaExistsError, create_internal_ca
from trust.ca import DOCUMENT_SIGNING_EKU


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_chain_and_usages(ca):
    root, signer = _cert(ca.ca_cert), _cert(ca.signer_cert)

    root.verify_directly_issued_by(root)  # self-signed
    signer.verify_directly_issued_by(root)  # raises if not issued by the CA
    assert signer.issuer == root.subject
    assert "SafeShrink Test Org" in signer.subject.rfc4514_string()

    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    root_ku = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert root_ku.key_cert_sign and root_ku.crl_sign

    assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = signer.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment  # nonRepudiation
    assert not ku.value.key_cert_sign
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert DOCUMENT_SIGNING_EKU in eku and ExtendedKeyUsageOID.EMAIL_PROTECTION in eku

    aki = signer.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert signer.not_valid_after_utc > datetime.now(UTC) + timedelta(days=3000)


def test_crl_signed_by_ca_and_empty(ca):
    root = _cert(ca.ca_cert)
    crl_pem = x509.load_pem_x509_crl(ca.crl_pem.read_bytes())
    crl_der = x509.load_der_x509_crl(ca.crl_der.read_bytes())
    assert crl_pem == crl_der
    assert crl_pem.is_signature_valid(root.public_key())
    assert crl_pem.issuer == root.subject
    assert len(crl_pem) == 0
    assert crl_pem.next_update_utc > datetime.now(UTC) + timedelta(days=3000)


def test_private_keys_are_private(ca):
    for path in (ca.ca_key, ca.signer_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refuses_to_overwrite(tmp_path):
    first = create_internal_ca(tmp_path, "Org A", days=30)
    before = first.ca_cert.read_bytes()
    with pytest.raises(CaExistsError):
        create_internal_ca(tmp_path, "Org B")
    assert first.ca_cert.read_bytes() == before
    second = create_internal_ca(tmp_path, "Org B", days=30, force=True)
    assert second == first  # same paths
    assert second.ca_cert.read_bytes() != before
    assert "Org B" in _cert(second.signer_cert).subject.rfc4514_string()


def test_rsa_and_crl_url(tmp_path):
    files = create_internal_ca(
        tmp_path, "Org R", days=10, key_algorithm="rsa-3072", crl_url="https://pki.example.org/safeshrink.crl"
    )
    signer = _cert(files.signer_cert)
    assert signer.public_key().key_size == 3072
    dp = signer.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name[0].value == "https://pki.example.org/safeshrink.crl"
    with pytest.raises(ValueError):
        create_internal_ca(tmp_path / "x", "Org", key_algorithm="dsa")
