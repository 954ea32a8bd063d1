import asyncio
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trust import PdfVerification, async_sign_pdf, async_verify_pdf, sign_pdf, verify_pdf
from trust.ca import issue_crl

from .conftest import SIGNING_TIME


def byte_range(pdf: bytes) -> list[int]:
    m = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    assert m, "no /ByteRange"
    return [int(x) for x in m.groups()]


def tamper_one_byte(pdf: bytes) -> bytes:
    """Change one digit of the first page's /MediaBox: inside the first signed range."""
    start, length, _, _ = byte_range(pdf)
    m = re.search(rb"/MediaBox \[ 0 0 (\d)", pdf)
    pos = m.start(1)
    assert start <= pos < start + length
    out = bytearray(pdf)
    out[pos] = ord("4") if out[pos] != ord("4") else ord("3")
    assert sum(a != b for a, b in zip(out, pdf, strict=True)) == 1
    return bytes(out)


def test_sign_then_verify(ca, signed_pdf, unsigned_pdf):
    assert signed_pdf.startswith(unsigned_pdf)  # incremental update: the original bytes are kept
    v = verify_pdf(signed_pdf, trust_roots=[ca.ca_cert])
    assert isinstance(v, PdfVerification)
    assert v.valid and v.intact and v.trusted, v.problems
    assert v.problems == ()
    assert v.signer == "SafeShrink Test Org Dossier Signer"
    assert v.signer_organisation == "SafeShrink Test Org"
    assert datetime.fromisoformat(v.signing_time) == SIGNING_TIME
    assert v.signature_count == 1
    assert v.field_name == "SafeShrink"
    assert v.reason == "SafeShrink release dossier"
    # The DSS (chain + CRL) is written in an update after the signature: B-B + LTV data.
    assert v.revocation_info_embedded and v.revocation_checked
    assert v.coverage == "entire_revision" and not v.covers_entire_file
    assert v.summary.startswith("VALID: signed by SafeShrink Test Org Dossier Signer")
    with pytest.raises(AttributeError):
        v.valid = False  # frozen


def test_signature_is_pades_with_chain(ca, signed_pdf):
    assert b"/SubFilter /ETSI.CAdES.detached" in signed_pdf
    assert b"/DSS" in signed_pdf and b"/CRLs" in signed_pdf


def test_without_revocation_data(ca, unsigned_pdf):
    signed = sign_pdf(
        unsigned_pdf,
        signer_key_path=ca.signer_key,
        signer_cert_path=ca.signer_cert,
        chain_paths=[ca.ca_cert],
        crl_paths=[],
        reason="r",
        location="l",
    )
    v = verify_pdf(signed, trust_roots=[ca.ca_cert])
    assert v.valid and not v.revocation_info_embedded and not v.revocation_checked
    assert "revocation not checked" in v.summary
    # No root in the chain: no pre-sign validation, no DSS, the whole file is covered.
    bare = sign_pdf(
        unsigned_pdf,
        signer_key_path=ca.signer_key,
        signer_cert_path=ca.signer_cert,
        chain_paths=[],
        crl_paths=[],
        reason="r",
        location="l",
    )
    v = verify_pdf(bare, trust_roots=[ca.ca_cert], crl_paths=[ca.crl_pem])
    assert v.valid and v.covers_entire_file and v.coverage == "entire_file" and v.revocation_checked


def test_one_byte_changed_is_not_intact(ca, signed_pdf):
    v = verify_pdf(tamper_one_byte(signed_pdf), trust_roots=[ca.ca_cert])
    assert not v.valid and not v.intact
    assert any("altered after signing" in p for p in v.problems), v.problems
    assert v.summary.startswith("INVALID")


def test_byte_changed_inside_embedded_signer_certificate(ca, signed_pdf):
    """/Contents is outside the byte range; pyHanko raises on a damaged signer certificate, we must not."""
    _, length, second, _ = byte_range(signed_pdf)
    der = x509.load_pem_x509_certificate(ca.signer_cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    contents = signed_pdf[length + 1 : second - 1].lower()  # the hex string between < and >
    at = contents.find(der.hex().encode())
    assert at >= 0
    out = bytearray(signed_pdf)
    pos = length + 1 + at + 400
    out[pos] = ord("1") if out[pos] != ord("1") else ord("2")
    v = verify_pdf(bytes(out), trust_roots=[ca.ca_cert])
    assert not v.valid and not v.trusted
    assert any("could not be validated" in p for p in v.problems), v.problems


def test_other_ca_is_intact_but_not_trusted(other_ca, signed_pdf):
    v = verify_pdf(signed_pdf, trust_roots=[other_ca.ca_cert])
    assert v.intact and not v.trusted and not v.valid
    assert any("does not chain to a trusted root" in p for p in v.problems), v.problems


def test_no_trust_roots_is_not_trusted(signed_pdf):
    v = verify_pdf(signed_pdf, trust_roots=[])
    assert v.intact and not v.trusted and not v.valid
    assert "no trust roots were given" in v.problems


def test_revoked_signer(ca, signed_pdf, unsigned_pdf, tmp_path):
    root = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    root_key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), None)
    signer = x509.load_pem_x509_certificate(ca.signer_cert.read_bytes())
    crl = issue_crl(root, root_key, revoked=[(signer.serial_number, datetime(2026, 1, 1, tzinfo=UTC))], number=2)
    revoked = tmp_path / "revoked.pem"
    revoked.write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    # The verifier's current CRL wins over the (older, empty) CRL embedded at signing time.
    v = verify_pdf(signed_pdf, trust_roots=[ca.ca_cert], crl_paths=[revoked])
    assert v.intact and not v.trusted and not v.valid
    assert any("revoked" in p for p in v.problems), v.problems
    # And a revoked signer cannot sign.
    with pytest.raises(Exception, match="revoked"):
        sign_pdf(
            unsigned_pdf,
            signer_key_path=ca.signer_key,
            signer_cert_path=ca.signer_cert,
            chain_paths=[ca.ca_cert],
            crl_paths=[revoked],
            reason="r",
            location="l",
        )


def test_appended_content_after_signing_is_invalid(ca, signed_pdf):
    from io import BytesIO

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    w = IncrementalPdfFileWriter(BytesIO(signed_pdf))
    page = w.root["/Pages"]["/Kids"][0].get_object()
    page["/Rotate"] = generic.NumberObject(90)
    w.update_container(page)
    out = BytesIO()
    w.write(out)
    v = verify_pdf(out.getvalue(), trust_roots=[ca.ca_cert])
    assert v.intact and v.trusted and not v.valid
    assert any("changed after this signature" in p for p in v.problems), v.problems


def test_unsigned_pdf(ca, unsigned_pdf):
    v = verify_pdf(unsigned_pdf, trust_roots=[ca.ca_cert])
    assert not v.valid and v.signature_count == 0
    assert v.problems == ("the PDF carries no signature",)


@pytest.mark.parametrize("data", [b"", b"garbage" * 100, b"%PDF-1.7\n" + bytes(range(256)) * 10, None])
def test_garbage_never_raises(ca, signed_pdf, data):
    if data is None:
        data = signed_pdf[: len(signed_pdf) // 2]  # truncated
    v = verify_pdf(data, trust_roots=[ca.ca_cert])
    assert not v.valid and not v.intact and v.problems
    assert v.summary.startswith("INVALID")


def test_bad_trust_root_path_never_raises(signed_pdf, tmp_path):
    v = verify_pdf(signed_pdf, trust_roots=[tmp_path / "missing.pem"])
    assert not v.valid and "cannot load trust roots" in v.problems[0]


def test_inside_running_event_loop(ca, signed_pdf, unsigned_pdf):
    async def main():
        sync_result = verify_pdf(signed_pdf, trust_roots=[ca.ca_cert])  # sync API from async code
        async_result = await async_verify_pdf(signed_pdf, trust_roots=[ca.ca_cert])
        signed = sign_pdf(
            unsigned_pdf,
            signer_key_path=ca.signer_key,
            signer_cert_path=ca.signer_cert,
            chain_paths=[ca.ca_cert],
            crl_paths=[ca.crl_pem],
            reason="r",
            location="l",
        )
        signed2 = await async_sign_pdf(
            unsigned_pdf,
            signer_key_path=ca.signer_key,
            signer_cert_path=ca.signer_cert,
            chain_paths=[ca.ca_cert],
            crl_paths=[ca.crl_pem],
            reason="r",
            location="l",
        )
        return sync_result, async_result, signed, signed2

    sync_result, async_result, signed, signed2 = asyncio.run(main())
    assert sync_result.valid and async_result.valid
    assert verify_pdf(signed, trust_roots=[ca.ca_cert]).valid
    assert verify_pdf(signed2, trust_roots=[ca.ca_cert]).valid


def test_sign_and_verify_are_fast(ca, unsigned_pdf):
    t0 = time.perf_counter()
    signed = sign_pdf(
        unsigned_pdf,
        signer_key_path=ca.signer_key,
        signer_cert_path=ca.signer_cert,
        chain_paths=[ca.ca_cert],
        crl_paths=[ca.crl_pem],
        reason="r",
        location="l",
    )
    t1 = time.perf_counter()
    assert verify_pdf(signed, trust_roots=[ca.ca_cert]).valid
    t2 = time.perf_counter()
    assert t1 - t0 < 5 and t2 - t1 < 5  # generous: ~0.05 s and ~0.05 s measured


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="pdfsig (poppler-utils) is not installed")
def test_pdfsig_second_opinion(ca, signed_pdf, tmp_path):
    good, bad = tmp_path / "signed.pdf", tmp_path / "tampered.pdf"
    good.write_bytes(signed_pdf)
    bad.write_bytes(tamper_one_byte(signed_pdf))

    out = subprocess.run(["pdfsig", str(good)], capture_output=True, text=True, timeout=60).stdout
    assert "Signature Field Name: SafeShrink" in out
    assert "Signer Certificate Common Name: SafeShrink Test Org Dossier Signer" in out
    assert "Signature is Valid" in out
    assert "ETSI.CAdES.detached" in out

    out = subprocess.run(["pdfsig", str(bad)], capture_output=True, text=True, timeout=60).stdout
    assert "Digest Mismatch" in out and "Signature is Valid" not in out

    if shutil.which("certutil"):
        nss = tmp_path / "nss"
        nss.mkdir()
        subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True, timeout=60)
        subprocess.run(
            ["certutil", "-A", "-d", f"sql:{nss}", "-t", "CT,C,C", "-n", "safeshrink-ca", "-i", str(ca.ca_cert)],
            check=True,
            timeout=60,
        )
        out = subprocess.run(
            ["pdfsig", "-nssdir", f"sql:{nss}", str(good)], capture_output=True, text=True, timeout=60
        ).stdout
        assert "Signature is Valid" in out and "Certificate is Trusted" in out
