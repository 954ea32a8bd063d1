"""Verifying the audit ledger: the hash chain, the signed checkpoints and the writers' signatures."""

import datetime as dt
import hashlib
from dataclasses import dataclass
from json.encoder import encode_basestring

from django.db import connection, transaction

from .attestation import checkpoint_valid, first_signature_failure, last_valid_checkpoint_seq, signature_ok
from .models import GENESIS_HASH, Checkpoint, LedgerEvent
from .services import pending_events
from .signing import SigningKeyMissing, system_public_key


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
            anchor = last_valid_checkpoint_seq(public, at_most=last_good, matching=matched)
            cps_checked = sum(1 for s in matched if s <= anchor)
        signature = first_signature_failure(anchor, last_good, public, counter)
        if signature:
            failures.append((signature[0], 1, signature[1]))
    bad_checkpoint = min(mismatched) if mismatched else None
    if failures:
        seq, _, reason = min(failures)
        return _fail(checked, seq, reason, cps_checked, bad_checkpoint, signatures_checked=counter[0])
    if bad_checkpoint is not None:  # some checkpoint mismatched
        if checkpoint_valid(bad_checkpoint, public):
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
            if not checkpoint_valid(seq, public):
                return _fail(checked, seq, f"checkpoint at seq {seq} has an invalid signature", cps_checked, seq)
            cps_checked += 1
    beyond = sorted(s for s in checkpoints if s > last_good)
    if beyond:
        first = beyond[0]
        if checkpoint_valid(first, public):
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
            e.pk for e in rejected[:1000] if public is not None and signature_ok(e.hashed_fields(), e.signature, public)
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
    pending = pending_events().count()
    head_seq = last_good if checked else None
    return LedgerVerification(
        True, checked, head_seq, prev_hash if checked else None, None, "", cps_checked, None, pending, 0, counter[0]
    )
