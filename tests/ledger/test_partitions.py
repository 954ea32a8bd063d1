"""Monthly partitions of the ledger's events on PostgreSQL (migration 0004): they exist, an event of any
month is stored, the append-only trigger holds in every partition, and verification and checkpoints
work across partitions. Most tests run inside the test's transaction, so the partitions they make
are rolled back with it; the migration test commits and cleans up after itself."""

import contextlib
import datetime as dt

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger.attestation import checkpoint_valid
from ledger.models import Checkpoint, LedgerEvent, chain_hash
from ledger.partitions import (
    DEFAULT_PARTITION,
    ledger_partition_create,
    ledger_partitions,
    ledger_partitions_ensure,
    partition_name,
)
from ledger.services import ledger_append, ledger_seal
from ledger.signing import system_public_key
from ledger.verification import ledger_verify
from tests.conftest import require_service

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _postgres() -> None:
    require_service("postgres")


def _month(offset: int, start: dt.date | None = None) -> dt.date:
    first = (start or timezone.now().astimezone(dt.UTC).date()).replace(day=1)
    index = first.year * 12 + first.month - 1 + offset
    return dt.date(index // 12, index % 12 + 1, 1)


@contextlib.contextmanager
def _clock(when: dt.datetime):
    """ledger_append stamps events with this time (and so chooses their partition)."""
    real = timezone.now
    timezone.now = lambda: when
    try:
        yield
    finally:
        timezone.now = real


def _append_at(when: dt.datetime, n: int = 1) -> list[int]:
    ids = []
    with _clock(when):
        for i in range(n):
            with transaction.atomic():
                event = ledger_append(
                    actor=None, action="run.requested", object_type="run", object_id=i, payload={"i": i}
                )
            ids.append(event.pk)
    return ids


def _partition_of(**lookup) -> str:
    event = LedgerEvent.objects.get(**lookup)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM ledger_ledgerevent WHERE id = %s AND occurred_at = %s",
            [event.pk, event.occurred_at],
        )
        return cursor.fetchone()[0]


def _raw(sql: str, params=()) -> None:
    """Change the table behind the application's back (the superuser, triggers switched off)."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


def test_partitions_exist_after_migrate_with_the_trigger_and_a_seq_index_on_each():
    names = [p.name for p in ledger_partitions()]
    assert {partition_name(_month(i)) for i in range(4)} <= set(names)  # this month and the next three
    assert names[-1] == DEFAULT_PARTITION
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_partkeydef('ledger_ledgerevent'::regclass)")
        assert cursor.fetchone()[0] == "RANGE (occurred_at)"
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'ledger_event_append_only' "
            "JOIN pg_indexes x ON x.tablename = c.relname AND x.indexname = c.relname || '_seq_key' "
            "WHERE i.inhparent = 'ledger_ledgerevent'::regclass"
        )
        assert sorted(r[0] for r in cursor.fetchall()) == sorted(names)


def test_ensure_makes_the_missing_months_once():
    assert ledger_partitions_ensure(months_ahead=5) == [partition_name(_month(4)), partition_name(_month(5))]
    assert ledger_partitions_ensure(months_ahead=5) == []
    with pytest.raises(DatabaseError, match="between 0 and 24"), transaction.atomic():
        ledger_partitions_ensure(months_ahead=25)


def test_an_event_of_a_month_without_a_partition_lands_in_the_default_one_and_stays():
    (old,) = _append_at(dt.datetime(2019, 5, 15, 12, tzinfo=dt.UTC))
    assert _partition_of(pk=old) == DEFAULT_PARTITION
    assert ledger_seal() == 1 and ledger_verify().ok
    # PostgreSQL would refuse a partition over rows the default holds: none is made, the event stays.
    assert ledger_partition_create(dt.date(2019, 5, 1)) is None
    assert partition_name(dt.date(2019, 5, 1)) not in [p.name for p in ledger_partitions()]
    # A month the default holds nothing of gets its partition, and the next event of it lands there.
    assert ledger_partition_create(dt.date(2019, 6, 1)) == "ledger_ledgerevent_p2019_06"
    (june,) = _append_at(dt.datetime(2019, 6, 2, tzinfo=dt.UTC))
    assert _partition_of(pk=june) == "ledger_ledgerevent_p2019_06"
    assert _partition_of(pk=old) == DEFAULT_PARTITION
    assert ledger_seal() == 1
    result = ledger_verify()
    assert result.ok and result.checked == 2


def test_the_trigger_refuses_update_and_delete_in_every_partition_including_a_new_one():
    new = ledger_partition_create(dt.date(2031, 1, 1))
    assert new == "ledger_ledgerevent_p2031_01"
    times = (dt.datetime(2031, 1, 10, tzinfo=dt.UTC), dt.datetime(2019, 5, 15, tzinfo=dt.UTC), timezone.now())
    for when in times:
        _append_at(when)
    assert ledger_seal() == 3
    for when in times:  # and an unsealed event in each partition
        _append_at(when)
    partitions = {new, DEFAULT_PARTITION, partition_name(_month(0))}
    assert {_partition_of(pk=pk) for pk in LedgerEvent.objects.values_list("pk", flat=True)} == partitions
    for table in sorted(partitions) + ["ledger_ledgerevent"]:
        for sql in (
            f"UPDATE {table} SET action = 'run.failed'",
            f"UPDATE {table} SET seq = seq + 100 WHERE seq IS NOT NULL",
            f"UPDATE {table} SET payload_json = '{{}}' WHERE seq IS NULL",
            f"DELETE FROM {table}",
        ):
            with (
                pytest.raises(DatabaseError, match="append-only"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql)
    assert LedgerEvent.objects.count() == 6
    assert ledger_seal() == 3 and ledger_verify().ok


def _two_months_of_events() -> tuple[str, str]:
    """Seq 1-3 at the end of January 2030, 4-6 at the start of February, each three sealed in one batch
    (so a checkpoint at seq 3, in the older partition, and one at 6)."""
    january = ledger_partition_create(dt.date(2030, 1, 1))
    february = ledger_partition_create(dt.date(2030, 2, 1))
    _append_at(dt.datetime(2030, 1, 31, 23, 59, 59, 999_000, tzinfo=dt.UTC), 3)
    assert ledger_seal() == 3
    _append_at(dt.datetime(2030, 2, 1, tzinfo=dt.UTC), 3)
    assert ledger_seal() == 3
    assert [_partition_of(seq=s) for s in (3, 4)] == [january, february]
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [3, 6]
    return january, february


def test_verification_walks_the_chain_across_partitions_and_a_checkpoint_in_an_older_one_verifies():
    _two_months_of_events()
    result = ledger_verify()
    assert (result.ok, result.checked, result.head_seq) == (True, 6, 6)
    assert result.checkpoints_checked == 2
    assert checkpoint_valid(3, system_public_key())
    assert ledger_verify(full=True).ok


def test_a_missing_event_at_a_partition_boundary_is_named():
    _two_months_of_events()
    _raw("DELETE FROM ledger_ledgerevent WHERE seq = 4")
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 4, "event 4 is missing")


def test_a_broken_link_at_a_partition_boundary_is_named():
    _two_months_of_events()
    _raw("UPDATE ledger_ledgerevent SET prev_hash = %s WHERE seq = 4", ["0" * 64])
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.reason) == (
        False,
        4,
        "prev_hash does not match the previous event",
    )


def test_tampering_with_an_event_in_an_old_partition_is_found_even_when_the_chain_is_rehashed():
    from ledger.canonical import canonical_json, sha256_hex

    _two_months_of_events()
    _raw("UPDATE ledger_ledgerevent SET payload_json = '{\"i\":9}' WHERE seq = 2")
    assert (ledger_verify().ok, ledger_verify().first_bad_seq) == (False, 2)
    # A forger who also fixes the digest and re-hashes every later event keeps the chain linked; the
    # checkpoint at seq 3 (in the old partition) and the writer's signature still name seq 2.
    forged = canonical_json({"i": 9})
    _raw("UPDATE ledger_ledgerevent SET state_digest = %s WHERE seq = 2", [sha256_hex(forged)])
    prev = LedgerEvent.objects.get(seq=1).hash
    for event in LedgerEvent.objects.filter(seq__gte=2).order_by("seq"):
        event_hash = chain_hash(prev, event.hashed_fields())
        _raw("UPDATE ledger_ledgerevent SET prev_hash = %s, hash = %s WHERE id = %s", [prev, event_hash, event.pk])
        prev = event_hash
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "writer's signature" in result.reason and result.bad_checkpoint_seq == 3


def test_a_seq_is_unique_in_its_partition_and_one_sealed_twice_in_two_partitions_is_named():
    january, _ = _two_months_of_events()
    columns = (
        "seq, actor_id, actor_username, actor_role, action, object_type, object_id, payload_json, "
        "state_digest, prev_hash, hash, signature"
    )
    copy = f"INSERT INTO ledger_ledgerevent (occurred_at, {columns}) SELECT %s, {columns} FROM ledger_ledgerevent"
    with connection.cursor() as cursor:  # (no trigger on INSERT: the superuser needs no tricks)
        with pytest.raises(IntegrityError), transaction.atomic():  # the same partition: its unique index
            cursor.execute(f"{copy} WHERE seq = 2", [dt.datetime(2030, 1, 15, tzinfo=dt.UTC)])
        cursor.execute(f"{copy} WHERE seq = 2", [dt.datetime(2030, 2, 15, tzinfo=dt.UTC)])  # another partition
    assert _partition_of(seq=2, occurred_at=dt.datetime(2030, 2, 15, tzinfo=dt.UTC)) != january
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.reason in ("seq 2 appears twice", "hash does not match the event's content")


def test_the_sealer_writes_a_whole_batch_with_one_update_and_leaves_no_gap():
    ledger_partition_create(dt.date(2030, 1, 1))
    _append_at(dt.datetime(2030, 1, 31, 23, 59, tzinfo=dt.UTC), 20)
    _append_at(timezone.now(), 20)
    with CaptureQueriesContext(connection) as queries:
        assert ledger_seal() == 40
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1 and "unnest" in updates[0]
    assert list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 41))
    assert list(LedgerEvent.objects.order_by("id").values_list("seq", flat=True)) == list(range(1, 41))
    assert ledger_verify().ok


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_a_plain_table_keeping_rows_ids_triggers_and_grants(settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}  # leave events pending
    role = f"safeshrink_app_{connection.settings_dict['NAME']}"[:63]
    call_command("setup_db_roles", "--app-role", role)
    _append_at(timezone.now(), 3)
    ledger_seal()
    _append_at(timezone.now())  # one pending
    try:
        call_command("migrate", "ledger", "0003", verbosity=0)
        assert _relkind() == "r" and LedgerEvent.objects.count() == 4
        assert _privileges(role) == (True, True)
        (old,) = _append_at(dt.datetime(2018, 3, 4, tzinfo=dt.UTC))  # a month no partition covers
        before = sorted(LedgerEvent.objects.values_list("id", "seq", "hash"))
    finally:
        call_command("migrate", "ledger", verbosity=0)
    try:
        assert _relkind() == "p"
        assert sorted(LedgerEvent.objects.values_list("id", "seq", "hash")) == before
        assert _partition_of(pk=old) == "ledger_ledgerevent_p2018_03"  # made for the rows' months
        assert _privileges(role) == (True, True)  # the parent's grants kept ...
        for partition in ledger_partitions():  # ... and none on any partition
            assert not _may_read(role, partition.name), partition.name
        (new,) = _append_at(timezone.now())
        assert new > max(pk for pk, _, _ in before)  # the identity sequence carried on
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM ledger_ledgerevent_p2018_03")
        assert ledger_seal() == 3
        result = ledger_verify()
        assert result.ok and result.checked == 6
    finally:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE ledger_ledgerevent, ledger_checkpoint CASCADE")
            cursor.execute("DROP TABLE IF EXISTS ledger_ledgerevent_p2018_03")


def _relkind() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'ledger_ledgerevent'::regclass")
        return cursor.fetchone()[0]


def _privileges(role: str) -> tuple[bool, bool]:
    """May `role` insert an event's content, and seal?"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT has_column_privilege(%s, 'ledger_ledgerevent', 'payload_json', 'INSERT'), "
            "has_column_privilege(%s, 'ledger_ledgerevent', 'seq', 'UPDATE')",
            [role, role],
        )
        return cursor.fetchone()


def _may_read(role: str, table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, table])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_large_ledger_is_walked_in_two_processes_on_one_snapshot(settings, monkeypatch):
    """From PARALLEL_FROM events on, a second process walks the upper half (here from 10 events): the
    result is the same, and a fault in either half or at the seam between them is named."""
    import ledger.verification as verification

    monkeypatch.setattr(verification, "PARALLEL_FROM", 10)
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    names = [ledger_partition_create(dt.date(2030, 1, 1)), ledger_partition_create(dt.date(2030, 2, 1))]
    try:
        _append_at(dt.datetime(2030, 1, 31, 23, tzinfo=dt.UTC), 6)
        assert ledger_seal() == 6
        _append_at(dt.datetime(2030, 2, 1, 1, tzinfo=dt.UTC), 6)
        assert ledger_seal() == 6
        result = ledger_verify()
        assert (result.ok, result.checked, result.head_seq, result.checkpoints_checked) == (True, 12, 12, 2)
        assert result.head_hash == LedgerEvent.objects.get(seq=12).hash
        _raw("UPDATE ledger_ledgerevent SET prev_hash = %s WHERE seq = 7", ["0" * 64])  # the seam (6 | 7)
        assert (ledger_verify().first_bad_seq, ledger_verify().reason) == (
            7,
            "prev_hash does not match the previous event",
        )
        _raw("UPDATE ledger_ledgerevent SET payload_json = '{}' WHERE seq = 10")  # the upper half ...
        assert ledger_verify().first_bad_seq == 7  # ... the first fault is still the one named
        _raw("UPDATE ledger_ledgerevent SET prev_hash = %s WHERE seq = 7", [LedgerEvent.objects.get(seq=6).hash])
        assert (ledger_verify().first_bad_seq, ledger_verify().reason) == (10, "payload does not match its digest")
        _raw("DELETE FROM ledger_ledgerevent WHERE seq = 7")
        assert (ledger_verify().first_bad_seq, ledger_verify().reason) == (7, "event 7 is missing")
        _raw("UPDATE ledger_ledgerevent SET payload_json = '{}' WHERE seq = 2")  # the lower half
        assert (ledger_verify().first_bad_seq, ledger_verify().reason) == (2, "payload does not match its digest")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE ledger_ledgerevent, ledger_checkpoint CASCADE")
            for name in names:
                cursor.execute(f"DROP TABLE {name}")
