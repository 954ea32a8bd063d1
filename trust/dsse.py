"""DSSE envelopes (Dead Simple Signing Envelope, https://github.com/secure-systems-lab/dsse).

Signatures are Ed25519 over the Pre-Authentication Encoding

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where LEN is the ASCII decimal byte length. The envelope is
``{"payloadType": ..., "payload": base64(body), "signatures": [{"keyid": ..., "sig": base64(sig)}]}``
(standard base64 with padding when writing; standard or URL-safe accepted when reading, as the spec
asks). Key ids are :func:`trust.keys.key_id` (sha256 hex of the raw public key).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_bytes
from .keys import key_id, public_of
from .keys import verify as _ed25519_verify

__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "SignatureInvalid",
    "pae",
    "dsse_sign",
    "dsse_sign_json",
    "dsse_verify",
    "dsse_verify_json",
]

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class SignatureInvalid(Exception):
    """A signature (DSSE envelope, checkpoint, ...) did not verify. ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_B64_RE = re.compile(r"^[A-Za-z0-9+/\-_]*={0,2}$")


def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not _B64_RE.match(text):
        raise SignatureInvalid(f"{what} is not base64 text")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid(f"{what} is not valid base64 ({exc})") from None


def dsse_sign(payload: bytes, payload_type: str, private_key: Ed25519PrivateKey) -> dict:
    """Sign ``payload`` and return a DSSE envelope (a JSON-ready dict) with one signature."""
    if not isinstance(payload, (bytes, bytearray)):
        raise TypeError("payload must be bytes")
    if not payload_type:
        raise ValueError("payload_type must be a non-empty string")
    payload = bytes(payload)
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": _b64encode(payload),
        "signatures": [{"keyid": key_id(private_key), "sig": _b64encode(signature)}],
    }


def dsse_sign_json(value: Any, private_key: Ed25519PrivateKey, payload_type: str = INTOTO_PAYLOAD_TYPE) -> dict:
    """Sign the canonical JSON of ``value`` (e.g. an in-toto Statement)."""
    return dsse_sign(canonical_bytes(value), payload_type, private_key)


def dsse_verify(
    envelope: Mapping[str, Any],
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    payload_type: str | None = None,
) -> bytes:
    """Verify an envelope and return its payload bytes.

    ``public_keys`` maps key id -> Ed25519 public key (private keys are accepted too). The envelope
    is accepted when at least one signature verifies under one of these keys; a signature whose
    ``keyid`` names a known key is checked with that key only, one with no ``keyid`` is tried against
    every key. With ``payload_type`` given, the envelope's type must equal it. Raises
    :class:`SignatureInvalid` with a reason otherwise.
    """
    if not isinstance(envelope, Mapping):
        raise SignatureInvalid("envelope is not a JSON object")
    for field in ("payloadType", "payload", "signatures"):
        if field not in envelope:
            raise SignatureInvalid(f"envelope has no '{field}'")
    ptype = envelope["payloadType"]
    if not isinstance(ptype, str) or not ptype:
        raise SignatureInvalid("payloadType is not a non-empty string")
    if payload_type is not None and ptype != payload_type:
        raise SignatureInvalid(f"payloadType is {ptype!r}, expected {payload_type!r}")
    payload = _b64decode(envelope["payload"], "payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise SignatureInvalid("envelope has no signatures")
    keys = {kid: public_of(k) for kid, k in public_keys.items()}
    if not keys:
        raise SignatureInvalid("no public keys to verify against")

    message = pae(ptype, payload)
    problems: list[str] = []
    for i, entry in enumerate(signatures):
        if not isinstance(entry, Mapping) or "sig" not in entry:
            problems.append(f"signature {i} is malformed (no 'sig')")
            continue
        try:
            sig = _b64decode(entry["sig"], f"signature {i}")
        except SignatureInvalid as exc:
            problems.append(exc.reason)
            continue
        kid = entry.get("keyid") or ""
        if kid:
            if kid not in keys:
                problems.append(f"signature {i} is by unknown key {kid[:16]}…")
                continue
            candidates = [keys[kid]]
        else:
            candidates = list(keys.values())
        if any(_ed25519_verify(k, message, sig) for k in candidates):
            return payload
        problems.append(
            f"signature {i} does not verify under key {kid[:16]}… (payload or signature altered)"
            if kid
            else f"signature {i} (no keyid) does not verify under any known key"
        )
    raise SignatureInvalid("no valid signature: " + "; ".join(problems))


def dsse_verify_json(
    envelope: Mapping[str, Any],
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    payload_type: str | None = INTOTO_PAYLOAD_TYPE,
) -> Any:
    """:func:`dsse_verify`, then parse the payload as JSON."""
    payload = dsse_verify(envelope, public_keys, payload_type=payload_type)
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureInvalid(f"payload is not UTF-8 JSON ({exc})") from None
