"""Appending to and sealing the audit ledger, signing its checkpoints, and recording refusals.
Verification is `ledger.verification`; the signature checks both use are `ledger.attestation`."""

import base64
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from .actions import ACTIONS
from .attestation import first_signature_failure, last_valid_checkpoint_seq, signature_ok
from .canonical import canonical_json, sha256_hex
from .models import GENESIS_HASH, Checkpoint, LedgerEvent, chain_hash, signed_message
from .signing import system_key_available, system_private_key

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


def ledger_append(*, actor: Any, action: str, object_type: str, object_id: Any, payload: dict[str, Any]) -> LedgerEvent:
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
        occurred_at=timezone.now().astimezone(dt.UTC),
        actor_id=actor.pk if authenticated else None,
        actor_username=actor.get_username() if authenticated else "system",
        actor_role=getattr(actor, "role", "") if authenticated else "system",
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        payload_json=payload_json,
        state_digest=sha256_hex(payload_json),
    )
    event.signature = _writer_signature(event)
    _insert(event)
    if settings.SAFESHRINK.get("LEDGER_SEALING", "inline") == "inline":
        transaction.on_commit(lambda: ledger_seal(wait=False), robust=True)
    return event


_INSERTED = (
    "occurred_at",
    "actor_id",
    "actor_username",
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "payload_json",
    "state_digest",
    "signature",
)
# What the application's database role may write (`setup_db_roles` grants exactly these columns).
INSERTABLE_COLUMNS = _INSERTED
SEALING_COLUMNS = ("seq", "prev_hash", "hash", "rejected")
CHECKPOINT_COLUMNS = ("seq", "head_hash", "signed_at", "key_id", "signature")


def _writer_signature(event: LedgerEvent) -> str:
    """The writing process's Ed25519 signature over the event's content, base64 ("" without a key:
    the sealer then refuses the event, so a missing key shows up at once in `verify_ledger`)."""
    if not system_key_available():
        return ""
    return base64.b64encode(system_private_key().sign(signed_message(event.hashed_fields()))).decode("ascii")


@functools.cache
def _public_of_private(path: str):
    return system_private_key().public_key()


def _sealer_public_key():
    """The key the sealer checks writer signatures with (None without a system key: nothing to check)."""
    if not system_key_available():
        return None
    return _public_of_private(str(settings.SAFESHRINK["SYSTEM_KEY"]))


@functools.cache
def _insert_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {quote(LedgerEvent._meta.db_table)} ({', '.join(quote(c) for c in _INSERTED)}) "
        f"VALUES ({', '.join(['%s'] * len(_INSERTED))}) RETURNING {quote('id')}"
    )


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
    hash, its own hash; end every batch with a signed checkpoint at the new head. Returns how many
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
        if not pending_events().exists():
            return sealed


def pending_events():
    """Committed events still to be sealed (a rejected event is never sealed)."""
    return LedgerEvent.objects.filter(seq__isnull=True, rejected=False)


def ledger_seal_loop(
    *,
    idle_seconds: float = 0.2,
    busy_seconds: float = 0.02,
    stop: Callable[[], bool] = lambda: False,
    on_sealed: Callable[[int], None] | None = None,
) -> int:
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
            if not pending_events().exists():
                return sealed


def _seal_batch(limit: int) -> int:
    """Seal up to `limit` pending events; refuse (mark rejected) those whose writer signature does not
    verify; sign a checkpoint at the new head, so no sealed event is ever outside a signed checkpoint.
    Runs under the sealing lock. Returns how many events were sealed."""
    pending = list(pending_events().order_by("id")[:limit])
    if not pending:
        return 0
    public = _sealer_public_key()
    if public is not None:
        forged = [e for e in pending if not signature_ok(e.hashed_fields(), e.signature, public)]
        if forged:
            _write_rejections(forged)
            logger.error(
                "ledger: refused %d event(s) without a valid writer signature (ids %s): rows inserted "
                "outside ledger_append; `verify_ledger` reports them",
                len(forged),
                ", ".join(str(e.pk) for e in forged[:20]),
            )
            rejected = {e.pk for e in forged}
            pending = [e for e in pending if e.pk not in rejected]
            if not pending:
                return 0
    head = _sealed_head()
    seq, prev_hash = head if head else (0, GENESIS_HASH)
    for event in pending:
        seq += 1
        event.seq, event.prev_hash = seq, prev_hash
        event.hash = prev_hash = chain_hash(prev_hash, event.hashed_fields())
    _write_seals(pending)
    if public is not None:
        if _head_attested(head, public):
            _sign_checkpoint(seq, prev_hash)
        else:
            logger.error(
                "ledger: events after the last signed checkpoint were sealed outside the sealer and do "
                "not all carry valid writer signatures; no checkpoint signed. Run `verify_ledger`."
            )
    return len(pending)


def _sealed_head() -> tuple[int, str] | None:
    """(seq, hash) of the last sealed event, or None while nothing is sealed."""
    head = LedgerEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
    if head is None:
        return None
    seq, head_hash = head
    assert seq is not None and head_hash is not None  # sealing sets both at once
    return seq, head_hash


# (seq, head hash) of the last checkpoint this process signed or verified: saves a signature check per batch.
_ATTESTED: dict[str, tuple[int, str]] = {}


def _head_attested(head: tuple[int, str] | None, public) -> bool:
    """May the sealer sign a checkpoint over the events before this batch? Yes when they end in a
    checkpoint whose signature verifies (the normal case: every batch ends in one), or when every
    event after the last valid checkpoint carries a valid writer signature (someone else sealed them)."""
    if head is None:
        return True
    if _ATTESTED.get(connection.alias) == head:
        return True
    from trust.checkpoints import checkpoint_verify

    latest = Checkpoint.objects.order_by("-seq").first()
    if (
        latest is not None
        and (latest.seq, latest.head_hash) == head
        and checkpoint_verify(latest.as_statement(), public)
    ):
        _ATTESTED[connection.alias] = head
        return True
    anchor = last_valid_checkpoint_seq(public, at_most=head[0])
    if first_signature_failure(anchor, head[0], public) is None:
        _ATTESTED[connection.alias] = head
        return True
    return False


def _write_rejections(events: list[LedgerEvent]) -> None:
    updated = LedgerEvent.objects.filter(pk__in=[e.pk for e in events], seq__isnull=True, rejected=False).update(
        rejected=True
    )
    if updated != len(events):
        raise RuntimeError("ledger sealing raced with another sealer")


def _write_seals(events: list[LedgerEvent]) -> None:
    if connection.vendor != "postgresql":
        LedgerEvent.objects.bulk_update(events, ["seq", "prev_hash", "hash"], batch_size=2000)
        return
    # One statement per 5,000 events (PostgreSQL takes at most 65,535 parameters).
    with connection.cursor() as cursor:
        for start in range(0, len(events), 5000):
            chunk = events[start : start + 5000]
            values = ",".join(["(%s::bigint,%s::bigint,%s,%s)"] * len(chunk))
            params = [x for e in chunk for x in (e.pk, e.seq, e.prev_hash, e.hash)]
            cursor.execute(
                "UPDATE ledger_ledgerevent AS e SET seq = v.seq, prev_hash = v.prev, hash = v.hash "
                f"FROM (VALUES {values}) AS v(id, seq, prev, hash) WHERE e.id = v.id AND e.seq IS NULL",
                params,
            )
            if cursor.rowcount != len(chunk):
                raise RuntimeError("ledger sealing raced with another sealer")


def _sign_checkpoint(seq: int, head_hash: str) -> Checkpoint:
    from trust.checkpoints import checkpoint_sign

    statement = checkpoint_sign(seq, head_hash, timezone.now(), system_private_key())
    _ATTESTED[connection.alias] = (seq, head_hash)
    return Checkpoint.objects.create(
        seq=seq,
        head_hash=head_hash,
        signed_at=statement["at"],
        key_id=statement["key_id"],
        signature=statement["signature"],
    )


class LedgerNotAttested(RuntimeError):
    """The head cannot be signed: events after the last valid checkpoint include a forged one."""


def checkpoint_latest_covering(seq: int) -> Checkpoint:
    """The first checkpoint at or after `seq`, signing the current head if there is none yet.

    Exports embed this, so two exports of the same records embed the same checkpoint."""
    ledger_seal()
    with transaction.atomic():
        _lock_head()
        existing = Checkpoint.objects.filter(seq__gte=seq).order_by("seq").first()
        if existing:
            return existing
        head = _sealed_head()
        if head is None:
            raise ValueError("the ledger is empty")
        public = _sealer_public_key()
        if public is not None and not _head_attested(head, public):
            raise LedgerNotAttested(
                "events after the last signed checkpoint do not all carry valid writer signatures; run `verify_ledger`"
            )
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
