"""Verifying the audit ledger: the hash chain, the signed checkpoints and the writers' signatures."""

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.db import connection, transaction

from . import chain
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


_TEXT_COLUMNS = (
    "occurred_at",
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
# From this many sealed events on, PostgreSQL walks the chain in two processes (ledger.chain), each half.
PARALLEL_FROM = 200_000


def _texts(fields) -> list[str]:
    """The ten text fields as `chain.walk` reads them: the time in ISO form (UTC), a NULL as U+001E."""
    occurred_at, *rest = fields
    return [occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds")] + [
        chain.NULL if value is None else value for value in rest
    ]


def _exact_orm(seq: int, joined: str) -> list[str]:
    for fields in LedgerEvent.objects.filter(seq=seq).values_list(*_TEXT_COLUMNS):
        texts = _texts(fields)
        if chain.SEPARATOR.join(texts) == joined:
            return texts
    raise RuntimeError(f"event {seq} changed while it was being verified")


def _walk_orm(checkpoints: dict, chunk_size: int) -> dict:
    """SQLite (and a ledger_verify called inside a transaction): the same walk, rows joined in Python."""
    rows = LedgerEvent.objects.filter(seq__isnull=False).order_by("seq").values_list("seq", "actor_id", *_TEXT_COLUMNS)
    joined = (
        (seq, actor_id, chain.SEPARATOR.join(_texts(fields)))
        for seq, actor_id, *fields in rows.iterator(chunk_size=chunk_size)
    )
    return chain.walk(joined, first_seq=1, first_prev=GENESIS_HASH, checkpoints=checkpoints, exact=_exact_orm)


def _walk(checkpoints: dict, chunk_size: int) -> dict:
    """Walk every sealed event in seq order (ledger.chain.walk's result). On PostgreSQL, outside a
    transaction, in one REPEATABLE READ snapshot: a large ledger in two halves, the upper one in a second
    process that imports this transaction's snapshot, so both see the same rows."""
    if connection.vendor != "postgresql":
        return _walk_orm(checkpoints, chunk_size)
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if not nested:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT max(seq) FROM ledger_ledgerevent")
        top = cursor.fetchone()[0] or 0
        raw = connection.connection
        if nested or top < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
            return chain.walk_postgres(
                raw, 1, top, first_prev=GENESIS_HASH, checkpoints=checkpoints, chunk_size=chunk_size
            )
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        middle = top // 2
        upper = _start_walker(raw, snapshot, middle + 1, top, checkpoints, chunk_size)
        try:
            lower = chain.walk_postgres(
                raw, 1, middle, first_prev=GENESIS_HASH, checkpoints=checkpoints, chunk_size=chunk_size
            )
            upper_result = _finish_walker(upper)
        finally:
            if upper.poll() is None:
                upper.kill()
                upper.wait()
    return _joined(lower, upper_result)


def _start_walker(raw, snapshot: str, lo: int, hi: int, checkpoints: dict, chunk_size: int):
    from psycopg.conninfo import make_conninfo

    info = raw.info
    job = {
        "conninfo": make_conninfo(**info.get_parameters(), password=info.password or ""),
        "snapshot": snapshot,
        "lo": lo,
        "hi": hi,
        "checkpoints": {str(seq): head for seq, head in checkpoints.items() if lo <= seq <= hi},
        "chunk_size": chunk_size,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger.chain"],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(job))  # the password goes by pipe, never on a command line
    process.stdin.close()
    process.stdin = None  # so communicate() only reads
    return process


def _finish_walker(process) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"ledger verification's second process failed: {err.strip()[-2000:]}")
    return json.loads(out)


def _joined(lower: dict, upper: dict) -> dict:
    """One walk's result from its two halves: the upper half counts only if the lower one passed whole,
    and its first event must link to the lower half's last."""
    if lower["failure"] or upper["first"] is None:
        return lower
    first_seq, first_prev = upper["first"]
    expected = lower["last_good_seq"] + 1
    failure = None
    if first_seq != expected:
        failure = [expected, f"event {expected} is missing"]
    elif first_prev != lower["last_hash"]:
        failure = [first_seq, "prev_hash does not match the previous event"]
    if failure:
        return {**lower, "failure": failure}
    return {
        "checked": lower["checked"] + upper["checked"],
        "first": lower["first"],
        "last_good_seq": upper["last_good_seq"],
        "last_hash": upper["last_hash"],
        "failure": upper["failure"],
        "matched": lower["matched"] + upper["matched"],
        "mismatched": lower["mismatched"] + upper["mismatched"],
    }


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
    walked = _walk(checkpoints, chunk_size)
    checked, prev_hash = walked["checked"], walked["last_hash"]
    matched, mismatched = walked["matched"], walked["mismatched"]
    structural = (walked["failure"][0], 0, walked["failure"][1]) if walked["failure"] else None
    expected_seq = walked["last_good_seq"] + 1
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
