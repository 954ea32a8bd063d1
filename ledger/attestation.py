"""Checking what vouches for ledger events: writers' Ed25519 signatures and signed checkpoints.
Used by the sealer (`ledger.services`) before it signs a checkpoint, and by `ledger.verification`."""

import base64
import binascii
import datetime as dt

from cryptography.exceptions import InvalidSignature

from .models import WRITTEN_FIELDS, Checkpoint, LedgerEvent, event_fields, signed_message


def signature_ok(fields: dict, signature: str, public) -> bool:
    if not signature:
        return False
    try:
        public.verify(base64.b64decode(signature, validate=True), signed_message(fields))
        return True
    except (ValueError, binascii.Error, InvalidSignature):
        return False


_SIGNED_COLUMNS = ("id", "seq", *WRITTEN_FIELDS)


def first_signature_failure(after_seq: int, to_seq: int, public, counter: list[int] | None = None):
    """(seq, reason) of the first sealed event in (after_seq, to_seq] whose content does not match its
    writer's signature, or None. Events sealed before writer signatures existed (migration 0003: no
    signature, and inserted before the first signed event) are not judged by this."""
    if to_seq <= after_seq:
        return None
    first_signed_id: int | None = None
    rows = LedgerEvent.objects.filter(seq__gt=after_seq, seq__lte=to_seq).order_by("seq").values_list(*_SIGNED_COLUMNS)
    for pk, seq, occurred_at, *content, signature in rows.iterator(chunk_size=2000):
        if counter is not None:
            counter[0] += 1
        fields = event_fields(
            seq=seq,
            occurred_at=occurred_at.astimezone(dt.UTC),
            actor_id=content[0],
            actor_username=content[1],
            actor_role=content[2],
            action=content[3],
            object_type=content[4],
            object_id=content[5],
            payload_json=content[6],
            state_digest=content[7],
        )
        if not signature:
            if first_signed_id is None:
                first_signed_id = (
                    LedgerEvent.objects.exclude(signature="").order_by("id").values_list("id", flat=True).first() or 0
                )
            if first_signed_id and pk < first_signed_id:
                continue  # written before events were signed
            return seq, "event carries no writer signature: it was inserted outside ledger_append"
        if not signature_ok(fields, signature, public):
            return seq, "content does not match the writer's signature (the event was changed after it was written)"
    return None


def checkpoint_valid(seq: int, public) -> bool:
    from trust.checkpoints import checkpoint_verify

    checkpoint = Checkpoint.objects.filter(seq=seq).first()
    return checkpoint is not None and checkpoint_verify(checkpoint.as_statement(), public)


def last_valid_checkpoint_seq(public, *, at_most: int, matching: list[int] | None = None) -> int:
    """The highest checkpoint at or below `at_most` whose signature verifies (and, given `matching`, that
    matched the chain): the point up to which the signed chain vouches for every event. 0 if none."""
    seqs = (
        matching
        if matching is not None
        else list(Checkpoint.objects.filter(seq__lte=at_most).order_by("-seq").values_list("seq", flat=True))
    )
    for seq in sorted((s for s in seqs if s <= at_most), reverse=True):
        if checkpoint_valid(seq, public):
            return seq
    return 0
