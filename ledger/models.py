from django.db import models

from .canonical import canonical_json, sha256_hex

GENESIS_HASH = "0" * 64
# Domain separation: what the writer's Ed25519 signature over an event's content starts with.
EVENT_SIGNATURE_TYPE = "safeshrink.ledger.event/v1"


# What a writer inserts, in this order: the signed content and the writer's signature (the sealer later adds seq,
# prev_hash and hash). The append's INSERT, the sealer's read of pending events and the signature check use it.
WRITTEN_FIELDS = (
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


class LedgerEvent(models.Model):
    """One append-only audit event, chained to the previous one by `prev_hash`.

    The event is inserted in the same transaction as the change it records; right after that
    transaction commits, the sealer gives it the next `seq`, the previous event's hash and its own
    hash (so concurrent writers do not serialise on the chain while they commit). The payload is
    stored as its canonical JSON text so that verification hashes exactly the bytes that were
    written. On PostgreSQL a trigger refuses DELETE, and any UPDATE except the one-time sealing (or
    the one-time rejection of an event whose writer signature does not verify).

    `signature` is the writing process's Ed25519 signature (the system key) over the event's content
    (`signed_message`): a row inserted straight into the table by someone holding only database
    credentials has none, and the sealer marks it `rejected` instead of chaining it.
    """

    seq = models.PositiveBigIntegerField(unique=True, null=True, blank=True)
    occurred_at = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_username = models.CharField(max_length=150, blank=True)
    actor_role = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    payload_json = models.TextField()
    state_digest = models.CharField(max_length=64)
    # NULL, not "", until sealed: the append-only trigger and the sealer test for NULL.
    prev_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    signature = models.TextField(blank=True, default="", db_default="")
    rejected = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["id"], condition=models.Q(seq__isnull=True), name="ledger_event_unsealed"),
            models.Index(fields=["id"], condition=models.Q(rejected=True), name="ledger_event_rejected"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"

    def hashed_fields(self) -> dict:
        return event_fields(
            seq=self.seq,
            occurred_at=self.occurred_at,
            actor_id=self.actor_id,
            actor_username=self.actor_username,
            actor_role=self.actor_role,
            action=self.action,
            object_type=self.object_type,
            object_id=self.object_id,
            payload_json=self.payload_json,
            state_digest=self.state_digest,
        )


def event_fields(
    *,
    seq,
    occurred_at,
    actor_id,
    actor_username,
    actor_role,
    action,
    object_type,
    object_id,
    payload_json,
    state_digest,
) -> dict:
    """Every field of an event except the two hashes, in the form that is hashed."""
    return {
        "seq": seq,
        "occurred_at": occurred_at.isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor_username": actor_username,
        "actor_role": actor_role,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "payload_json": payload_json,
        "state_digest": state_digest,
    }


def signed_message(fields: dict) -> bytes:
    """The bytes the writer signs: canonical JSON of the event's content (every hashed field except
    `seq`, which the sealer assigns later) with a type tag, so an event signature means nothing else."""
    content = {key: value for key, value in fields.items() if key != "seq"}
    return canonical_json({"type": EVENT_SIGNATURE_TYPE, **content}).encode("utf-8")


def chain_hash(prev_hash: str, fields: dict) -> str:
    """hash = sha256(prev_hash ‖ canonical JSON of every other field)."""
    return sha256_hex(prev_hash + canonical_json(fields))


class Checkpoint(models.Model):
    """A signed statement of the ledger head (seq, head hash, time, key id), Ed25519 over canonical JSON."""

    seq = models.PositiveBigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    signed_at = models.CharField(max_length=40)
    key_id = models.CharField(max_length=64)
    signature = models.TextField()

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"checkpoint @{self.seq}"

    def as_statement(self) -> dict:
        from trust.checkpoints import CHECKPOINT_TYPE

        return {
            "type": CHECKPOINT_TYPE,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "at": self.signed_at,
            "key_id": self.key_id,
            "signature": self.signature,
        }
