"""Walking the hash chain: the loop `ledger_verify` runs over every sealed event, with no Django, so that
on PostgreSQL a second process can walk half of a large ledger while the first walks the other half
(`python -m ledger.chain`, fed its connection, snapshot and range on stdin): on two cores that is the
difference between ~5 s and ~3 s for a million events.

Each event is read as (seq, actor_id, joined): its ten text fields joined by U+001F, a NULL hash as
U+001E (which no hash equals). On PostgreSQL the server joins them and formats the time: one text to
decode instead of ten. A field that holds U+001F itself (the application writes none: canonical JSON
escapes control characters) splits into too many parts; that event alone is read again column by
column (`exact`), so its check is exactly the same."""

import contextlib
import hashlib
import json
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring

GENESIS_HASH = "0" * 64  # ledger.models.GENESIS_HASH (a test keeps them equal)
SEPARATOR, NULL = "\x1f", "\x1e"
TEXT_FIELDS = 10  # occurred_at, actor_username, actor_role, action, object_type, object_id, payload_json,
# state_digest, prev_hash, hash
ISO_UTC = "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
JOINED = (
    f"concat_ws(chr(31), {ISO_UTC}, actor_username, actor_role, action, object_type, object_id, payload_json, "
    "state_digest, coalesce(prev_hash, chr(30)), coalesce(hash, chr(30)))"
)
ROWS_SQL = f"SELECT seq, actor_id, {JOINED} FROM ledger_ledgerevent WHERE seq BETWEEN %s AND %s ORDER BY seq"
EXACT_SQL = (
    f"SELECT {ISO_UTC}, actor_username, actor_role, action, object_type, object_id, payload_json, state_digest, "
    f"coalesce(prev_hash, chr(30)), coalesce(hash, chr(30)) FROM ledger_ledgerevent WHERE seq = %s AND {JOINED} = %s "
    "LIMIT 1"
)

Exact = Callable[[int, str], list[str]]


def walk(rows: Iterable[tuple], *, first_seq: int, first_prev: str | None, checkpoints: dict, exact: Exact) -> dict:
    """Check the events of `rows` (seq order, starting at `first_seq`): seqs consecutive, each prev_hash the
    previous event's hash (the first one's: `first_prev`, unless None), each hash recomputed from the
    event's content. Stops at the first failure. Returns what `ledger_verify` needs: how many events
    passed, the first event's seq and prev_hash, the last good one's hash, the failure (seq, reason) if
    any, and the checkpoints in range whose head hash matched or did not."""
    sha256, quote, separator, fields_per_row = hashlib.sha256, encode_basestring, SEPARATOR, TEXT_FIELDS
    expected_seq, prev_hash, checked = first_seq, first_prev, 0
    first: list | None = None
    failure: list | None = None
    matched: list[int] = []
    mismatched: list[int] = []
    for seq, actor_id, joined in rows:
        fields = joined.split(separator)
        if len(fields) != fields_per_row:
            fields = exact(seq, joined)
        occurred, username, role, action, object_type, object_id, payload, digest, stored_prev, stored_hash = fields
        if first is None:
            first = [seq, stored_prev]
        if seq != expected_seq:
            # Seqs are unique per partition only (ledger.partitions): one sealed twice, in two partitions,
            # arrives here right after the first.
            reason = f"seq {seq} appears twice" if seq < expected_seq else f"event {expected_seq} is missing"
            failure = [min(seq, expected_seq), reason]
            break
        if prev_hash is None:
            prev_hash = stored_prev  # the caller checks the first link
        elif stored_prev != prev_hash:
            failure = [seq, "prev_hash does not match the previous event"]
            break
        # prev_hash + canonical_json(event_fields(...)), written out (keys in sorted order) as in ledger.fast;
        # the time is ISO digits (to_char, or isoformat in `ledger.verification`), which JSON does not escape.
        canonical = (
            f'{prev_hash}{{"action":{quote(action)},"actor_id":{"null" if actor_id is None else actor_id},'
            f'"actor_role":{quote(role)},"actor_username":{quote(username)},"object_id":{quote(object_id)},'
            f'"object_type":{quote(object_type)},"occurred_at":"{occurred}","payload_json":{quote(payload)},'
            f'"seq":{seq},"state_digest":{quote(digest)}}}'
        )
        if sha256(canonical.encode()).hexdigest() != stored_hash:
            # The hash covers the payload and its digest, so one check detects both; this names which.
            exact_payload, exact_digest = exact(seq, joined)[6:8]
            digest_ok = hashlib.sha256(exact_payload.encode()).hexdigest() == exact_digest
            failure = [
                seq,
                "hash does not match the event's content" if digest_ok else "payload does not match its digest",
            ]
            break
        if seq in checkpoints:
            (matched if checkpoints[seq] == stored_hash else mismatched).append(seq)
        prev_hash, expected_seq, checked = stored_hash, seq + 1, checked + 1
    return {
        "checked": checked,
        "first": first,
        "last_good_seq": expected_seq - 1,
        "last_hash": prev_hash,
        "failure": failure,
        "matched": matched,
        "mismatched": mismatched,
    }


def prefetched(cursor, chunk_size: int):
    """The rows of a server-side cursor, the next batch fetched by a helper thread while the caller hashes
    the current one: the server's work (reading every partition in seq order, formatting, sending) then
    overlaps the hashing. Stops the helper if the caller stops early."""
    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(chunk_size)
                batches.put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed to the caller's thread
            batches.put(exc)

    helper = threading.Thread(target=fetch, name="ledger-chain-fetch", daemon=True)
    helper.start()
    try:
        while True:
            rows = batches.get()
            if isinstance(rows, BaseException):
                raise rows
            if not rows:
                return
            yield from rows
    finally:
        stop.set()
        while helper.is_alive():  # let a blocked put() finish, then the helper sees `stop`
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.05)
        helper.join()


def walk_postgres(conn, lo: int, hi: int, *, first_prev: str | None, checkpoints: dict, chunk_size: int) -> dict:
    """`walk` over lo <= seq <= hi on a psycopg connection, inside the caller's transaction. From lo = 1 every
    event up to hi is read, seq 0 or below too (none is valid: the walk names it)."""

    def exact(seq: int, joined: str) -> list[str]:
        with conn.cursor() as cursor:  # the helper's fetch on the same connection waits its turn
            cursor.execute(EXACT_SQL, [seq, joined])
            return list(cursor.fetchone())

    with conn.cursor(name="ledger_chain") as cursor:
        cursor.execute(ROWS_SQL, [lo if lo > 1 else -(2**63), hi])
        return walk(
            prefetched(cursor, chunk_size), first_seq=lo, first_prev=first_prev, checkpoints=checkpoints, exact=exact
        )


def main() -> None:
    """The second process: {"conninfo", "snapshot", "lo", "hi", "checkpoints", "chunk_size"} on stdin,
    `walk`'s result as JSON on stdout. Reads the exported snapshot of the first process's transaction,
    so both halves see the same ledger."""
    import psycopg

    job = json.loads(sys.stdin.read())
    checkpoints = {int(seq): head for seq, head in job["checkpoints"].items()}
    with psycopg.connect(job["conninfo"]) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(psycopg.sql.Literal(job["snapshot"])))
        result = walk_postgres(
            conn, job["lo"], job["hi"], first_prev=None, checkpoints=checkpoints, chunk_size=job["chunk_size"]
        )
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
