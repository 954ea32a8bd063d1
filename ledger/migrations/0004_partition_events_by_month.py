"""On PostgreSQL, ledger events move to a table partitioned by month of `occurred_at` (UTC).

Every row, the append-only trigger and the table's grants are kept; SQLite keeps its plain table (this
migration does nothing there). What changes on PostgreSQL (ARCHITECTURE.md, "Monthly partitions"):

- `ledger_ledgerevent` is `PARTITION BY RANGE (occurred_at)`: one partition per calendar month (UTC),
  `ledger_ledgerevent_pYYYY_MM`, and `ledger_ledgerevent_default` for any time no partition covers,
  so an insert never fails for want of a partition.
- The primary key becomes (id, occurred_at): PostgreSQL requires the partition key in every unique
  constraint. `id` still comes from one identity sequence, so it stays unique.
- `seq` is unique per partition (an index on each, created with the partition); across partitions it
  is kept unique by the single sealer (advisory lock, `WHERE seq IS NULL`) and checked by
  `verify_ledger`, which walks seq 1, 2, 3, ... and names a repeated or missing one. `hash` has no
  index any more: nothing looks an event up by it, and verification recomputes every one (a
  repeated hash would need a repeated seq, which that walk names).
- Partitions are made by `ledger_event_partition_create(month)` (the owner's, for any month) and
  `ledger_event_partitions_ensure(months_ahead)` (this month and up to 24 ahead), SECURITY DEFINER
  functions owned by the migrating role: the sealer and beat call the latter (`setup_db_roles` grants
  EXECUTE) without owning the table. Each new partition gets the seq index and loses every grant
  (default privileges included): partitions are read and written only through the parent, whose
  grants apply. The row trigger on the parent is cloned onto every partition, present and future.
"""

from django.db import migrations

TABLE = "ledger_ledgerevent"
OLD = "ledger_ledgerevent_unpartitioned"
MONTHS_AHEAD = 3

FUNCTIONS = """
CREATE OR REPLACE FUNCTION ledger_event_partition_secure(part regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, @schema@ AS $$
DECLARE
    grantee_name text;
BEGIN
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON %s (seq)',
                   (SELECT relname FROM pg_class WHERE oid = part) || '_seq_key', part);
    -- Reached only through the parent, whose grants apply: drop whatever default privileges gave.
    FOR grantee_name IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
        WHERE c.oid = part AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', part, grantee_name);
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION ledger_event_partition_create(in_month date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, @schema@ SET lock_timeout = '10s' AS $$
DECLARE
    first_day timestamp := date_trunc('month', in_month::timestamp);
    start_at timestamptz := first_day AT TIME ZONE 'UTC';
    end_at timestamptz := (first_day + interval '1 month') AT TIME ZONE 'UTC';
    part_name text := 'ledger_ledgerevent_p' || to_char(first_day, 'YYYY_MM');
BEGIN
    PERFORM pg_advisory_xact_lock(1523476594);  -- one creator at a time
    IF to_regclass(part_name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_ledgerevent_default WHERE occurred_at >= start_at AND occurred_at < end_at) THEN
        RAISE WARNING 'ledger: events of % are in the default partition, which keeps them; no partition for that month',
            to_char(first_day, 'YYYY-MM');
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.ledger_ledgerevent FOR VALUES FROM (%L) TO (%L)',
                   '@schema@', part_name, '@schema@', start_at, end_at);
    PERFORM ledger_event_partition_secure(part_name::regclass);
    RETURN part_name;
END;
$$;

CREATE OR REPLACE FUNCTION ledger_event_partitions_ensure(months_ahead integer) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, @schema@ AS $$
DECLARE
    made text;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 24 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 24, not %', months_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0..months_ahead LOOP
        made := ledger_event_partition_create(
            (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date);
        IF made IS NOT NULL THEN
            RETURN NEXT made;
        END IF;
    END LOOP;
END;
$$;

REVOKE ALL ON FUNCTION ledger_event_partition_secure(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger_event_partition_create(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger_event_partitions_ensure(integer) FROM PUBLIC;
"""

PARTITIONED_INDEXES = f"""
ALTER TABLE {TABLE} ADD CONSTRAINT ledger_ledgerevent_pkey PRIMARY KEY (id, occurred_at);
CREATE INDEX ledger_ledgerevent_action_edd3eb2c ON {TABLE} (action);
CREATE INDEX ledger_ledg_object__c92fd5_idx ON {TABLE} (object_type, object_id);
CREATE INDEX ledger_event_unsealed ON {TABLE} (id) WHERE seq IS NULL;
CREATE INDEX ledger_event_rejected ON {TABLE} (id) WHERE rejected;
"""

# What migrations 0001 and 0003 made, for going back.
PLAIN_INDEXES = f"""
ALTER TABLE {TABLE} ADD CONSTRAINT ledger_ledgerevent_pkey PRIMARY KEY (id);
ALTER TABLE {TABLE} ADD CONSTRAINT ledger_ledgerevent_seq_key UNIQUE (seq);
ALTER TABLE {TABLE} ADD CONSTRAINT ledger_ledgerevent_hash_key UNIQUE (hash);
CREATE INDEX ledger_ledgerevent_hash_081342ca_like ON {TABLE} (hash varchar_pattern_ops);
CREATE INDEX ledger_ledgerevent_action_edd3eb2c ON {TABLE} (action);
CREATE INDEX ledger_ledgerevent_action_edd3eb2c_like ON {TABLE} (action varchar_pattern_ops);
CREATE INDEX ledger_ledg_object__c92fd5_idx ON {TABLE} (object_type, object_id);
CREATE INDEX ledger_event_unsealed ON {TABLE} (id) WHERE seq IS NULL;
CREATE INDEX ledger_event_rejected ON {TABLE} (id) WHERE rejected;
"""

TRIGGER = f"""
CREATE TRIGGER ledger_event_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""


def _grants(cursor, table: str) -> list[tuple[str, str, str | None]]:
    """(privilege, grantee, column or None) for every grant on `table` but its owner's."""
    cursor.execute(
        """
        SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
               NULL
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
        WHERE c.oid = %s::regclass AND a.grantee <> c.relowner
        UNION ALL
        SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
               quote_ident(att.attname)
        FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid CROSS JOIN LATERAL aclexplode(att.attacl) a
        WHERE att.attrelid = %s::regclass AND att.attnum > 0 AND NOT att.attisdropped AND a.grantee <> c.relowner
        """,
        [table, table],
    )
    return list(cursor.fetchall())


def _convert(cursor, *, partitioned: bool) -> None:
    """Rebuild the events table as partitioned (or back as plain), keeping every row, the identity
    sequence's position, the trigger and the grants. Runs in the migration's transaction."""
    cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    grants = _grants(cursor, TABLE)
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
    sequence = cursor.fetchone()[0]
    cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
    cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {OLD}_id_seq")
    # Free the names of the constraints and indexes the new table takes over.
    cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype IN ('p', 'u')", [OLD])
    for (name,) in cursor.fetchall():
        cursor.execute(f'ALTER TABLE {OLD} DROP CONSTRAINT "{name}"')
    cursor.execute(
        "SELECT quote_ident(c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass",
        [OLD],
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f"DROP INDEX {name}")
    like = f"(LIKE {OLD} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
    if partitioned:
        cursor.execute(f"CREATE TABLE {TABLE} {like} PARTITION BY RANGE (occurred_at)")
        cursor.execute(PARTITIONED_INDEXES)
        cursor.execute("SELECT current_schema()")
        schema = cursor.fetchone()[0]
        assert schema.isidentifier() and schema.islower(), schema  # embedded in the functions' SQL
        cursor.execute(FUNCTIONS.replace("@schema@", schema))
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
        cursor.execute(f"SELECT ledger_event_partition_secure('{TABLE}_default'::regclass)")
        cursor.execute(f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM {OLD}")
        for (month,) in cursor.fetchall():
            cursor.execute("SELECT ledger_event_partition_create(%s)", [month])
        cursor.execute("SELECT ledger_event_partitions_ensure(%s)", [MONTHS_AHEAD])
    else:
        cursor.execute(f"CREATE TABLE {TABLE} {like}")
        cursor.execute(PLAIN_INDEXES)
    cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD} ORDER BY id")
    cursor.execute(f"SELECT last_value, is_called FROM {OLD}_id_seq")
    last_value, is_called = cursor.fetchone()
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [TABLE, last_value, is_called])
    cursor.execute(TRIGGER)
    # The new table got its creator's default privileges: replace them by exactly the old table's grants.
    for _, grantee, _ in _grants(cursor, TABLE):
        cursor.execute(f"REVOKE ALL ON {TABLE} FROM {grantee}")
    for privilege, grantee, column in grants:
        cursor.execute(f"GRANT {privilege}{f' ({column})' if column else ''} ON {TABLE} TO {grantee}")
    cursor.execute(f"DROP TABLE {OLD}")
    if not partitioned:
        cursor.execute(
            "DROP FUNCTION ledger_event_partitions_ensure(integer), ledger_event_partition_create(date), "
            "ledger_event_partition_secure(regclass)"
        )
    cursor.execute(f"ANALYZE {TABLE}")


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            _convert(cursor, partitioned=True)


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            _convert(cursor, partitioned=False)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_writer_signatures_and_roles")]
    operations = [migrations.RunPython(forwards, backwards)]
