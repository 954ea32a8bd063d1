"""Engineers' signing keys and signed provenance on external runs: a statement signed with the owner's registered
key is verified; one that does not verify is kept and flagged with the reason; what is not a DSSE envelope with an
in-toto Statement is a 400 that stores nothing."""

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ec import SECP256K1, SECP256R1, generate_private_key

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ledger.models import LedgerEvent
from tracking.models import EngineerKey, ExternalRunProvenance
from tracking.services.provenance import engineer_key_register, external_run_attach_provenance
from trust.canonical import digest
from trust.dsse import dsse_sign, dsse_sign_json
from trust.keys import key_id

from .conftest import new_key, statement

pytestmark = pytest.mark.django_db


def test_register_a_key_as_pem_or_raw_base64_idempotently(world):
    private, pem = new_key()
    key, created = engineer_key_register(actor=world["eve"], public_key=pem, name="laptop")
    assert created and key.key_id == key_id(private) and key.owner == world["eve"]
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    again, created_again = engineer_key_register(actor=world["eve"], public_key=base64.b64encode(raw).decode())
    assert (again.pk, created_again) == (key.pk, False)
    events = LedgerEvent.objects.filter(action="engineer_key.registered")
    assert [json.loads(e.payload_json) for e in events] == [{"key_id": key.key_id, "name": "laptop"}]
    with pytest.raises(Conflict) as caught:  # the same public key cannot belong to two people
        engineer_key_register(actor=world["oscar"], public_key=pem)
    assert caught.value.code == "key_registered" and "public_key" in caught.value.details


@pytest.mark.parametrize(
    "public_key",
    [
        "",
        "not a key",
        base64.b64encode(b"x" * 31).decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        generate_private_key(SECP256K1())  # an elliptic curve that model signing does not verify
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    ],
)
def test_a_key_that_is_neither_ed25519_nor_a_model_signing_curve_is_refused(world, public_key):
    with pytest.raises(ValidationFailed) as caught:
        engineer_key_register(actor=world["eve"], public_key=public_key)
    assert caught.value.code == "invalid_key" and "public_key" in caught.value.details
    assert EngineerKey.objects.count() == 0 and not LedgerEvent.objects.filter(action="engineer_key.registered")


def test_an_ec_p256_key_for_model_signing_is_registered_under_the_hint_model_signing_writes(world):
    pem = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key, created = engineer_key_register(actor=world["eve"], public_key=pem, name="signing")
    assert created and key.key_id == hashlib.sha256(pem.encode()).hexdigest()
    assert key.public_key == pem


def test_only_engineers_register_keys(world):
    with pytest.raises(PermissionDenied):
        engineer_key_register(actor=world["officer"], public_key=new_key()[1])


def test_a_statement_signed_with_the_owner_s_key_is_verified(world, eve_run):
    private, pem = new_key()
    key, _ = engineer_key_register(actor=world["eve"], public_key=pem)
    signed = dsse_sign_json(statement(), private)
    record = external_run_attach_provenance(actor=world["eve"], run_id=eve_run.pk, envelope=signed)
    assert record.signature_verified and record.signing_key == key and record.key_id == key.key_id
    assert record.statement == statement() and record.verification_reason == ""
    [event] = LedgerEvent.objects.filter(action="external_run.provenance_attached")
    assert json.loads(event.payload_json) == {
        "run_uuid": eve_run.run_uuid,
        "provenance": record.pk,
        "envelope_digest": digest(signed),
        "statement_digest": digest(statement()),
        "signature_verified": True,
        "key_id": key.key_id,
        "reason": "",
    }


def test_keyid_is_a_hint_the_signing_key_decides(world, eve_run):
    private, pem = new_key()
    engineer_key_register(actor=world["eve"], public_key=pem)
    signed = dsse_sign_json(statement(), private)
    signed["signatures"][0]["keyid"] = "my-laptop-key"  # a tool's own key naming
    assert external_run_attach_provenance(actor=world["eve"], run_id=eve_run.pk, envelope=signed).signature_verified


def _flagged(world, run, envelope, reason_words):
    record = external_run_attach_provenance(actor=world["eve"], run_id=run.pk, envelope=envelope)
    assert record.signature_verified is False and record.key_id == "" and record.signing_key is None
    assert reason_words in record.verification_reason, record.verification_reason
    event = LedgerEvent.objects.filter(action="external_run.provenance_attached").latest("id")
    assert json.loads(event.payload_json)["signature_verified"] is False
    return record


def test_a_signature_that_does_not_verify_is_stored_and_flagged(world, eve_run):
    private, pem = new_key()
    _flagged(world, eve_run, dsse_sign_json(statement(), private), "registered no signing key")
    engineer_key_register(actor=world["eve"], public_key=pem)

    tampered = dsse_sign_json(statement(), private)
    tampered["payload"] = base64.b64encode(json.dumps(statement("f" * 64)).encode()).decode()
    _flagged(world, eve_run, tampered, "No signature verifies")

    stranger, _ = new_key()  # signed by a key eve never registered
    _flagged(world, eve_run, dsse_sign_json(statement(), stranger), key_id(stranger)[:16])

    oscar_private, oscar_pem = new_key()  # signed by another engineer's registered key: not the owner's
    engineer_key_register(actor=world["oscar"], public_key=oscar_pem)
    _flagged(world, eve_run, dsse_sign_json(statement(), oscar_private), "No signature verifies")

    garbled = dsse_sign_json(statement(), private)
    garbled["signatures"][0]["sig"] = "!!not base64!!"
    _flagged(world, eve_run, garbled, "No signature verifies")
    assert ExternalRunProvenance.objects.filter(run=eve_run, signature_verified=False).count() == 5


def _payload(value) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: "envelope", "envelope"),
        (lambda e: {**e, "payloadType": "application/json"}, "envelope.payloadType"),
        (lambda e: {k: v for k, v in e.items() if k != "payload"}, "envelope.payload"),
        (lambda e: {**e, "payload": "***"}, "envelope.payload"),
        (lambda e: {**e, "payload": _payload(b"\xff\xfe")}, "envelope.payload"),
        (lambda e: {**e, "payload": _payload(b"not json")}, "envelope.payload"),
        (lambda e: {**e, "payload": _payload({"predicate": {}})}, "envelope.payload"),
        (
            lambda e: {**e, "payload": _payload(b'{"_type": "https://in-toto.io/Statement/v1", "x": NaN}')},
            "envelope.payload",
        ),
        (lambda e: {**e, "signatures": []}, "envelope.signatures"),
        (lambda e: {**e, "signatures": [{"keyid": "k"}]}, "envelope.signatures[0]"),
        (lambda e: {**e, "signatures": [{"sig": "AA==", "keyid": 5}]}, "envelope.signatures[0].keyid"),
    ],
)
def test_what_is_not_a_provenance_statement_is_400_and_nothing_is_stored(world, eve_run, change, field):
    private, pem = new_key()
    engineer_key_register(actor=world["eve"], public_key=pem)
    envelope = change(dsse_sign(json.dumps(statement()).encode(), "application/vnd.in-toto+json", private))
    with pytest.raises(ValidationFailed) as caught:
        external_run_attach_provenance(actor=world["eve"], run_id=eve_run.pk, envelope=envelope)
    assert caught.value.code == "invalid_envelope" and list(caught.value.details) == [field]
    assert ExternalRunProvenance.objects.count() == 0
    assert not LedgerEvent.objects.filter(action="external_run.provenance_attached").exists()


def test_only_the_owner_attaches_provenance(world, eve_run):
    private, pem = new_key()
    engineer_key_register(actor=world["oscar"], public_key=pem)
    signed = dsse_sign_json(statement(), private)
    with pytest.raises(NotFound):
        external_run_attach_provenance(actor=world["oscar"], run_id=eve_run.pk, envelope=signed)
    with pytest.raises(PermissionDenied):
        external_run_attach_provenance(actor=world["admin"], run_id=eve_run.pk, envelope=signed)
    assert ExternalRunProvenance.objects.count() == 0
