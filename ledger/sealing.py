"""Sealing the audit ledger: chain committed events (seq, prev_hash, hash) in batches, refuse any whose
writer signature does not verify, sign a checkpoint after every batch; and the checkpoint exports embed.
`ledger.services.ledger_append` inserts events; this chains them (ARCHITECTURE.md, "The ledger's write
path"). Re-exported by `ledger.services`, where callers import it from."""

import base64
import binascii
import datetime as dt
import functools
import hashlib
import logging
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from .attestation import first_signature_failure, last_valid_checkpoint_seq
from .binding import server_cursor
from .fast import fast_canonical, fast_signed_message
from .models import GENESIS_HASH, WRITTEN_FIELDS, Checkpoint, LedgerEvent
from .partitions import ledger_partitions_ensure_due
from .signing import system_key_available, system_private_key

logger = logging.getLogger(__name__)

# Any constant: the key of the PostgreSQL advisory lock that serialises sealing.
_SEAL_LOCK_KEY = 0x5AFE5871
SEAL_BATCH = 20_000
# How long a role that may not seal waits for the sealer to seal what committed before it asked.
SEAL_WAIT_SECONDS = 60.0

# The sealer's view of a pending event: id, then the nine signed fields in `fast_signed_message` order
# (occurred_at as the ISO text that is hashed and signed), then the writer's signature.
_PENDING_SQL = (
    "SELECT id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), actor_id, "
    "actor_username, actor_role, action, object_type, object_id, payload_json, state_digest, signature "
    "FROM ledger_ledgerevent WHERE seq IS NULL AND NOT rejected ORDER BY id LIMIT %s"
)
_PENDING_COLUMNS = ("id", *WRITTEN_FIELDS)


class LedgerNotAttested(RuntimeError):
    """The head cannot be signed: events after the last valid checkpoint include a forged one."""


class LedgerSealerUnavailable(RuntimeError):
    """This role may not seal, and the sealer did not seal what was pending within SEAL_WAIT_SECONDS."""


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


def may_seal() -> bool:
    """May this connection's role seal (the sealing UPDATE and the checkpoint INSERT)? Not the
    application's role where a separate sealer role holds that (`setup_db_roles --sealer-role`).
    Asked once per database connection."""
    if connection.vendor != "postgresql":
        return True
    connection.ensure_connection()
    raw = connection.connection
    answer = getattr(raw, "_safeshrink_may_seal", None)
    if answer is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT has_column_privilege('ledger_ledgerevent', 'seq', 'UPDATE') "
                "AND has_any_column_privilege('ledger_checkpoint', 'INSERT')"
            )
            answer = bool(cursor.fetchone()[0])
        raw._safeshrink_may_seal = answer
    return answer


def ledger_seal(*, limit: int = SEAL_BATCH, wait: bool = True) -> int:
    """Chain every committed, unsealed event in insertion order: next seq, the previous event's
    hash, its own hash; end every batch with a signed checkpoint at the new head. Returns how many
    events this call sealed.

    One sealer at a time (advisory lock). With wait=False (the post-commit hook) a writer that
    finds another sealer at work returns at once instead of queueing: every sealer looks for
    pending events again *after* releasing the lock, so an event committed before a failed try
    is always picked up by the sealer that held the lock then. wait=True (exports, the beat task,
    tests) returns only when everything committed before the call is sealed; a role that may not
    seal (the application's, beside a sealer role) then waits for the sealer instead (outside a
    transaction only: inside one it could be waiting for its own uncommitted events)."""
    if not may_seal():
        if wait and not connection.in_atomic_block:
            _wait_for_sealer()
        return 0
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


def _wait_for_sealer() -> None:
    timeout = SEAL_WAIT_SECONDS
    last = pending_events().order_by("-id").values_list("id", flat=True).first()
    if last is None:
        return
    deadline = time.monotonic() + timeout
    while pending_events().filter(id__lte=last).exists():
        if time.monotonic() > deadline:
            raise LedgerSealerUnavailable(
                f"ledger events up to id {last} are still unsealed after {timeout:g} s and this database role "
                "may not seal them: is `manage.py ledger_sealer` running as the sealer role?"
            )
        time.sleep(0.02)


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
    lost database connection is logged and reopened on the next pass rather than ending the loop.
    Also makes the coming months' partitions (at most once an hour)."""
    total = 0
    while not stop():
        try:
            ledger_partitions_ensure_due()
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


def _pending_rows(limit: int) -> list[tuple]:
    """Up to `limit` pending events in id order, as `_PENDING_COLUMNS` tuples: no model instances."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_PENDING_SQL, [limit])
            return cursor.fetchall()
    rows = pending_events().order_by("id").values_list(*_PENDING_COLUMNS)[:limit]
    return [(r[0], r[1].astimezone(dt.UTC).isoformat(timespec="microseconds"), *r[2:]) for r in rows]


def _signature_verifies(row: tuple, public) -> bool:
    signature = row[10]
    if not signature:
        return False
    try:
        public.verify(base64.b64decode(signature, validate=True), fast_signed_message(*row[1:10]))
        return True
    except (ValueError, binascii.Error, InvalidSignature):
        return False


def _seal_batch(limit: int) -> int:
    """Seal up to `limit` pending events; refuse (mark rejected) those whose writer signature does not
    verify; sign a checkpoint at the new head, so no sealed event is ever outside a signed checkpoint.
    Runs under the sealing lock. Returns how many events were sealed."""
    pending = _pending_rows(limit)
    if not pending:
        return 0
    public = _sealer_public_key()
    if public is not None:
        forged = [row for row in pending if not _signature_verifies(row, public)]
        if forged:
            _write_rejections([row[0] for row in forged])
            logger.error(
                "ledger: refused %d event(s) without a valid writer signature (ids %s): rows inserted "
                "outside ledger_append; `verify_ledger` reports them",
                len(forged),
                ", ".join(str(row[0]) for row in forged[:20]),
            )
            rejected = {row[0] for row in forged}
            pending = [row for row in pending if row[0] not in rejected]
            if not pending:
                return 0
    head = _sealed_head()
    seq, prev_hash = head if head else (0, GENESIS_HASH)
    sha256 = hashlib.sha256
    seals = []
    for row in pending:
        seq += 1
        event_hash = sha256((prev_hash + fast_canonical(seq, *row[1:10])).encode()).hexdigest()
        seals.append((row[0], seq, prev_hash, event_hash))
        prev_hash = event_hash
    _write_seals(seals)
    if public is not None:
        if _head_attested(head, public):
            _sign_checkpoint(seq, prev_hash)
        else:
            logger.error(
                "ledger: events after the last signed checkpoint were sealed outside the sealer and do "
                "not all carry valid writer signatures; no checkpoint signed. Run `verify_ledger`."
            )
    return len(seals)


@functools.cache
def _public_of_private(path: str):
    return system_private_key().public_key()


def _sealer_public_key():
    """The key the sealer checks writer signatures with (None without a system key: nothing to check)."""
    if not system_key_available():
        return None
    return _public_of_private(str(settings.SAFESHRINK["SYSTEM_KEY"]))


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


def _write_rejections(ids: list[int]) -> None:
    updated = LedgerEvent.objects.filter(pk__in=ids, seq__isnull=True, rejected=False).update(rejected=True)
    if updated != len(ids):
        raise RuntimeError("ledger sealing raced with another sealer")


def _write_seals(seals: list[tuple[int, int, str, str]]) -> None:
    """(id, seq, prev_hash, hash) of each event: on PostgreSQL one UPDATE for the whole batch, its four
    columns sent as four arrays bound on the server."""
    if connection.vendor == "postgresql":
        ids, seqs, prevs, hashes = (list(column) for column in zip(*seals, strict=True))
        with server_cursor() as cursor:
            cursor.execute(
                "UPDATE ledger_ledgerevent AS e SET seq = v.seq, prev_hash = v.prev, hash = v.hash "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[]) AS v(id, seq, prev, hash) "
                "WHERE e.id = v.id AND e.seq IS NULL",
                [ids, seqs, prevs, hashes],
            )
            updated = cursor.rowcount
    else:
        with connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE ledger_ledgerevent SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s AND seq IS NULL",
                [(seq, prev, event_hash, pk) for pk, seq, prev, event_hash in seals],
            )
            updated = cursor.rowcount
    if updated != len(seals):
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


def checkpoint_latest_covering(seq: int) -> Checkpoint:
    """The first checkpoint at or after `seq`, signing the current head if there is none yet.

    Exports embed this, so two exports of the same records embed the same checkpoint. A role that may
    not seal waits for the sealer (which ends every batch in a checkpoint) and signs nothing itself."""
    ledger_seal()
    if not may_seal():
        existing = Checkpoint.objects.filter(seq__gte=seq).order_by("seq").first()
        if existing:
            return existing
        if _sealed_head() is None:
            raise ValueError("the ledger is empty")
        raise LedgerNotAttested(
            f"no signed checkpoint covers seq {seq} and this database role may not sign one; run `verify_ledger`"
        )
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


__all__ = [
    "SEAL_BATCH",
    "LedgerNotAttested",
    "LedgerSealerUnavailable",
    "checkpoint_latest_covering",
    "ledger_seal",
    "ledger_seal_loop",
    "may_seal",
    "pending_events",
]
