"""Appending to and verifying the audit ledger."""

import base64
import binascii
import datetime as dt
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from .actions import ACTIONS
from .canonical import canonical_json, sha256_hex
from .models import GENESIS_HASH, Checkpoint, LedgerEvent, chain_hash, event_fields, signed_message
from .signing import SigningKeyMissing, system_key_available, system_private_key, system_public_key

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


def _signature_ok(fields: dict, signature: str, public) -> bool:
    if not signature:
        return False
    try:
        public.verify(base64.b64decode(signature, validate=True), signed_message(fields))
        return True
    except (ValueError, binascii.Error, InvalidSignature):
        return False


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
        if not _pending().exists():
            return sealed


def _pending():
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
            if not _pending().exists():
                return sealed


def _seal_batch(limit: int) -> int:
    """Seal up to `limit` pending events; refuse (mark rejected) those whose writer signature does not
    verify; sign a checkpoint at the new head, so no sealed event is ever outside a signed checkpoint.
    Runs under the sealing lock. Returns how many events were sealed."""
    pending = list(_pending().order_by("id")[:limit])
    if not pending:
        return 0
    public = _sealer_public_key()
    if public is not None:
        forged = [e for e in pending if not _signature_ok(e.hashed_fields(), e.signature, public)]
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
    anchor = _last_valid_checkpoint_seq(public, at_most=head[0])
    if _first_signature_failure(anchor, head[0], public) is None:
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
    rejected: int = 0
    signatures_checked: int = 0


def _fail(checked: int, seq: int | None, reason: str, checkpoints: int = 0, bad_checkpoint: int | None = None, **extra):
    return LedgerVerification(False, checked, None, None, seq, reason, checkpoints, bad_checkpoint, **extra)


_quote = encode_basestring  # JSON string literal, non-ASCII kept as is (ensure_ascii=False)


def fast_canonical(
    seq, occurred_iso, actor_id, actor_username, actor_role, action, object_type, object_id, payload_json, state_digest
) -> str:
    """canonical_json(event_fields(...)) written out by hand: the same bytes, several times faster
    (keys already in sorted order). A test checks the two agree."""
    return (
        '{"action":'
        + _quote(action)
        + ',"actor_id":'
        + ("null" if actor_id is None else str(actor_id))
        + ',"actor_role":'
        + _quote(actor_role)
        + ',"actor_username":'
        + _quote(actor_username)
        + ',"object_id":'
        + _quote(object_id)
        + ',"object_type":'
        + _quote(object_type)
        + ',"occurred_at":'
        + _quote(occurred_iso)
        + ',"payload_json":'
        + _quote(payload_json)
        + ',"seq":'
        + str(seq)
        + ',"state_digest":'
        + _quote(state_digest)
        + "}"
    )


_COLUMNS = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_username",
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "payload_json",
    "state_digest",
    "prev_hash",
    "hash",
)


def _sealed_rows(chunk_size: int):
    """Sealed events in seq order as tuples (occurred_at already an ISO string in UTC)."""
    if connection.vendor == "postgresql":
        # Format the time in SQL and stream with a server-side cursor: both matter at a million rows.
        sql = (
            "SELECT seq, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
            "actor_id, actor_username, actor_role, action, object_type, object_id, payload_json, state_digest, "
            "prev_hash, hash FROM ledger_ledgerevent WHERE seq IS NOT NULL ORDER BY seq"
        )
        connection.ensure_connection()
        with transaction.atomic(), connection.connection.cursor(name="ledger_verify") as cursor:
            cursor.itersize = chunk_size
            cursor.execute(sql)
            yield from cursor
        return
    rows = LedgerEvent.objects.filter(seq__isnull=False).order_by("seq").values_list(*_COLUMNS)
    for row in rows.iterator(chunk_size=chunk_size):
        yield (row[0], row[1].astimezone(dt.UTC).isoformat(timespec="microseconds"), *row[2:])


_SIGNED_COLUMNS = (
    "id",
    "seq",
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


def _first_signature_failure(after_seq: int, to_seq: int, public, counter: list[int] | None = None):
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
        if not _signature_ok(fields, signature, public):
            return seq, "content does not match the writer's signature (the event was changed after it was written)"
    return None


def _checkpoint_valid(seq: int, public) -> bool:
    from trust.checkpoints import checkpoint_verify

    checkpoint = Checkpoint.objects.filter(seq=seq).first()
    return checkpoint is not None and checkpoint_verify(checkpoint.as_statement(), public)


def _last_valid_checkpoint_seq(public, *, at_most: int, matching: list[int] | None = None) -> int:
    """The highest checkpoint at or below `at_most` whose signature verifies (and, given `matching`, that
    matched the chain): the point up to which the signed chain vouches for every event. 0 if none."""
    seqs = (
        matching
        if matching is not None
        else list(Checkpoint.objects.filter(seq__lte=at_most).order_by("-seq").values_list("seq", flat=True))
    )
    for seq in sorted((s for s in seqs if s <= at_most), reverse=True):
        if _checkpoint_valid(seq, public):
            return seq
    return 0


def _verifying_key(needed: bool):
    try:
        return system_public_key()
    except SigningKeyMissing:
        if needed:
            raise
        return None


def ledger_verify(*, chunk_size: int = 50_000, full: bool = False) -> LedgerVerification:
    """Recompute the whole chain in seq order, check it against the signed checkpoints and the
    writers' signatures, and name the first event whose content or link changed.

    1. Every event's hash is recomputed from its content and compared to the stored hash, and its
       prev_hash to the previous event's hash (an edit that did not re-hash is named here).
    2. The last checkpoint that matches the chain and whose signature verifies vouches for every event
       up to it (the sealer signs one at the end of every batch, after checking each event's writer
       signature). Every event after it has its writer signature checked; so a chain re-hashed from
       seq 5 is named at seq 5, not at the checkpoint that no longer matches. `full` checks every
       event's writer signature (slow: ~70 us each).
    3. A checkpoint beyond the last event means events were removed; events the sealer refused
       (inserted without a valid writer signature) fail the ledger. Unsealed events are counted in
       `pending`, not judged."""
    checkpoints = dict(Checkpoint.objects.values_list("seq", "head_hash"))
    public = _verifying_key(needed=bool(checkpoints) or LedgerEvent.objects.exclude(signature="").exists())
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    structural: tuple[int, int, str] | None = None
    matched: list[int] = []
    mismatched: list[int] = []
    sha256 = hashlib.sha256
    for (
        seq,
        occurred_iso,
        actor_id,
        actor_username,
        actor_role,
        action,
        object_type,
        object_id,
        payload_json,
        state_digest,
        stored_prev,
        stored_hash,
    ) in _sealed_rows(chunk_size):
        if seq != expected_seq:
            structural = (expected_seq, 0, f"event {expected_seq} is missing")
            break
        if stored_prev != prev_hash:
            structural = (seq, 0, "prev_hash does not match the previous event")
            break
        canonical = fast_canonical(
            seq,
            occurred_iso,
            actor_id,
            actor_username,
            actor_role,
            action,
            object_type,
            object_id,
            payload_json,
            state_digest,
        )
        if sha256((prev_hash + canonical).encode()).hexdigest() != stored_hash:
            # The hash covers the payload and its digest, so one check detects both; this names which.
            reason = (
                "payload does not match its digest"
                if sha256(payload_json.encode()).hexdigest() != state_digest
                else "hash does not match the event's content"
            )
            structural = (seq, 0, reason)
            break
        if seq in checkpoints:
            (matched if checkpoints[seq] == stored_hash else mismatched).append(seq)
        prev_hash, expected_seq, checked = stored_hash, seq + 1, checked + 1
    last_good = expected_seq - 1
    counter = [0]
    anchor, cps_checked, failures = 0, 0, []
    if structural:
        failures.append(structural)
    if public is not None:
        if not full:
            anchor = _last_valid_checkpoint_seq(public, at_most=last_good, matching=matched)
            cps_checked = sum(1 for s in matched if s <= anchor)
        signature = _first_signature_failure(anchor, last_good, public, counter)
        if signature:
            failures.append((signature[0], 1, signature[1]))
    bad_checkpoint = min(mismatched) if mismatched else None
    if failures:
        seq, _, reason = min(failures)
        return _fail(checked, seq, reason, cps_checked, bad_checkpoint, signatures_checked=counter[0])
    if bad_checkpoint is not None:  # some checkpoint mismatched
        if _checkpoint_valid(bad_checkpoint, public):
            return _fail(
                checked,
                anchor + 1,
                f"signed checkpoint at seq {bad_checkpoint} no longer matches the chain: "
                f"events {anchor + 1}..{bad_checkpoint} were re-linked",
                cps_checked,
                bad_checkpoint,
                signatures_checked=counter[0],
            )
        return _fail(
            checked,
            bad_checkpoint,
            f"checkpoint at seq {bad_checkpoint} has an invalid signature",
            cps_checked,
            bad_checkpoint,
            signatures_checked=counter[0],
        )
    unsigned = [s for s in matched if s > anchor] if public is not None and not full else []
    if unsigned:  # matched the chain but did not verify: a checkpoint row written without the key
        return _fail(
            checked,
            max(unsigned),
            f"checkpoint at seq {max(unsigned)} has an invalid signature",
            cps_checked,
            max(unsigned),
            signatures_checked=counter[0],
        )
    if full and public is not None:
        for seq in matched:
            if not _checkpoint_valid(seq, public):
                return _fail(checked, seq, f"checkpoint at seq {seq} has an invalid signature", cps_checked, seq)
            cps_checked += 1
    beyond = sorted(s for s in checkpoints if s > last_good)
    if beyond:
        first = beyond[0]
        if _checkpoint_valid(first, public):
            return _fail(
                checked,
                last_good + 1,
                f"the ledger ends before signed checkpoint {first}: events were removed",
                cps_checked,
                first,
                signatures_checked=counter[0],
            )
        return _fail(
            checked,
            first,
            f"checkpoint at seq {first} has an invalid signature",
            cps_checked,
            first,
            signatures_checked=counter[0],
        )
    rejected = LedgerEvent.objects.filter(rejected=True).order_by("id")
    refused = rejected.count()
    if refused:
        ids = ", ".join(str(e.pk) for e in rejected[:10])
        # A rejected event whose signature verifies was not forged but kept out of the chain by someone
        # holding the sealing privilege (the application's role): say so.
        suppressed = [
            e.pk
            for e in rejected[:1000]
            if public is not None and _signature_ok(e.hashed_fields(), e.signature, public)
        ]
        if suppressed:
            return _fail(
                checked,
                None,
                f"event(s) {', '.join(map(str, suppressed[:10]))} carry a valid writer "
                "signature but were marked rejected: kept out of the chain",
                cps_checked,
                None,
                rejected=refused,
                signatures_checked=counter[0],
            )
        return _fail(
            checked,
            None,
            f"{refused} event(s) inserted without a valid writer signature were refused by "
            f"the sealer (forged rows; ids {ids})",
            cps_checked,
            None,
            rejected=refused,
            signatures_checked=counter[0],
        )
    pending = _pending().count()
    head_seq = last_good if checked else None
    return LedgerVerification(
        True, checked, head_seq, prev_hash if checked else None, None, "", cps_checked, None, pending, 0, counter[0]
    )
