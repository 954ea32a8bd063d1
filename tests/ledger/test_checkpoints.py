"""Signed checkpoints catch what the hash chain alone cannot: a tail rewritten with fresh hashes,
and events removed from the end."""

import pytest
from django.db import transaction

from ledger.canonical import sha256_hex
from ledger.models import Checkpoint, LedgerEvent, chain_hash
from ledger.services import checkpoint_latest_covering, ledger_append, ledger_seal, ledger_verify
from tests.ledger.test_ledger import _raw

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _every_five(settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "CHECKPOINT_EVERY": 5}


def _append(n: int) -> None:
    for i in range(n):
        with transaction.atomic():
            ledger_append(actor=None, action="run.requested", object_type="run", object_id=i, payload={"i": i})
    ledger_seal()


def test_checkpoints_are_signed_every_n_events_and_verified():
    _append(12)
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [5, 10]
    result = ledger_verify()
    assert (result.ok, result.checked, result.checkpoints_checked) == (True, 12, 2)


def test_rewritten_tail_with_fresh_hashes_is_caught_by_the_checkpoint():
    _append(12)
    # Rewrite events 7..12 consistently: new payloads, new digests, a recomputed chain.
    events = list(LedgerEvent.objects.order_by("seq"))
    prev = events[5].hash
    for event in events[6:]:
        event.payload_json = '{"i":-1}'
        event.state_digest = sha256_hex(event.payload_json)
        event.prev_hash = prev
        event.hash = chain_hash(prev, event.hashed_fields())
        _raw("UPDATE ledger_ledgerevent SET payload_json=%s, state_digest=%s, prev_hash=%s, hash=%s WHERE seq=%s",
             [event.payload_json, event.state_digest, event.prev_hash, event.hash, event.seq])
        prev = event.hash
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.bad_checkpoint_seq) == (False, 10, 10)
    assert "no longer matches" in result.reason


def test_removed_tail_is_caught():
    _append(12)
    _raw("DELETE FROM ledger_ledgerevent WHERE seq >= 9")
    result = ledger_verify()
    assert (result.ok, result.bad_checkpoint_seq) == (False, 10)
    assert "ends before signed checkpoint 10" in result.reason


def test_forged_checkpoint_signature_is_caught():
    _append(6)
    _raw("UPDATE ledger_checkpoint SET head_hash = %s WHERE seq = 5", ["f" * 64])
    result = ledger_verify()
    assert (result.ok, result.bad_checkpoint_seq) == (False, 5)
    assert "invalid signature" in result.reason


def test_export_checkpoint_is_reused_for_the_same_records():
    _append(7)
    first = checkpoint_latest_covering(7)
    assert first.seq == 7
    _append(1)
    assert checkpoint_latest_covering(7).pk == first.pk
    assert checkpoint_latest_covering(8).seq == 8
