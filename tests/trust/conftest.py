"""Fixtures for the trust library: an internal CA, a second unrelated CA, a small signed PDF.

No database: these tests use plain functions only.
"""

from datetime import UTC, datetime

import pytest

from trust import create_internal_ca, sign_pdf

SIGNING_TIME = datetime(2026, 11, 5, 12, 30, 15, tzinfo=UTC)

DOSSIER_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Release dossier</title>
<style>@page { size: A4; margin: 2cm } body { font-family: sans-serif }</style></head>
<body><h1>Release dossier R-42</h1><p>Candidate artifact sha256 0123abcd…</p>
<table>{rows}</table></body></html>"""


def render_pdf(rows: int = 20) -> bytes:
    from weasyprint import HTML

    body = "".join(f"<tr><td>{i}</td><td>metric {i}</td><td>{i / 7:.4f}</td></tr>" for i in range(rows))
    return HTML(string=DOSSIER_HTML.replace("{rows}", body)).write_pdf()


@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    return create_internal_ca(tmp_path_factory.mktemp("ca"), "SafeShrink Test Org")


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory):
    return create_internal_ca(tmp_path_factory.mktemp("other-ca"), "Somebody Else")


@pytest.fixture(scope="session")
def unsigned_pdf() -> bytes:
    return render_pdf()


@pytest.fixture(scope="session")
def signed_pdf(ca, unsigned_pdf) -> bytes:
    return sign_pdf(
        unsigned_pdf,
        signer_key_path=ca.signer_key,
        signer_cert_path=ca.signer_cert,
        chain_paths=[ca.ca_cert],
        crl_paths=[ca.crl_pem],
        reason="SafeShrink release dossier",
        location="SafeShrink test suite",
        signing_time=SIGNING_TIME,
    )
