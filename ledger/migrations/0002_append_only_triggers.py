"""On PostgreSQL, make the ledger tables append-only.

Events: DELETE is refused; UPDATE is refused except the one-time sealing that sets seq, prev_hash
and hash on an unsealed event and changes nothing else. Checkpoints: UPDATE and DELETE refused.
TRUNCATE stays possible for the test runner's flush; the hash chain and the signed checkpoints
detect anything done that way."""

from django.db import migrations

CREATE = """
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
    RAISE EXCEPTION 'ledger events are append-only: %% refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_event_append_only BEFORE UPDATE OR DELETE ON ledger_ledgerevent
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_checkpoint_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoint
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""
DROP = """
DROP TRIGGER IF EXISTS ledger_event_append_only ON ledger_ledgerevent;
DROP TRIGGER IF EXISTS ledger_checkpoint_append_only ON ledger_checkpoint;
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
