"""Ledger checkpoints (signed (seq, head hash, time, key id)) and an RFC 6962 Merkle root.

A checkpoint is a JSON object::

    {"type": "safeshrink.ledger.checkpoint/v1", "seq": 42, "head_hash": "<64 hex>",
     "at": "2026-11-05T12:00:00.000000Z", "key_id": "<64 hex>", "signature": "<base64>"}

The signature is Ed25519 over the canonical JSON (sorted keys, no whitespace, UTF-8) of every field
except ``signature``. ``type`` separates checkpoint signatures from anything else the system key
signs. ``key_id`` is :func:`trust.keys.key_id` of the signing key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_bytes
from .keys import key_id, public_of
from .keys import verify as _ed25519_verify

__all__ = [
    "CHECKPOINT_TYPE",
    "checkpoint_body",
    "checkpoint_sign",
    "checkpoint_verify",
    "format_time",
    "merkle_root",
]

CHECKPOINT_TYPE = "safeshrink.ledger.checkpoint/v1"
_FIELDS = ("type", "seq", "head_hash", "at", "key_id")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def format_time(at: datetime | str) -> str:
    """ISO 8601 UTC with microseconds and a 'Z': ``2026-11-05T12:00:00.000000Z``.

    Naive datetimes are refused (ambiguous); strings are parsed and normalised.
    """
    if isinstance(at, str):
        at = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if not isinstance(at, datetime):
        raise TypeError("at must be a datetime or an ISO 8601 string")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware (UTC)")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_body(checkpoint: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed: canonical JSON of every field but ``signature``."""
    return canonical_bytes({k: checkpoint[k] for k in _FIELDS})


def checkpoint_sign(seq: int, head_hash: str, at: datetime | str | None, private: Ed25519PrivateKey) -> dict:
    """Sign (seq, head_hash, at, key id) with the system key; ``at`` None means now."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError("seq must be a non-negative integer")
    if not isinstance(head_hash, str) or not _HEX64.match(head_hash):
        raise ValueError("head_hash must be 64 lowercase hex characters (sha256)")
    checkpoint: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "seq": seq,
        "head_hash": head_hash,
        "at": format_time(at if at is not None else datetime.now(UTC)),
        "key_id": key_id(private),
    }
    checkpoint["signature"] = base64.b64encode(private.sign(checkpoint_body(checkpoint))).decode("ascii")
    return checkpoint


def checkpoint_verify(checkpoint: Mapping[str, Any], public: Ed25519PublicKey) -> bool:
    """True when the checkpoint is well formed, names this key and its signature verifies.

    Never raises on malformed input.
    """
    try:
        if not isinstance(checkpoint, Mapping) or set(checkpoint) != set(_FIELDS) | {"signature"}:
            return False
        seq, head, at = checkpoint["seq"], checkpoint["head_hash"], checkpoint["at"]
        if checkpoint["type"] != CHECKPOINT_TYPE:
            return False
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            return False
        if not isinstance(head, str) or not _HEX64.match(head):
            return False
        if not isinstance(at, str) or not _TIME.match(at):
            return False
        public = public_of(public)
        if checkpoint["key_id"] != key_id(public):
            return False
        signature = base64.b64decode(checkpoint["signature"], validate=True)
        return _ed25519_verify(public, checkpoint_body(checkpoint), signature)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return False


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 1:
        return _leaf(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def merkle_root(hashes: list[str]) -> str:
    """RFC 6962 Merkle Tree Hash over hex-encoded leaves (each leaf's bytes = bytes.fromhex(h)).

    leaf = sha256(0x00 || leaf bytes), node = sha256(0x01 || left || right), split at the largest
    power of two below n; the empty tree's root is sha256(b""). Returns lowercase hex.
    """
    if not hashes:
        return hashlib.sha256(b"").hexdigest()
    try:
        leaves = [bytes.fromhex(h) for h in hashes]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"merkle_root expects hex strings ({exc})") from None
    return _mth(leaves).hex()
