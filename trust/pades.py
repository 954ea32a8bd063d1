"""PAdES signing and offline verification of PDF dossiers (pyHanko).

``sign_pdf`` makes a PAdES signature (``/ETSI.CAdES.detached``, SHA-256) with the signer's
certificate chain in the CMS object, then, when the chain's root and CRLs are given, validates the
signer offline (``allow_fetching=False``) and writes the chain and the CRLs into the document
security store (DSS) in an incremental update: the PAdES "LTV" data. There is no signature
timestamp (that needs an RFC 3161 TSA, i.e. the network), so the profile is PAdES B-B plus DSS
validation data, not formally B-LT (which presupposes B-T); the signing time is the signer's
claimed ``/M``.

``verify_pdf`` never raises: an unsigned, tampered or unreadable file gives ``valid=False`` and a
reason. It reads CRLs from the file's DSS and from ``crl_paths`` and never fetches anything.

Both have ``async_`` twins; the sync functions also work when called from inside a running event
loop (they then run pyHanko on a worker thread, blocking the caller until it finishes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

__all__ = ["PdfVerification", "sign_pdf", "async_sign_pdf", "verify_pdf", "async_verify_pdf"]

logger = logging.getLogger(__name__)


class _DropOfflineEmbedWarning(logging.Filter):
    """pyHanko warns on every signature that validation info is embedded with fetching disabled;
    that is our design (the CA's CRL is supplied locally), so the warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fetching is not allowed" not in record.getMessage()


logging.getLogger("pyhanko.sign.signers.pdf_signer").addFilter(_DropOfflineEmbedWarning())

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------- helpers


def _run_sync(make_coro):
    """Run a coroutine to completion from sync code, even when an event loop is already running."""
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:
        return asyncio.run(make_coro())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="trust-pades") as pool:
        return pool.submit(asyncio.run, make_coro()).result()


def _pem_or_der_blocks(data: bytes) -> list[bytes]:
    if pem.detect(data):
        return [der for _, _, der in pem.unarmor(data, multiple=True)]
    return [data]


def _load_certs(paths: Iterable[PathLike]) -> list[asn1_x509.Certificate]:
    certs = []
    for p in paths:
        for der in _pem_or_der_blocks(Path(p).read_bytes()):
            certs.append(asn1_x509.Certificate.load(der))
    return certs


def _load_crls(paths: Iterable[PathLike]) -> list[asn1_crl.CertificateList]:
    crls = []
    for p in paths:
        for der in _pem_or_der_blocks(Path(p).read_bytes()):
            crls.append(asn1_crl.CertificateList.load(der))
    return crls


def _is_self_signed(cert: asn1_x509.Certificate) -> bool:
    return cert.self_signed in ("maybe", "yes")


def _utc_iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


class _SignerAt(signers.PdfSigner):
    """PdfSigner whose signing session uses a fixed signing time (``/M``) instead of now."""

    def __init__(self, *args, system_time: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._system_time = system_time

    def init_signing_session(self, *args, **kwargs):
        session = super().init_signing_session(*args, **kwargs)
        if self._system_time is not None:
            session.system_time = self._system_time
        return session


# ---------------------------------------------------------------------------------------- signing


async def async_sign_pdf(
    pdf_bytes: bytes,
    *,
    signer_key_path: PathLike,
    signer_cert_path: PathLike,
    chain_paths: Sequence[PathLike] = (),
    crl_paths: Sequence[PathLike] = (),
    reason: str | None = None,
    location: str | None = None,
    field_name: str = "SafeShrink",
    signing_time: datetime | None = None,
) -> bytes:
    """See :func:`sign_pdf`."""
    if signing_time is not None and signing_time.tzinfo is None:
        raise ValueError("signing_time must be timezone-aware")
    chain = _load_certs(chain_paths)
    signer = signers.SimpleSigner.load(
        key_file=str(signer_key_path), cert_file=str(signer_cert_path), other_certs=chain
    )
    if signer is None:  # pyHanko logs and returns None when the files cannot be read
        raise ValueError(f"could not load the signing key {signer_key_path} or certificate {signer_cert_path}")

    roots = [c for c in chain if _is_self_signed(c)]
    crls = _load_crls(crl_paths)
    validation_context = None
    if roots:
        # Offline pre-sign validation of the signer (a revoked or expired signer is refused), and the
        # source of the certificates and CRLs written to the DSS.
        validation_context = ValidationContext(
            trust_roots=roots,
            other_certs=[c for c in chain if not _is_self_signed(c)],
            crls=crls,
            allow_fetching=False,
            # With CRLs at hand the signer's status must be checked against them (pyHanko's default
            # skips CRLs for certificates that declare no distribution point, like ours).
            revocation_mode="require" if crls else "soft-fail",
        )
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
        validation_context=validation_context,
        embed_validation_info=validation_context is not None,
        signer_key_usage={"non_repudiation"},
    )
    pdf_signer = _SignerAt(meta, signer=signer, system_time=signing_time)
    writer = IncrementalPdfFileWriter(BytesIO(pdf_bytes))
    out = BytesIO()
    try:
        await pdf_signer.async_sign_pdf(writer, output=out)
    except SigningError as exc:
        if exc.__cause__ is not None and str(exc.__cause__) not in str(exc):
            raise SigningError(f"{exc}: {exc.__cause__}") from exc  # say why (e.g. revoked)
        raise
    finally:
        if validation_context is not None:
            await validation_context.aclose()
    return out.getvalue()


def sign_pdf(
    pdf_bytes: bytes,
    *,
    signer_key_path: PathLike,
    signer_cert_path: PathLike,
    chain_paths: Sequence[PathLike] = (),
    crl_paths: Sequence[PathLike] = (),
    reason: str | None = None,
    location: str | None = None,
    field_name: str = "SafeShrink",
    signing_time: datetime | None = None,
) -> bytes:
    """Sign a PDF (PAdES, SHA-256, invisible field ``field_name``) and return the signed bytes.

    ``chain_paths``: the issuer certificates (PEM/DER); they are embedded in the signature. When one
    of them is a root, the signer is validated offline against it and ``crl_paths`` before signing
    (a revoked signer raises), and the chain and CRLs are embedded in the DSS. ``signing_time``
    (aware datetime, default now) becomes the signature's ``/M``.
    """
    return _run_sync(
        lambda: async_sign_pdf(
            pdf_bytes,
            signer_key_path=signer_key_path,
            signer_cert_path=signer_cert_path,
            chain_paths=chain_paths,
            crl_paths=crl_paths,
            reason=reason,
            location=location,
            field_name=field_name,
            signing_time=signing_time,
        )
    )


# ------------------------------------------------------------------------------------ verification


@dataclass(frozen=True)
class PdfVerification:
    valid: bool  # intact AND trusted AND nothing but validation data added since
    intact: bool  # the signed bytes hash to the signed digest and the CMS signature verifies
    trusted: bool  # the signer chains to one of the trust roots, not revoked
    signer: str | None = None  # signer certificate subject common name
    signer_organisation: str | None = None
    signing_time: str | None = None  # ISO 8601 UTC, as claimed by the signer (/M)
    signature_count: int = 0
    coverage: str = "none"  # "entire_file", "entire_revision", "contiguous_block_from_start", "unclear", "none"
    covers_entire_file: bool = False
    revocation_info_embedded: bool = False  # the file carries CRLs/OCSP responses in its DSS
    revocation_checked: bool = False  # the signer's status was established from a CRL (embedded or given)
    field_name: str | None = None
    reason: str | None = None
    location: str | None = None
    summary: str = ""
    problems: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["problems"] = list(self.problems)
        return d


def _invalid(reason: str, **kwargs) -> PdfVerification:
    return PdfVerification(
        valid=False, intact=False, trusted=False, summary=f"INVALID: {reason}", problems=(reason,), **kwargs
    )


def _name_part(cert: asn1_x509.Certificate, key: str) -> str | None:
    try:
        value = cert.subject.native.get(key)
    except Exception:  # noqa: BLE001 - a malformed name must not break verification
        return None
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return value


async def _verify_one(emb, vc_kwargs: dict) -> tuple[dict, list[str]]:
    """Validate one embedded signature; returns (facts, problems). Never raises."""
    problems: list[str] = []
    facts: dict[str, Any] = {"intact": False, "trusted": False, "ok": False}
    try:
        facts["field_name"] = emb.field_name
        sig_obj = emb.sig_object
        facts["reason"] = sig_obj.get("/Reason")
        facts["location"] = sig_obj.get("/Location")
    except Exception:  # noqa: BLE001
        pass
    vc = ValidationContext(**vc_kwargs)
    try:
        status = await async_validate_pdf_signature(emb, signer_validation_context=vc)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises on several kinds of damage
        problems.append(f"signature could not be validated: {type(exc).__name__}: {exc}")
        return facts, problems
    finally:
        with contextlib.suppress(Exception):  # closing the validation context must not mask the result
            await vc.aclose()

    facts["intact"] = bool(status.intact and status.valid)
    facts["trusted"] = bool(status.trusted)
    cert = status.signing_cert
    facts["signer"] = _name_part(cert, "common_name")
    facts["signer_organisation"] = _name_part(cert, "organization_name")
    facts["signing_time"] = _utc_iso(status.signer_reported_dt)
    coverage = status.coverage
    facts["coverage"] = coverage.name.lower() if coverage is not None else "unclear"
    facts["covers_entire_file"] = coverage == SignatureCoverageLevel.ENTIRE_FILE
    level = status.modification_level

    if not status.intact:
        problems.append("the document was altered after signing (digest mismatch)")
    elif not status.valid:
        problems.append("the signature value does not verify against the signer's certificate")
    if not status.trusted:
        why = status.trust_problem_indic.standard_name if status.trust_problem_indic is not None else "no path"
        if status.revocation_details is not None:
            problems.append(
                f"the signer's certificate is revoked ({status.revocation_details.revocation_reason.native})"
            )
        else:
            problems.append(f"the signer's certificate does not chain to a trusted root ({why})")
    changes_ok = coverage == SignatureCoverageLevel.ENTIRE_FILE or (
        coverage == SignatureCoverageLevel.ENTIRE_REVISION
        and level is not None
        and level <= ModificationLevel.LTA_UPDATES
    )
    if not changes_ok:
        what = level.name if level is not None else "unknown"
        problems.append(
            f"the file was changed after this signature (coverage {facts['coverage']}, modifications {what})"
        )
    facts["ok"] = facts["intact"] and facts["trusted"] and changes_ok and status.bottom_line
    if facts["intact"] and facts["trusted"] and changes_ok and not status.bottom_line:
        problems.append("pyHanko's overall judgement is negative (seed value or DocMDP constraints)")
    return facts, problems


async def async_verify_pdf(
    pdf_bytes: bytes,
    *,
    trust_roots: Sequence[PathLike],
    crl_paths: Sequence[PathLike] = (),
) -> PdfVerification:
    """See :func:`verify_pdf`."""
    try:
        roots = _load_certs(trust_roots)
        extra_crls = _load_crls(crl_paths)
    except Exception as exc:  # noqa: BLE001
        return _invalid(f"cannot load trust roots or CRLs: {exc}")
    if not isinstance(pdf_bytes, (bytes, bytearray)) or not pdf_bytes:
        return _invalid("empty input, not a PDF")
    try:
        reader = PdfFileReader(BytesIO(bytes(pdf_bytes)))
        embedded = list(reader.embedded_regular_signatures)
    except Exception as exc:  # noqa: BLE001 - garbage in, a reason out
        return _invalid(f"not a readable PDF ({type(exc).__name__}: {exc})")
    if not embedded:
        return _invalid("the PDF carries no signature")

    vc_kwargs: dict[str, Any] = {
        "trust_roots": roots,  # a list, never None: no fallback to the OS trust store
        "allow_fetching": False,
        "revocation_mode": "soft-fail",
        "crls": list(extra_crls),
        "ocsps": [],
        "other_certs": [],
    }
    revinfo_embedded = False
    try:
        dss = DocumentSecurityStore.read_dss(reader)
        dss_vc = dss.as_validation_context({"trust_roots": []})  # only to parse the CRLs/OCSPs
        dss_crls = list(dss_vc.crls)
        dss_ocsps = list(dss_vc.ocsps)
        vc_kwargs["crls"] += dss_crls
        vc_kwargs["ocsps"] += dss_ocsps
        vc_kwargs["other_certs"] = list(dss.load_certs())
        revinfo_embedded = bool(dss_crls or dss_ocsps)
    except NoDSSFoundError:
        pass
    except Exception as exc:  # noqa: BLE001
        logger.info("ignoring an unreadable DSS: %s", exc)

    # Revocation: when any CRL/OCSP data is known (embedded in the DSS or given), the signer's status
    # must be established from it; a revoked certificate then fails. Without any, it is not checked.
    revocation_checked = bool(vc_kwargs["crls"] or vc_kwargs["ocsps"])
    vc_kwargs["revocation_mode"] = "require" if revocation_checked else "soft-fail"

    results = [await _verify_one(emb, vc_kwargs) for emb in embedded]
    problems: list[str] = []
    for i, (_, probs) in enumerate(results):
        prefix = f"signature {i + 1} ({results[i][0].get('field_name') or '?'}): " if len(results) > 1 else ""
        problems += [prefix + p for p in probs]
    facts = results[0][0]
    last = results[-1][0]
    intact = all(f["intact"] for f, _ in results)
    trusted = all(f["trusted"] for f, _ in results)
    valid = all(f["ok"] for f, _ in results)
    if not roots:
        problems.append("no trust roots were given")
    if valid:
        summary = (
            f"VALID: signed by {facts.get('signer')} ({facts.get('signer_organisation')}) at "
            f"{facts.get('signing_time')}; the signature covers "
            + (
                "the entire file"
                if last.get("covers_entire_file")
                else "the signed revision; only validation data was added after it"
            )
            + "; the certificate chains to a trusted root"
            + (
                "; not revoked per "
                + ("the embedded CRL" if revinfo_embedded else "the given CRL")
                + (" and the given CRL" if revinfo_embedded and extra_crls else "")
                if revocation_checked
                else "; revocation not checked (no CRL)"
            )
            + "."
        )
    else:
        summary = "INVALID: " + ("; ".join(problems) if problems else "unknown problem")
    return PdfVerification(
        valid=valid,
        intact=intact,
        trusted=trusted,
        signer=facts.get("signer"),
        signer_organisation=facts.get("signer_organisation"),
        signing_time=facts.get("signing_time"),
        signature_count=len(embedded),
        coverage=last.get("coverage", "unclear"),
        covers_entire_file=bool(last.get("covers_entire_file")),
        revocation_info_embedded=revinfo_embedded,
        revocation_checked=revocation_checked,
        field_name=facts.get("field_name"),
        reason=facts.get("reason"),
        location=facts.get("location"),
        summary=summary,
        problems=tuple(problems),
    )


def verify_pdf(
    pdf_bytes: bytes,
    *,
    trust_roots: Sequence[PathLike],
    crl_paths: Sequence[PathLike] = (),
) -> PdfVerification:
    """Verify every signature in a PDF offline against ``trust_roots`` (PEM/DER CA certificates).

    CRLs come from the file's DSS and ``crl_paths``; nothing is fetched. Never raises on a bad file:
    unsigned, tampered, untrusted or unreadable input gives ``valid=False`` with ``problems``.
    ``valid`` = every signature intact and trusted and nothing but validation data (DSS) added after
    the last one. Signer, time and field describe the first signature, coverage the last.
    """
    try:
        return _run_sync(lambda: async_verify_pdf(pdf_bytes, trust_roots=trust_roots, crl_paths=crl_paths))
    except Exception as exc:  # noqa: BLE001 - the contract is: never raise on a bad file
        return _invalid(f"verification failed unexpectedly ({type(exc).__name__}: {exc})")
