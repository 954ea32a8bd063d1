"""Signed checkpoints and writer signatures: a checkpoint at the end of every sealing batch leaves no
unprotected tail, and verify_ledger names the first event whose content or link changed, even when
the chain after it was re-hashed."""

import pytest
from django.db import DatabaseError, connection, transaction

from ledger.canonical import sha256_hex
from ledger.models import Checkpoint, LedgerEvent, chain_hash
from ledger.services import checkpoint_latest_covering, ledger_append, ledger_seal
from ledger.verification import ledger_verify
from tests.conftest import require_service
from tests.ledger.test_ledger import _raw

pytestmark = pytest.mark.django_db


def _append(n: int, start: int = 0) -> None:
    """n events, then one sealing batch (these tests are not transactional: on_commit hooks do not run)."""
    for i in range(start, start + n):
        with transaction.atomic():
            ledger_append(actor=None, action="run.requested", object_type="run", object_id=i, payload={"i": i})
    ledger_seal()


def _rechain(from_seq: int, edit=None) -> None:
    """Rewrite events from `from_seq` to the head with freshly computed hashes (as someone with the
    table's owner rights could), applying `edit(event)` to each first: the chain itself stays consistent."""
    events = list(LedgerEvent.objects.order_by("seq"))
    prev = events[from_seq - 2].hash if from_seq > 1 else "0" * 64
    for event in events[from_seq - 1 :]:
        if edit:
            edit(event)
        event.prev_hash = prev
        event.hash = prev = chain_hash(prev, event.hashed_fields())
    _raw("UPDATE ledger_ledgerevent SET hash = NULL WHERE seq >= %s", [from_seq])  # unique(hash) while swapping
    for event in events[from_seq - 1 :]:
        _raw(
            "UPDATE ledger_ledgerevent SET occurred_at=%s, payload_json=%s, state_digest=%s, object_id=%s, "
            "signature=%s, prev_hash=%s, hash=%s WHERE id=%s",
            [
                event.occurred_at,
                event.payload_json,
                event.state_digest,
                event.object_id,
                event.signature,
                event.prev_hash,
                event.hash,
                event.pk,
            ],
        )


def _forge_payload(event) -> None:
    event.payload_json = '{"i":-1}'
    event.state_digest = sha256_hex(event.payload_json)


def test_a_checkpoint_is_signed_at_the_end_of_every_sealing_batch():
    _append(3)
    _append(2, start=3)
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [3, 5]
    head = LedgerEvent.objects.get(seq=5)
    assert Checkpoint.objects.get(seq=5).head_hash == head.hash
    result = ledger_verify()
    assert (result.ok, result.checked, result.checkpoints_checked, result.signatures_checked) == (True, 5, 2, 0)


def test_rewrite_of_the_last_events_with_fresh_hashes_is_named():
    """Before: with a checkpoint every 100 events, events after the last one could be rewritten unseen."""
    _append(12)
    _rechain(11, _forge_payload)
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.bad_checkpoint_seq) == (False, 11, 12)
    assert "writer's signature" in result.reason


def test_deleted_tail_is_detected():
    _append(12)
    _raw("DELETE FROM ledger_ledgerevent WHERE seq >= 11")
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.bad_checkpoint_seq) == (False, 11, 12)
    assert "ends before signed checkpoint 12" in result.reason


def test_chain_rewritten_from_seq_5_is_reported_at_seq_5_not_at_the_checkpoint():
    for batch in range(7):  # checkpoints at 10, 20, ... 70
        _append(10, start=batch * 10)
    _rechain(5, _forge_payload)
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.bad_checkpoint_seq) == (False, 5, 10)


def test_events_swapped_and_rechained_are_named_from_the_last_valid_checkpoint():
    """Swapping two events keeps each one's content (and writer signature) intact: only the link
    changed, so the report names the range after the last checkpoint that still matches."""
    _append(5)
    _append(5, start=5)
    events = {e.seq: e for e in LedgerEvent.objects.all()}
    seven, eight = events[7], events[8]
    columns = ("occurred_at", "payload_json", "state_digest", "object_id", "signature")
    swapped = {7: [getattr(eight, c) for c in columns], 8: [getattr(seven, c) for c in columns]}

    def swap(event) -> None:
        for column, value in zip(columns, swapped.get(event.seq, ()), strict=False):
            setattr(event, column, value)

    _rechain(7, swap)
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.bad_checkpoint_seq) == (False, 6, 10)
    assert "re-linked" in result.reason


def test_forged_checkpoint_signature_is_caught():
    _append(3)
    _append(3, start=3)
    _raw("UPDATE ledger_checkpoint SET head_hash = %s WHERE seq = 3", ["f" * 64])
    result = ledger_verify()
    assert (result.ok, result.bad_checkpoint_seq) == (False, 3)
    assert "invalid signature" in result.reason


def test_full_verification_checks_every_writer_signature():
    _append(4)
    result = ledger_verify(full=True)
    assert (result.ok, result.signatures_checked, result.checkpoints_checked) == (True, 4, 1)


def test_export_checkpoint_is_reused_for_the_same_records():
    _append(7)
    first = checkpoint_latest_covering(7)
    assert first.seq == 7
    _append(1, start=7)
    assert checkpoint_latest_covering(7).pk == first.pk
    assert checkpoint_latest_covering(8).seq == 8


@pytest.mark.postgres
def test_checkpoint_trigger_refuses_with_its_own_message():
    """Before: `record "old" has no field "hash"` for any change to a checkpoint."""
    require_service("postgres")
    _append(2)
    for sql, op in (
        ("UPDATE ledger_checkpoint SET head_hash = 'x'", "UPDATE"),
        ("DELETE FROM ledger_checkpoint", "DELETE"),
    ):
        with (
            pytest.raises(DatabaseError, match=f"ledger checkpoints are append-only: {op} refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
    with (
        pytest.raises(DatabaseError, match="ledger events are append-only: UPDATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE ledger_ledgerevent SET action = 'run.failed' WHERE seq = 1")
    assert Checkpoint.objects.count() == 1 and ledger_verify().ok


def test_row_inserted_without_ledger_append_is_refused_by_the_sealer():
    """Before: a row written straight into the table was sealed and verified OK."""
    _append(2)
    payload = '{"approved":true}'
    forged = LedgerEvent.objects.create(
        occurred_at=LedgerEvent.objects.get(seq=2).occurred_at,
        actor_username="olga",
        actor_role="officer",
        action="release.approved",
        object_type="release",
        object_id="1",
        payload_json=payload,
        state_digest=sha256_hex(payload),
    )
    assert ledger_seal() == 0
    forged.refresh_from_db()
    assert forged.rejected and forged.seq is None
    result = ledger_verify()
    assert (result.ok, result.rejected, result.checked) == (False, 1, 2)
