"""Engineers' own signing keys, and signed provenance statements attached to external runs.

An engineer registers their Ed25519 public key (`engineer_key_register`), then attaches to one of their external
runs a provenance statement: an in-toto Statement in a DSSE envelope signed with that key
(`external_run_attach_provenance`). SafeShrink checks the envelope's signature against the keys the run's owner
registered (trust.dsse, the same verifier as for SafeShrink's own envelopes) and records `signature_verified` and
the key that verified it.

**Choice: a signature that does not verify is stored, marked `signature_verified: false` with the reason, not
refused.** That someone attached a statement that does not verify is itself a fact worth keeping (it is in the
ledger either way), and every output shows the flag beside the statement. What is refused (400
`invalid_envelope`, nothing stored) is what is not a provenance statement at all: an envelope without
payloadType/payload/signatures, a payload that is not base64 of a UTF-8 JSON in-toto Statement, another
payloadType. A verified signature says the registered key signed the statement, not that its claims are true:
the run stays `reported`.

DSSE's `keyid` is an unauthenticated hint (DSSE spec), so each signature is tried against every key of the owner,
whatever key id the signer's tool wrote; the key id recorded is the one of the key that verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import transaction

from accounts.errors import Conflict, PermissionDenied, ValidationFailed
from accounts.models import Role
from ledger.services import ledger_append
from tracking.error_codes import TrackingErrorCode
from tracking.models import EngineerKey, ExternalRunProvenance
from trust.canonical import digest
from trust.dsse import INTOTO_PAYLOAD_TYPE, SignatureInvalid, dsse_verify
from trust.keys import key_id as ed25519_key_id

from .runs import OBJECT_TYPE as RUN_OBJECT_TYPE
from .runs import run_for_writing

STATEMENT_TYPE_PREFIX = "https://in-toto.io/Statement/"
MAX_SIGNATURES = 16
MAX_PAYLOAD_CHARS = 1024 * 1024
_BASE64 = re.compile(r"^[A-Za-z0-9+/\-_]*={0,2}$")


def engineer_key_register(*, actor, public_key: Any, name: str = "") -> tuple[EngineerKey, bool]:
    """Register the actor's Ed25519 public key (PEM SubjectPublicKeyInfo, or base64 of the 32 raw bytes).
    Registering the same key again returns it (created False); a key another user registered is 409."""
    if actor.role not in (Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only engineers register signing keys.")
    if not isinstance(name, str) or len(name) > 200:
        raise ValidationFailed("name is too long.", details={"name": ["At most 200 characters."]})
    key = parse_public_key(public_key)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    # Ed25519: sha256 of the 32 raw bytes (as before); EC: sha256 of the PEM, the `publicKey.hint` that
    # model_signing writes into its bundles (trust.model_signing.key_fingerprint).
    kid = ed25519_key_id(key) if isinstance(key, Ed25519PublicKey) else hashlib.sha256(pem.encode()).hexdigest()
    with transaction.atomic():
        existing = EngineerKey.objects.select_for_update().filter(key_id=kid).first()
        if existing is not None:
            if existing.owner_id != actor.pk:
                raise Conflict(
                    "This public key is registered by another user.",
                    code=TrackingErrorCode.KEY_REGISTERED,
                    details={"public_key": [f"Key {kid[:16]}… belongs to someone else."]},
                )
            return existing, False
        registered = EngineerKey.objects.create(owner=actor, key_id=kid, public_key=pem, name=name)
        ledger_append(
            actor=actor,
            action="engineer_key.registered",
            object_type="engineer_key",
            object_id=registered.pk,
            payload={"key_id": kid, "name": name},
        )
    return registered, True


EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")  # those OpenSSF model signing (model_signing) verifies


def parse_public_key(value: Any) -> Ed25519PublicKey | EllipticCurvePublicKey:
    """An Ed25519 public key from PEM or from base64 of its 32 raw bytes (DSSE provenance), or an elliptic-curve
    P-256/P-384/P-521 public key as PEM (OpenSSF model-signing signatures of uploaded models); 400 `invalid_key`
    otherwise."""

    def refuse(why: str) -> ValidationFailed:
        return ValidationFailed(
            f"Not an Ed25519 or EC P-256/P-384/P-521 public key: {why}",
            code=TrackingErrorCode.INVALID_KEY,
            details={"public_key": [why]},
        )

    if not isinstance(value, str) or not value.strip():
        raise refuse("Give a PEM public key or base64 of the 32 raw key bytes.")
    text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii", "replace"))
        except (ValueError, TypeError) as exc:
            raise refuse(f"PEM that does not parse ({exc}).") from None
        if isinstance(key, EllipticCurvePublicKey) and key.curve.name in EC_CURVES:
            return key
        if not isinstance(key, Ed25519PublicKey):
            raise refuse(f"PEM holds a {type(key).__name__.lstrip('_')}, not an Ed25519 or EC P-256/384/521 key.")
        return key
    raw = _b64decode(text)
    if raw is None or len(raw) != 32:
        raise refuse("Base64 that does not decode to 32 bytes.")
    return Ed25519PublicKey.from_public_bytes(raw)


def external_run_attach_provenance(*, actor, run_id: int, envelope: Any) -> ExternalRunProvenance:
    """Attach a DSSE-signed in-toto Statement to the actor's external run (running or ended) and record whether
    its signature verifies under a key the run's owner registered."""
    with transaction.atomic():
        run = run_for_writing(actor, run_id)
        statement = _statement(envelope)
        keys = list(EngineerKey.objects.filter(owner_id=run.experiment.owner_id).order_by("id"))
        verified_key, reason = _verify(envelope, keys, run.experiment.owner.get_username())
        record = ExternalRunProvenance.objects.create(
            run=run,
            attached_by=actor,
            envelope=dict(envelope),
            envelope_digest=digest(envelope),
            payload_type=envelope["payloadType"],
            statement=statement,
            signature_verified=verified_key is not None,
            signing_key=verified_key,
            key_id=verified_key.key_id if verified_key else "",
            verification_reason=reason,
        )
        ledger_append(
            actor=actor,
            action="external_run.provenance_attached",
            object_type=RUN_OBJECT_TYPE,
            object_id=run.pk,
            payload={
                "run_uuid": run.run_uuid,
                "provenance": record.pk,
                "envelope_digest": record.envelope_digest,
                "statement_digest": digest(statement),
                "signature_verified": record.signature_verified,
                "key_id": record.key_id,
                "reason": reason,
            },
        )
    return record


def _statement(envelope: Any) -> dict:
    """The envelope's in-toto Statement; 400 `invalid_envelope` naming the field when it is not one."""

    def refuse(field: str, why: str) -> ValidationFailed:
        return ValidationFailed(
            f"Not a DSSE envelope with an in-toto Statement: {field}: {why}",
            code=TrackingErrorCode.INVALID_ENVELOPE,
            details={field: [why]},
        )

    if not isinstance(envelope, Mapping):
        raise refuse("envelope", "Must be a DSSE envelope object {payloadType, payload, signatures}.")
    payload_type, payload, signatures = (envelope.get(k) for k in ("payloadType", "payload", "signatures"))
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise refuse("envelope.payloadType", f"Must be {INTOTO_PAYLOAD_TYPE!r}.")
    if not isinstance(signatures, list) or not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise refuse("envelope.signatures", f"A list of 1 to {MAX_SIGNATURES} signatures.")
    for i, entry in enumerate(signatures):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("sig"), str):
            raise refuse(f"envelope.signatures[{i}]", "Must be an object with 'sig' (and optionally 'keyid').")
        if not isinstance(entry.get("keyid", ""), str):
            raise refuse(f"envelope.signatures[{i}].keyid", "Must be a string.")
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS:
        raise refuse("envelope.payload", f"Base64 text of at most {MAX_PAYLOAD_CHARS} characters.")
    body = _b64decode(payload)
    if body is None:
        raise refuse("envelope.payload", "Not base64.")
    try:
        statement = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise refuse("envelope.payload", "Does not decode to UTF-8 JSON.") from None
    if not isinstance(statement, dict) or not str(statement.get("_type", "")).startswith(STATEMENT_TYPE_PREFIX):
        raise refuse("envelope.payload", f"Must be an in-toto Statement (_type {STATEMENT_TYPE_PREFIX}…).")
    try:
        digest(statement)
    except ValueError:  # NaN or an infinity in the statement: not JSON that can be digested
        raise refuse("envelope.payload", "Holds NaN or an infinity.") from None
    return statement


def _verify(envelope: Mapping, keys: list[EngineerKey], owner: str) -> tuple[EngineerKey | None, str]:
    """The owner's key that verifies a signature of the envelope, or None and why not."""
    if not keys:
        return None, f"{owner} has registered no signing key."
    anonymous = {**envelope, "signatures": [{"sig": s["sig"]} for s in envelope["signatures"]]}
    for key in keys:
        public = serialization.load_pem_public_key(key.public_key.encode())
        if not isinstance(public, Ed25519PublicKey):
            continue  # an EC key: for model-signing signatures of uploads, not DSSE provenance
        try:
            dsse_verify(anonymous, {key.key_id: public}, payload_type=INTOTO_PAYLOAD_TYPE)
        except SignatureInvalid:
            continue
        return key, ""
    claimed = sorted({s.get("keyid") for s in envelope["signatures"] if s.get("keyid")})
    known = {k.key_id for k in keys}
    unknown = [c for c in claimed if c not in known]
    hint = (
        f" The envelope names key id(s) {', '.join(c[:16] + '…' for c in unknown)}, not registered by {owner}."
        if unknown
        else ""
    )
    return None, f"No signature verifies under the {len(keys)} key(s) {owner} registered.{hint}"


def _b64decode(text: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional (as DSSE readers accept); None when it is not base64."""
    if not _BASE64.match(text):
        return None
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
