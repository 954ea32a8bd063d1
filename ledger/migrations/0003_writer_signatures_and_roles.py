"""Writer signatures on events, the one-time rejection of a forged event, and fixed triggers.

- `signature`: the writing process's Ed25519 signature over the event's content; `rejected`: set by
  the sealer, instead of sealing, on an event whose signature does not verify (a row inserted
  straight into the table with database credentials alone). See ARCHITECTURE.md, "The ledger's
  write path".
- The events trigger allows exactly two UPDATEs of an unsealed, unrejected event, each changing
  nothing else: the sealing (seq, prev_hash, hash from NULL to values) and the rejection.
- Checkpoints get their own trigger function: the shared one read OLD.hash, which a checkpoint row
  does not have, so every refused change failed with `record "old" has no field "hash"` instead of
  saying why. The roles that may do what are set by `manage.py setup_db_roles`.
"""

from django.db import migrations, models

CREATE = """
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL AND NOT OLD.rejected
           AND NEW.id = OLD.id AND NEW.occurred_at = OLD.occurred_at
           AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id AND NEW.actor_username = OLD.actor_username
           AND NEW.actor_role = OLD.actor_role AND NEW.action = OLD.action AND NEW.object_type = OLD.object_type
           AND NEW.object_id = OLD.object_id AND NEW.payload_json = OLD.payload_json
           AND NEW.state_digest = OLD.state_digest AND NEW.signature = OLD.signature THEN
            IF NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL AND NOT NEW.rejected THEN
                RETURN NEW;  -- the one-time sealing
            END IF;
            IF NEW.rejected AND NEW.seq IS NULL AND NEW.prev_hash IS NULL AND NEW.hash IS NULL THEN
                RETURN NEW;  -- the one-time rejection of an event whose writer signature does not verify
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION 'ledger events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION ledger_refuse_checkpoint_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger checkpoints are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS ledger_checkpoint_append_only ON ledger_checkpoint;
CREATE TRIGGER ledger_checkpoint_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_checkpoint_change();
"""

# Back to 0002's functions (the checkpoint trigger shares the events' function again).
DROP = """
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'ledger_ledgerevent'
       AND OLD.seq IS NULL AND OLD.hash IS NULL AND NEW.seq IS NOT NULL AND NEW.hash IS NOT NULL
       AND NEW.id = OLD.id AND NEW.occurred_at = OLD.occurred_at
       AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id AND NEW.actor_username = OLD.actor_username
       AND NEW.actor_role = OLD.actor_role AND NEW.action = OLD.action AND NEW.object_type = OLD.object_type
       AND NEW.object_id = OLD.object_id AND NEW.payload_json = OLD.payload_json
       AND NEW.state_digest = OLD.state_digest THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS ledger_checkpoint_append_only ON ledger_checkpoint;
CREATE TRIGGER ledger_checkpoint_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
DROP FUNCTION IF EXISTS ledger_refuse_checkpoint_change();
"""


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_append_only_triggers")]
    operations = [
        migrations.AddField(model_name="ledgerevent", name="signature",
                            field=models.TextField(blank=True, default="", db_default="")),
        migrations.AddField(model_name="ledgerevent", name="rejected",
                            field=models.BooleanField(default=False, db_default=False)),
        migrations.AddIndex(model_name="ledgerevent",
                            index=models.Index(fields=["id"], condition=models.Q(rejected=True),
                                               name="ledger_event_rejected")),
        migrations.RunPython(forwards, backwards),
    ]
