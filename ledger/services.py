"""Appending to and verifying the audit ledger."""

import datetime as dt
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from json.encoder import encode_basestring
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from .actions import ACTIONS
from .canonical import canonical_json, sha256_hex
from .models import GENESIS_HASH, Checkpoint, LedgerEvent, chain_hash
from .signing import system_key_available, system_private_key, system_public_key

logger = logging.getLogger(__name__)

# Any constant: the key of the PostgreSQL advisory lock that serialises sealing.
_SEAL_LOCK_KEY = 0x5AFE5871
SEAL_BATCH = 20_000


def _lock_head(*, wait: bool = True) -> bool:
    """Take the sealing lock for this transaction; with wait=False, give up at once if another
    sealer holds it. SQLite already holds its write lock (transaction_mode=IMMEDIATE)."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK_KEY])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_SEAL_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def ledger_append(
    *, actor: Any, action: str, object_type: str, object_id: Any, payload: dict[str, Any]
) -> LedgerEvent:
    """Record one event. Must run inside the caller's transaction, so the event and the change it
    records commit (or roll back) together. The event is chained (seq, prev_hash, hash) by
    `ledger_seal` after that transaction commits: by this process at once (LEDGER_SEALING "inline"), or
    by the dedicated sealer process within a fraction of a second ("sealer")."""
    if action not in ACTIONS:
        raise ValueError(f"unknown ledger action {action!r}")
    if not connection.in_atomic_block:
        raise RuntimeError("ledger_append must run inside transaction.atomic()")
    payload_json = canonical_json(payload)
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    event = LedgerEvent(
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
    _insert(event)
    if settings.SAFESHRINK.get("LEDGER_SEALING", "inline") == "inline":
        transaction.on_commit(lambda: ledger_seal(wait=False), robust=True)
    return event


_INSERTED = ("occurred_at", "actor_id", "actor_username", "actor_role", "action", "object_type", "object_id",
             "payload_json", "state_digest")


@functools.cache
def _insert_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    return (f"INSERT INTO {quote(LedgerEvent._meta.db_table)} ({', '.join(quote(c) for c in _INSERTED)}) "
            f"VALUES ({', '.join(['%s'] * len(_INSERTED))}) RETURNING {quote('id')}")


def _insert(event: LedgerEvent) -> None:
    """INSERT ... RETURNING id with the SQL written once: every audited change pays for this, and the
    ORM's per-call query compilation cost more than the rest of the append (bench/ledger.py). Values
    go through the backend's own adapters, exactly as `Model.save()` would send them."""
    sql = _insert_sql(connection.vendor)
    params = [getattr(event, name) for name in _INSERTED]
    params[0] = connection.ops.adapt_datetimefield_value(params[0])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        event.pk = cursor.fetchone()[0]
    event._state.adding, event._state.db = False, connection.alias


def ledger_seal(*, limit: int = SEAL_BATCH, wait: bool = True) -> int:
    """Chain every committed, unsealed event in insertion order: next seq, the previous event's
    hash, its own hash; sign a checkpoint at every multiple of CHECKPOINT_EVERY. Returns how many
    events this call sealed.

    One sealer at a time (advisory lock). With wait=False (the post-commit hook) a writer that
    finds another sealer at work returns at once instead of queueing: every sealer looks for
    pending events again *after* releasing the lock, so an event committed before a failed try
    is always picked up by the sealer that held the lock then. wait=True (exports, the beat task,
    tests) returns only when everything committed before the call is sealed."""
    if not wait and connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _seal_if_free(limit)
    sealed = 0
    while True:
        with transaction.atomic():
            _lock_head(wait=True)
            sealed += _seal_batch(limit)
        # Re-check after the lock is released (see the docstring): this closes the race.
        if not LedgerEvent.objects.filter(seq__isnull=True).exists():
            return sealed


def ledger_seal_loop(*, idle_seconds: float = 0.2, busy_seconds: float = 0.02,
                     stop: Callable[[], bool] = lambda: False,
                     on_sealed: Callable[[int], None] | None = None) -> int:
    """The dedicated sealer (LEDGER_SEALING "sealer"): seal whatever has committed, pause, repeat,
    until `stop()`. Writers then only insert, and one process chains events in large batches, which
    costs far fewer round trips and commits than every writer sealing its own few events. Pauses
    `busy_seconds` after a batch (so the next one gathers more events) and `idle_seconds` when there
    was nothing to seal. Safe beside other sealers (the advisory lock) and beside the beat task. A
    lost database connection is logged and reopened on the next pass rather than ending the loop."""
    total = 0
    while not stop():
        try:
            sealed = ledger_seal(wait=True)
        except (OperationalError, InterfaceError):
            logger.warning("ledger sealer: database unavailable; retrying", exc_info=True)
            connection.close()
            time.sleep(idle_seconds)
            continue
        total += sealed
        if sealed and on_sealed:
            on_sealed(sealed)
        time.sleep(busy_seconds if sealed else idle_seconds)
    return total


def _seal_if_free(limit: int) -> int:
    """One round trip when another sealer is at work: a session-level try-lock, no transaction."""
    sealed = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [_SEAL_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return sealed
            try:
                with transaction.atomic():
                    sealed += _seal_batch(limit)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_SEAL_LOCK_KEY])
            if not LedgerEvent.objects.filter(seq__isnull=True).exists():
                return sealed


def _seal_batch(limit: int) -> int:
    pending = list(LedgerEvent.objects.filter(seq__isnull=True).order_by("id")[:limit])
    if not pending:
        return 0
    head = LedgerEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
    seq, prev_hash = head if head else (0, GENESIS_HASH)
    for event in pending:
        seq += 1
        event.seq, event.prev_hash = seq, prev_hash
        event.hash = prev_hash = chain_hash(prev_hash, event.hashed_fields())
    _write_seals(pending)
    every = settings.SAFESHRINK.get("CHECKPOINT_EVERY", 0)
    if every and system_key_available():
        for event in pending:
            if event.seq % every == 0:
                _sign_checkpoint(event.seq, event.hash)
    return len(pending)


def _write_seals(events: list[LedgerEvent]) -> None:
    if connection.vendor != "postgresql":
        LedgerEvent.objects.bulk_update(events, ["seq", "prev_hash", "hash"], batch_size=2000)
        return
    # One statement per 5,000 events (PostgreSQL takes at most 65,535 parameters).
    with connection.cursor() as cursor:
        for start in range(0, len(events), 5000):
            chunk = events[start:start + 5000]
            values = ",".join(["(%s::bigint,%s::bigint,%s,%s)"] * len(chunk))
            params = [x for e in chunk for x in (e.pk, e.seq, e.prev_hash, e.hash)]
            cursor.execute(
                "UPDATE ledger_ledgerevent AS e SET seq = v.seq, prev_hash = v.prev, hash = v.hash "
                f"FROM (VALUES {values}) AS v(id, seq, prev, hash) WHERE e.id = v.id AND e.seq IS NULL", params)
            if cursor.rowcount != len(chunk):
                raise RuntimeError("ledger sealing raced with another sealer")


def _sign_checkpoint(seq: int, head_hash: str) -> Checkpoint:
    from trust.checkpoints import checkpoint_sign

    statement = checkpoint_sign(seq, head_hash, timezone.now(), system_private_key())
    return Checkpoint.objects.create(seq=seq, head_hash=head_hash, signed_at=statement["at"],
                                     key_id=statement["key_id"], signature=statement["signature"])


def checkpoint_latest_covering(seq: int) -> Checkpoint:
    """The first checkpoint at or after `seq`, signing the current head if there is none yet.

    Exports embed this, so two exports of the same records embed the same checkpoint."""
    ledger_seal()
    with transaction.atomic():
        _lock_head()
        existing = Checkpoint.objects.filter(seq__gte=seq).order_by("seq").first()
        if existing:
            return existing
        head = LedgerEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
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
    pending: int = 0


def _fail(checked: int, seq: int, reason: str, checkpoints: int = 0, bad_checkpoint: int | None = None):
    return LedgerVerification(False, checked, None, None, seq, reason, checkpoints, bad_checkpoint)


_quote = encode_basestring  # JSON string literal, non-ASCII kept as is (ensure_ascii=False)


def fast_canonical(seq, occurred_iso, actor_id, actor_username, actor_role, action, object_type, object_id,
                   payload_json, state_digest) -> str:
    """canonical_json(event_fields(...)) written out by hand: the same bytes, several times faster
    (keys already in sorted order). A test checks the two agree."""
    return (
        '{"action":' + _quote(action) + ',"actor_id":' + ("null" if actor_id is None else str(actor_id))
        + ',"actor_role":' + _quote(actor_role) + ',"actor_username":' + _quote(actor_username)
        + ',"object_id":' + _quote(object_id) + ',"object_type":' + _quote(object_type)
        + ',"occurred_at":' + _quote(occurred_iso) + ',"payload_json":' + _quote(payload_json)
        + ',"seq":' + str(seq) + ',"state_digest":' + _quote(state_digest) + "}"
    )


_COLUMNS = ("seq", "occurred_at", "actor_id", "actor_username", "actor_role", "action", "object_type", "object_id",
            "payload_json", "state_digest", "prev_hash", "hash")


def _sealed_rows(chunk_size: int):
    """Sealed events in seq order as tuples (occurred_at already an ISO string in UTC)."""
    if connection.vendor == "postgresql":
        # Format the time in SQL and stream with a server-side cursor: both matter at a million rows.
        sql = ("SELECT seq, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
               "actor_id, actor_username, actor_role, action, object_type, object_id, payload_json, state_digest, "
               "prev_hash, hash FROM ledger_ledgerevent WHERE seq IS NOT NULL ORDER BY seq")
        connection.ensure_connection()
        with transaction.atomic(), connection.connection.cursor(name="ledger_verify") as cursor:
            cursor.itersize = chunk_size
            cursor.execute(sql)
            yield from cursor
        return
    rows = LedgerEvent.objects.filter(seq__isnull=False).order_by("seq").values_list(*_COLUMNS)
    for row in rows.iterator(chunk_size=chunk_size):
        yield (row[0], row[1].astimezone(dt.timezone.utc).isoformat(timespec="microseconds"), *row[2:])


def ledger_verify(*, chunk_size: int = 50_000) -> LedgerVerification:
    """Recompute the whole chain in seq order and check every signed checkpoint against it.

    Names the first event that does not fit, or the first checkpoint that no longer matches the
    chain (which catches a tail rewritten with freshly computed hashes). Events not yet sealed
    are counted in `pending`, not judged."""
    from trust.checkpoints import checkpoint_verify

    checkpoints = {c.seq: c for c in Checkpoint.objects.all()}
    public = system_public_key() if checkpoints else None
    for cp in checkpoints.values():
        if not checkpoint_verify(cp.as_statement(), public):
            return _fail(0, cp.seq, f"checkpoint at seq {cp.seq} has an invalid signature", 0, cp.seq)
    expected_seq, prev_hash, checked, checkpoints_checked = 1, GENESIS_HASH, 0, 0
    sha256 = hashlib.sha256
    for (seq, occurred_iso, actor_id, actor_username, actor_role, action, object_type, object_id, payload_json,
         state_digest, stored_prev, stored_hash) in _sealed_rows(chunk_size):
        if seq != expected_seq:
            return _fail(checked, expected_seq, f"event {expected_seq} is missing", checkpoints_checked)
        if stored_prev != prev_hash:
            return _fail(checked, seq, "prev_hash does not match the previous event", checkpoints_checked)
        canonical = fast_canonical(seq, occurred_iso, actor_id, actor_username, actor_role, action, object_type,
                                   object_id, payload_json, state_digest)
        if sha256((prev_hash + canonical).encode()).hexdigest() != stored_hash:
            # The hash covers the payload and its digest, so one check detects both; this names which.
            if sha256(payload_json.encode()).hexdigest() != state_digest:
                return _fail(checked, seq, "payload does not match its digest", checkpoints_checked)
            return _fail(checked, seq, "hash does not match the event's content", checkpoints_checked)
        if seq in checkpoints:
            if checkpoints[seq].head_hash != stored_hash:
                return _fail(checked, seq, f"signed checkpoint at seq {seq} no longer matches the chain",
                             checkpoints_checked, seq)
            checkpoints_checked += 1
        prev_hash, expected_seq, checked = stored_hash, seq + 1, checked + 1
    beyond = [s for s in checkpoints if s >= expected_seq]
    if beyond:
        first = min(beyond)
        return _fail(checked, expected_seq, f"the ledger ends before signed checkpoint {first}: events were removed",
                     checkpoints_checked, first)
    pending = LedgerEvent.objects.filter(seq__isnull=True).count()
    head_seq = expected_seq - 1 if checked else None
    return LedgerVerification(True, checked, head_seq, prev_hash if checked else None, None, "", checkpoints_checked,
                              None, pending)
