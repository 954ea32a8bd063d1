"""SafeShrink trust primitives: plain functions and frozen dataclasses, no Django.

- :mod:`trust.keys`: the Ed25519 system key (generate, load, key id, sign, verify).
- :mod:`trust.dsse`: DSSE envelopes for in-toto provenance statements and JSON evidence bundles.
- :mod:`trust.checkpoints`: signed audit-ledger checkpoints (seq, head hash, time, key id) and an
  RFC 6962 Merkle root for batching hashes.
- :mod:`trust.ca`: an internal CA with a document-signing certificate and an empty CRL, for offline
  PDF signature validation.
- :mod:`trust.pades`: PAdES signing of dossier PDFs and offline verification (pyHanko).

Nothing here touches the network: no revocation fetching, no timestamp authority.
See ``trust/VERIFYING.md`` for how a third party verifies our signatures with independent tools.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the types, for checkers; at run time each name loads with its submodule (below)
    from .ca import CaExistsError, CaFiles, create_internal_ca
    from .checkpoints import checkpoint_sign, checkpoint_verify, merkle_root
    from .dsse import (
        INTOTO_PAYLOAD_TYPE,
        SignatureInvalid,
        dsse_sign,
        dsse_sign_json,
        dsse_verify,
        dsse_verify_json,
    )
    from .keys import generate_ed25519, key_id, load_private, load_public, sign, verify
    from .pades import PdfVerification, async_sign_pdf, async_verify_pdf, sign_pdf, verify_pdf

# Names exported here, and the submodule each lives in. They load on first use (PEP 562), so importing
# `trust.canonical` (the engines do) pulls in neither cryptography nor pyHanko.
_EXPORTS = {
    "CaExistsError": "ca",
    "CaFiles": "ca",
    "create_internal_ca": "ca",
    "checkpoint_sign": "checkpoints",
    "checkpoint_verify": "checkpoints",
    "merkle_root": "checkpoints",
    "INTOTO_PAYLOAD_TYPE": "dsse",
    "SignatureInvalid": "dsse",
    "dsse_sign": "dsse",
    "dsse_sign_json": "dsse",
    "dsse_verify": "dsse",
    "dsse_verify_json": "dsse",
    "generate_ed25519": "keys",
    "key_id": "keys",
    "load_private": "keys",
    "load_public": "keys",
    "sign": "keys",
    "verify": "keys",
    "PdfVerification": "pades",
    "async_sign_pdf": "pades",
    "async_verify_pdf": "pades",
    "sign_pdf": "pades",
    "verify_pdf": "pades",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trust' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "CaExistsError",
    "CaFiles",
    "PdfVerification",
    "SignatureInvalid",
    "async_sign_pdf",
    "async_verify_pdf",
    "checkpoint_sign",
    "checkpoint_verify",
    "create_internal_ca",
    "dsse_sign",
    "dsse_sign_json",
    "dsse_verify",
    "dsse_verify_json",
    "generate_ed25519",
    "key_id",
    "load_private",
    "load_public",
    "merkle_root",
    "sign",
    "sign_pdf",
    "verify",
    "verify_pdf",
]
