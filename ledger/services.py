"""Appending to the audit ledger and recording refusals. Sealing (chaining, checkpoints) is
`ledger.sealing`, re-exported here; verification is `ledger.verification`; the signature checks both
use are `ledger.attestation`."""

import base64
import datetime as dt
import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from .actions import ACTIONS
from .binding import server_cursor
from .canonical import canonical_json, sha256_hex
from .fast import fast_signed_message
from .models import WRITTEN_FIELDS, LedgerEvent
from .sealing import (
    SEAL_BATCH,
    LedgerNotAttested,
    LedgerSealerUnavailable,
    checkpoint_latest_covering,
    ledger_seal,
    ledger_seal_loop,
    may_seal,
    pending_events,
)
from .signing import system_key_available, system_private_key

__all__ = [
    "CHECKPOINT_COLUMNS",
    "INSERTABLE_COLUMNS",
    "SEALING_COLUMNS",
    "SEAL_BATCH",
    "LedgerNotAttested",
    "LedgerSealerUnavailable",
    "checkpoint_latest_covering",
    "ledger_append",
    "ledger_record_refusal",
    "ledger_seal",
    "ledger_seal_loop",
    "may_seal",
    "pending_events",
]


def ledger_append(*, actor: Any, action: str, object_type: str, object_id: Any, payload: dict[str, Any]) -> LedgerEvent:
    """Record one event. Must run inside the caller's transaction, so the event and the change it
    records commit (or roll back) together. The event is chained (seq, prev_hash, hash) by
    `ledger_seal` after that transaction commits: by this process at once (LEDGER_SEALING "inline"), or
    by the dedicated sealer process within a fraction of a second ("sealer")."""
    if action not in ACTIONS:
        raise ValueError(f"unknown ledger action {action!r}")
    db = connections[DEFAULT_DB_ALIAS]  # looked up once: every `connection.x` goes through a thread-local
    if not db.in_atomic_block:
        raise RuntimeError("ledger_append must run inside transaction.atomic()")
    payload_json = canonical_json(payload)
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    occurred_at = timezone.now().astimezone(dt.UTC)
    actor_id = actor.pk if authenticated else None
    username = actor.get_username() if authenticated else "system"
    role = getattr(actor, "role", "") if authenticated else "system"
    object_id = str(object_id)
    digest = sha256_hex(payload_json)
    content = (actor_id, username, role, action, object_type, object_id, payload_json, digest)
    signature = _writer_signature(occurred_at, content)
    pk = _insert((occurred_at, *content, signature), db)
    # Positional, in _FIELDS order: a third of the cost of keywords.
    event = LedgerEvent(
        pk, None, occurred_at, actor_id, username, role, action, object_type, object_id, payload_json, digest,
        None, None, signature, False,
    )  # fmt: skip
    event._state.adding, event._state.db = False, db.alias
    if settings.SAFESHRINK.get("LEDGER_SEALING", "inline") == "inline":
        transaction.on_commit(lambda: ledger_seal(wait=False), robust=True)
    return event


_FIELDS = (
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
    "prev_hash",
    "hash",
    "signature",
    "rejected",
)
if tuple(f.attname for f in LedgerEvent._meta.concrete_fields) != _FIELDS:  # ledger_append builds events by position
    raise ImproperlyConfigured("LedgerEvent's fields changed order: update ledger.services._FIELDS")
# What the application's database role may write (`setup_db_roles` grants exactly these columns).
INSERTABLE_COLUMNS = WRITTEN_FIELDS
SEALING_COLUMNS = ("seq", "prev_hash", "hash", "rejected")
CHECKPOINT_COLUMNS = ("seq", "head_hash", "signed_at", "key_id", "signature")

# The writing process's private key, loaded once (keyed by its configured path).
_WRITER_KEYS: dict[str, Any] = {}


def _writer_key():
    path = str(settings.SAFESHRINK["SYSTEM_KEY"])
    key = _WRITER_KEYS.get(path)
    if key is None and system_key_available():  # no key yet: looked for again on the next append
        key = _WRITER_KEYS[path] = system_private_key()
    return key


def _writer_signature(occurred_at: dt.datetime, content: tuple) -> str:
    """The writing process's Ed25519 signature over the event's content (`signed_message`), base64 ("" without
    a key: the sealer then refuses the event, so a missing key shows up at once in `verify_ledger`)."""
    key = _writer_key()
    if key is None:
        return ""
    message = fast_signed_message(occurred_at.isoformat(timespec="microseconds"), *content)
    return base64.b64encode(key.sign(message)).decode("ascii")


@functools.cache
def _insert_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {quote(LedgerEvent._meta.db_table)} ({', '.join(quote(c) for c in WRITTEN_FIELDS)}) "
        f"VALUES ({', '.join(['%s'] * len(WRITTEN_FIELDS))}) RETURNING {quote('id')}"
    )


def _insert(values: tuple, db: Any = None) -> int:
    """INSERT ... RETURNING id with the SQL written once: every audited change pays for this, and the
    ORM's per-call query compilation cost more than the rest of the append (bench/ledger.py). On
    PostgreSQL the statement is bound on the server and prepared once per connection (`ledger.binding`)."""
    db = connection if db is None else db
    sql = _insert_sql(db.vendor)
    if db.vendor == "postgresql":
        with server_cursor(prepare=True, using=db) as cursor:
            cursor.execute(sql, values)
            return cursor.fetchone()[0]
    params = list(values)
    params[0] = db.ops.adapt_datetimefield_value(params[0])
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


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
