"""Appending to and verifying the audit ledger."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .actions import ACTIONS
from .canonical import canonical_json, sha256_hex
from .models import GENESIS_HASH, LedgerEvent, chain_hash, event_fields

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
    return LedgerEvent.objects.create(prev_hash=prev_hash, hash=event_hash, **fields)


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


def ledger_verify(*, chunk_size: int = 20_000) -> LedgerVerification:
    """Recompute the whole chain in seq order; name the first event that does not fit."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    columns = (
        "seq", "occurred_at", "actor_id", "actor_username", "actor_role", "action", "object_type",
        "object_id", "payload_json", "state_digest", "prev_hash", "hash",
    )
    rows = LedgerEvent.objects.order_by("seq").values_list(*columns).iterator(chunk_size=chunk_size)
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        seq = record["seq"]
        if seq != expected_seq:
            return LedgerVerification(False, checked, None, None, expected_seq, f"event {expected_seq} is missing")
        if record["prev_hash"] != prev_hash:
            return LedgerVerification(False, checked, None, None, seq, "prev_hash does not match the previous event")
        if sha256_hex(record["payload_json"]) != record["state_digest"]:
            return LedgerVerification(False, checked, None, None, seq, "payload does not match its digest")
        fields = {k: record[k] for k in columns if k not in ("prev_hash", "hash")}
        fields["occurred_at"] = fields["occurred_at"].astimezone(dt.timezone.utc)
        if chain_hash(prev_hash, event_fields(**fields)) != record["hash"]:
            return LedgerVerification(False, checked, None, None, seq, "hash does not match the event's content")
        prev_hash, expected_seq, checked = record["hash"], seq + 1, checked + 1
    head_seq = expected_seq - 1 if checked else None
    return LedgerVerification(True, checked, head_seq, prev_hash if checked else None)
