"""Appending to and verifying the audit ledger."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .actions import ACTIONS
from .canonical import canonical_json, sha256_hex
from .models import GENESIS_HASH, Checkpoint, LedgerEvent, chain_hash, event_fields
from .signing import system_key_available, system_private_key, system_public_key

# Any constant: the key of the PostgreSQL advisory lock that serialises appends.
_APPEND_LOCK_KEY = 0x5AFE5871


def _lock_head() -> None:
    """Serialise appends. SQLite already holds the write lock (transaction_mode=IMMEDIATE)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_APPEND_LOCK_KEY])


def ledger_append(
    *, actor: Any, action: str, object_type: str, object_id: Any, payload: dict[str, Any]
) -> LedgerEvent:
    """Append one event. Must run inside the caller's transaction, so the event and the change
    it records commit (or roll back) together."""
    if action not in ACTIONS:
        raise ValueError(f"unknown ledger action {action!r}")
    if not connection.in_atomic_block:
        raise RuntimeError("ledger_append must run inside transaction.atomic()")
    _lock_head()
    head = LedgerEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
    payload_json = canonical_json(payload)
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    fields = dict(
        seq=seq,
        occurred_at=timezone.now().astimezone(dt.timezone.utc),
        actor_id=actor.pk if authenticated else None,
        actor_username=actor.get_username() if authenticated else "system",
        actor_role=getattr(actor, "role", "") if authenticated else "system",
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        payload_json=payload_json,
        state_digest=sha256_hex(payload_json),
    )
    event_hash = chain_hash(prev_hash, event_fields(**fields))
    event = LedgerEvent.objects.create(prev_hash=prev_hash, hash=event_hash, **fields)
    every = settings.SAFESHRINK.get("CHECKPOINT_EVERY", 0)
    if every and seq % every == 0 and system_key_available():
        _sign_checkpoint(seq, event_hash)
    return event


def _sign_checkpoint(seq: int, head_hash: str) -> Checkpoint:
    from trust.checkpoints import checkpoint_sign

    statement = checkpoint_sign(seq, head_hash, timezone.now(), system_private_key())
    return Checkpoint.objects.create(seq=seq, head_hash=head_hash, signed_at=statement["at"],
                                     key_id=statement["key_id"], signature=statement["signature"])


def checkpoint_latest_covering(seq: int) -> Checkpoint:
    """The first checkpoint at or after `seq`, signing the current head if there is none yet.

    Exports embed this, so two exports of the same records embed the same checkpoint."""
    with transaction.atomic():
        _lock_head()
        existing = Checkpoint.objects.filter(seq__gte=seq).order_by("seq").first()
        if existing:
            return existing
        head = LedgerEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        if head is None:
            raise ValueError("the ledger is empty")
        return _sign_checkpoint(*head)


def ledger_record_refusal(*, actor: Any, object_type: str, object_id: Any, code: str, message: str) -> None:
    """Record a refused request in its own transaction (the refused change itself rolled back)."""
    with transaction.atomic():
        ledger_append(
            actor=actor,
            action="access.denied",
            object_type=object_type,
            object_id=object_id,
            payload={"code": code, "message": message},
        )


@dataclass(frozen=True)
class LedgerVerification:
    ok: bool
    checked: int
    head_seq: int | None
    head_hash: str | None
    first_bad_seq: int | None = None
    reason: str = ""
    checkpoints_checked: int = 0
    bad_checkpoint_seq: int | None = None


def _fail(checked: int, seq: int, reason: str, checkpoints: int = 0, bad_checkpoint: int | None = None):
    return LedgerVerification(False, checked, None, None, seq, reason, checkpoints, bad_checkpoint)


def ledger_verify(*, chunk_size: int = 20_000) -> LedgerVerification:
    """Recompute the whole chain in seq order and check every signed checkpoint against it.

    Names the first event that does not fit, or the first checkpoint that no longer matches the
    chain (which catches a tail rewritten with freshly computed hashes)."""
    from trust.checkpoints import checkpoint_verify

    checkpoints = {c.seq: c for c in Checkpoint.objects.all()}
    public = system_public_key() if checkpoints else None
    for cp in checkpoints.values():
        if not checkpoint_verify(cp.as_statement(), public):
            return _fail(0, cp.seq, f"checkpoint at seq {cp.seq} has an invalid signature", 0, cp.seq)
    expected_seq, prev_hash, checked, checkpoints_checked = 1, GENESIS_HASH, 0, 0
    columns = (
        "seq", "occurred_at", "actor_id", "actor_username", "actor_role", "action", "object_type",
        "object_id", "payload_json", "state_digest", "prev_hash", "hash",
    )
    rows = LedgerEvent.objects.order_by("seq").values_list(*columns).iterator(chunk_size=chunk_size)
    for (seq, occurred_at, actor_id, actor_username, actor_role, action, object_type, object_id, payload_json,
         state_digest, stored_prev, stored_hash) in rows:
        if seq != expected_seq:
            return _fail(checked, expected_seq, f"event {expected_seq} is missing", checkpoints_checked)
        if stored_prev != prev_hash:
            return _fail(checked, seq, "prev_hash does not match the previous event", checkpoints_checked)
        if sha256_hex(payload_json) != state_digest:
            return _fail(checked, seq, "payload does not match its digest", checkpoints_checked)
        fields = event_fields(
            seq=seq, occurred_at=occurred_at.astimezone(dt.timezone.utc), actor_id=actor_id,
            actor_username=actor_username, actor_role=actor_role, action=action, object_type=object_type,
            object_id=object_id, payload_json=payload_json, state_digest=state_digest,
        )
        if chain_hash(prev_hash, fields) != stored_hash:
            return _fail(checked, seq, "hash does not match the event's content", checkpoints_checked)
        checkpoint = checkpoints.get(seq)
        if checkpoint is not None:
            if checkpoint.head_hash != stored_hash:
                return _fail(checked, seq, f"signed checkpoint at seq {seq} no longer matches the chain",
                             checkpoints_checked, seq)
            checkpoints_checked += 1
        prev_hash, expected_seq, checked = stored_hash, seq + 1, checked + 1
    beyond = [s for s in checkpoints if s >= expected_seq]
    if beyond:
        first = min(beyond)
        return _fail(checked, expected_seq, f"the ledger ends before signed checkpoint {first}: events were removed",
                     checkpoints_checked, first)
    head_seq = expected_seq - 1 if checked else None
    return LedgerVerification(True, checked, head_seq, prev_hash if checked else None, None, "", checkpoints_checked)
