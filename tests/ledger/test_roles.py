"""The role split on PostgreSQL: the application's role (setup_db_roles) can append and seal, and can
neither switch off the ledger's protection nor slip a forged event into the signed chain.

The role is created on the test server with a name unique to the test database (roles are
cluster-wide); the test runner still flushes tables as the owner (TRUNCATE), which these grants
leave untouched."""

import contextlib
import datetime as dt

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from ledger.canonical import sha256_hex
from ledger.models import Checkpoint, LedgerEvent, chain_hash
from ledger.services import (
    LedgerNotAttested,
    checkpoint_latest_covering,
    ledger_append,
    ledger_seal,
    pending_events,
)
from ledger.verification import ledger_verify
from tests.conftest import require_service

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

INSUFFICIENT_PRIVILEGE = "42501"


@pytest.fixture
def app_role() -> str:
    require_service("postgres")
    name = f"safeshrink_app_{connection.settings_dict['NAME']}"[:63]
    call_command("setup_db_roles", "--app-role", name)
    call_command("setup_db_roles", "--app-role", name)  # idempotent
    return name


def _connect(role: str) -> psycopg.Connection:
    """A connection of the application's own: logged in as the role, not a superuser's SET ROLE."""
    conf = connection.settings_dict
    return psycopg.connect(
        host=conf["HOST"] or None, port=conf["PORT"] or None, dbname=conf["NAME"], user=role, autocommit=True
    )


@contextlib.contextmanager
def _django_as(role: str):
    """Run Django's default connection as `role` for the block (as web, workers and the sealer would)."""
    conf = connection.settings_dict
    saved = conf["USER"], conf["PASSWORD"]
    connection.close()
    conf["USER"], conf["PASSWORD"] = role, ""
    try:
        yield
    finally:
        connection.close()
        conf["USER"], conf["PASSWORD"] = saved


def _append(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with transaction.atomic():
            ledger_append(actor=None, action="run.requested", object_type="run", object_id=i, payload={"i": i})
    ledger_seal()


def _forge_row(conn: psycopg.Connection, signature: str | None = None) -> int:
    payload = '{"approved":true}'
    columns = (
        "occurred_at, actor_id, actor_username, actor_role, action, object_type, object_id, payload_json, "
        "state_digest" + (", signature" if signature is not None else "")
    )
    values = [
        dt.datetime.now(dt.UTC),
        None,
        "system",
        "system",
        "release.approved",
        "release",
        "1",
        payload,
        sha256_hex(payload),
    ] + ([signature] if signature is not None else [])
    placeholders = ", ".join(["%s"] * len(values))
    return conn.execute(
        f"INSERT INTO ledger_ledgerevent ({columns}) VALUES ({placeholders}) RETURNING id", values
    ).fetchone()[0]


def test_app_role_cannot_switch_off_the_ledger_protection(app_role):
    _append(3)
    before = list(LedgerEvent.objects.order_by("seq").values_list("seq", "payload_json", "hash"))
    refused = [
        "ALTER TABLE ledger_ledgerevent DISABLE TRIGGER ledger_event_append_only",
        "ALTER TABLE ledger_ledgerevent DISABLE TRIGGER ALL",
        "ALTER TABLE ledger_checkpoint DISABLE TRIGGER ALL",
        "DROP TRIGGER ledger_event_append_only ON ledger_ledgerevent",
        "DROP FUNCTION ledger_refuse_change() CASCADE",
        "TRUNCATE ledger_ledgerevent CASCADE",
        "TRUNCATE ledger_checkpoint",
        "DROP TABLE ledger_ledgerevent CASCADE",
        "SET session_replication_role = replica",
        "UPDATE ledger_ledgerevent SET payload_json = '{}' WHERE seq = 2",  # content: no column grant
        "UPDATE ledger_ledgerevent SET seq = 99 WHERE seq = 1",  # re-sealing: the trigger refuses
        "UPDATE ledger_ledgerevent SET rejected = true WHERE seq = 1",  # rejecting a sealed event: the trigger
        "UPDATE ledger_checkpoint SET head_hash = 'x'",
        "DELETE FROM ledger_ledgerevent WHERE seq = 3",
        "DELETE FROM ledger_checkpoint",
        # A pre-sealed row: seq, prev_hash and hash are not among the columns it may insert.
        "INSERT INTO ledger_ledgerevent (occurred_at, actor_username, actor_role, action, object_type, object_id, "
        "payload_json, state_digest, seq, prev_hash, hash) "
        "VALUES (now(), 'x', 'x', 'x', 'x', 'x', '{}', 'x', 4, 'x', 'y')",
    ]
    with _connect(app_role) as conn:
        for sql in refused:
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(sql)
            assert caught.value.sqlstate == INSUFFICIENT_PRIVILEGE, (sql, caught.value)
        assert conn.execute("SELECT count(*) FROM ledger_ledgerevent").fetchone()[0] == 3  # it may read
    assert list(LedgerEvent.objects.order_by("seq").values_list("seq", "payload_json", "hash")) == before
    assert ledger_verify().ok


def test_app_role_appends_seals_and_signs_checkpoints_through_the_services(app_role, make_user):
    with _django_as(app_role):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user")
            assert cursor.fetchone() == (app_role, False)
        make_user("ann", "engineer")  # business tables: ordinary writes (user_create appends an event too)
        _append(4)
        result = ledger_verify()
    assert result.ok and result.checked == 5 and result.pending == 0
    assert Checkpoint.objects.order_by("-seq").values_list("seq", flat=True).first() == 5


def test_forged_row_inserted_with_the_app_role_is_refused_and_reported(app_role):
    _append(2)
    with _connect(app_role) as conn:
        unsigned = _forge_row(conn)
        badly_signed = _forge_row(conn, signature="A" * 86 + "==")
    with _django_as(app_role):
        assert ledger_seal() == 0  # refused, not chained
        _append(1, start=2)  # the ledger goes on
    refused = LedgerEvent.objects.filter(rejected=True)
    assert sorted(refused.values_list("id", flat=True)) == sorted([unsigned, badly_signed])
    assert not refused.filter(seq__isnull=False).exists()
    result = ledger_verify()
    assert (result.ok, result.rejected, result.checked) == (False, 2, 3)
    assert "refused by the sealer" in result.reason and str(unsigned) in result.reason
    with pytest.raises(CommandError, match="BROKEN: 2 event"):
        call_command("verify_ledger")


def test_forged_row_sealed_by_hand_with_the_app_role_is_named_and_not_signed_over(app_role):
    """The app role may perform the sealing UPDATE, so it can chain a forged row with a correct hash;
    the real sealer then signs no checkpoint over it, and verify_ledger names it."""
    _append(2)
    signed = list(Checkpoint.objects.values_list("seq", flat=True))
    assert signed[-1] == 2
    head = LedgerEvent.objects.get(seq=2)
    with _connect(app_role) as conn:
        forged_id = _forge_row(conn)
        forged = LedgerEvent.objects.get(pk=forged_id)
        forged.seq, forged.prev_hash = 3, head.hash
        forged.hash = chain_hash(head.hash, forged.hashed_fields())
        conn.execute(
            "UPDATE ledger_ledgerevent SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [3, forged.prev_hash, forged.hash, forged_id],
        )
    with _django_as(app_role):
        _append(1, start=2)  # sealed as seq 4, but no checkpoint covers the forged seq 3
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == signed
    assert LedgerEvent.objects.get(seq=4).action == "run.requested"
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "no writer signature" in result.reason
    with pytest.raises(LedgerNotAttested):  # an export would otherwise embed a checkpoint over it
        checkpoint_latest_covering(4)


def test_setup_db_roles_refuses_the_owner_as_the_application_role():
    require_service("postgres")
    with pytest.raises(CommandError, match="the owner"):
        call_command("setup_db_roles", "--app-role", connection.settings_dict["USER"])


def test_a_genuine_event_kept_out_of_the_chain_by_the_app_role_is_reported(app_role, settings):
    """The application's role may perform the one-time rejection; using it on a genuine event is named."""
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}  # leave it pending
    with transaction.atomic():
        event = ledger_append(actor=None, action="release.approved", object_type="release", object_id=1, payload={})
    with _connect(app_role) as conn:
        conn.execute("UPDATE ledger_ledgerevent SET rejected = true WHERE id = %s", [event.pk])
    result = ledger_verify()
    assert (result.ok, result.rejected) == (False, 1)
    assert f"event(s) {event.pk} carry a valid writer signature but were marked rejected" in result.reason


# --- A separate sealer role (setup_db_roles --sealer-role) and the monthly partitions (migration 0004) ---


@pytest.fixture
def split_roles():
    """(app role, sealer role): the application's may only insert events; the sealer's alone seals."""
    require_service("postgres")
    database = connection.settings_dict["NAME"]
    app, sealer = f"safeshrink_app_{database}"[:63], f"safeshrink_sealer_{database}"[:63]
    call_command("setup_db_roles", "--app-role", app, "--sealer-role", sealer)
    call_command("setup_db_roles", "--app-role", app, "--sealer-role", sealer)  # idempotent
    return app, sealer


@pytest.fixture
def later_partition():
    """A partition made after setup_db_roles ran (as the sealer makes next month's); dropped after."""
    from ledger.partitions import ledger_partition_create

    name = ledger_partition_create(dt.date(2032, 3, 1))
    assert name == "ledger_ledgerevent_p2032_03"
    yield name
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE ledger_ledgerevent, ledger_checkpoint CASCADE")
        cursor.execute(f"DROP TABLE {name}")


def _append_in_march_2032(n: int = 1) -> None:
    from django.utils import timezone

    real = timezone.now
    timezone.now = lambda: dt.datetime(2032, 3, 5, tzinfo=dt.UTC)
    try:
        for i in range(n):
            with transaction.atomic():
                ledger_append(actor=None, action="run.requested", object_type="run", object_id=i, payload={})
    finally:
        timezone.now = real


def _refused(conn: psycopg.Connection, sql: str, params=()) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, params)
    assert caught.value.sqlstate == INSUFFICIENT_PRIVILEGE, (sql, caught.value)


def test_split_roles_on_a_partition_made_later(split_roles, later_partition, settings):
    """The application's role inserts (through the parent, into the new partition) and nothing more; the
    sealer's role seals and signs there and nothing more; neither may touch a partition directly."""
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    app, sealer = split_roles
    with _django_as(app):
        _append_in_march_2032(2)
        assert ledger_seal(wait=False) == 0  # may not seal: leaves it to the sealer
    with _connect(app) as conn:
        for sql in (
            f"SELECT * FROM {later_partition}",
            f"INSERT INTO {later_partition} (occurred_at, actor_username, actor_role, action, object_type, "
            "object_id, payload_json, state_digest) VALUES ('2032-03-06', 'x', 'x', 'x', 'x', 'x', '{}', 'x')",
            f"UPDATE {later_partition} SET seq = 1",
            f"DELETE FROM {later_partition}",
            "UPDATE ledger_ledgerevent SET seq = 1, prev_hash = 'x', hash = 'y'",  # sealing: the sealer's alone
            "UPDATE ledger_ledgerevent SET rejected = true",
            "INSERT INTO ledger_checkpoint (seq, head_hash, signed_at, key_id, signature) "
            "VALUES (1, 'x', 'x', 'x', 'x')",
            "SELECT ledger_event_partition_create('2033-01-01')",  # the owner's
        ):
            _refused(conn, sql)
        assert conn.execute("SELECT count(*) FROM ledger_ledgerevent").fetchone() == (2,)  # reads the parent
        conn.execute("SELECT * FROM ledger_event_partitions_ensure(3)")  # beat may make the next months
    with _connect(sealer) as conn:
        for sql in (
            f"SELECT * FROM {later_partition}",
            f"UPDATE {later_partition} SET seq = 1, prev_hash = 'x', hash = 'y'",
            "INSERT INTO ledger_ledgerevent (occurred_at, actor_username, actor_role, action, object_type, "
            "object_id, payload_json, state_digest) VALUES (now(), 'x', 'x', 'x', 'x', 'x', '{}', 'x')",
            "UPDATE ledger_ledgerevent SET payload_json = '{}'",
            "DELETE FROM ledger_ledgerevent",
            "SELECT count(*) FROM accounts_user",  # no business table
        ):
            _refused(conn, sql)
    with _django_as(sealer):
        assert ledger_seal() == 2  # into the partition made after the grants
        result = ledger_verify()
    assert result.ok and result.checked == 2
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [2]


def test_the_app_role_beside_a_sealer_role_waits_for_the_sealer(split_roles, settings, monkeypatch):
    import ledger.sealing as sealing

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "inline"}  # the writer would seal ...
    app, sealer = split_roles
    monkeypatch.setattr(sealing, "SEAL_WAIT_SECONDS", 0.2)
    with _django_as(app):
        with transaction.atomic():  # ... but may not: the post-commit try returns at once
            ledger_append(actor=None, action="run.requested", object_type="run", object_id=1, payload={})
        assert pending_events().count() == 1
        with pytest.raises(sealing.LedgerSealerUnavailable, match="ledger_sealer"):
            ledger_seal()
    with _django_as(sealer):
        assert ledger_seal() == 1
    with _django_as(app):
        assert checkpoint_latest_covering(1).seq == 1  # the sealer's, not one of its own
        assert Checkpoint.objects.count() == 1


def test_writers_as_the_app_role_and_the_sealer_process_as_the_sealer_role_leave_a_gapless_chain(split_roles, settings):
    """4 writer threads as the application's role while `manage.py ledger_sealer` runs, as the sealer's
    role, in a process of its own (as docker/compose.yml runs it)."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    from django.db import connections

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    app, sealer = split_roles
    conf = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{sealer}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}",
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "SAFESHRINK_LEDGER_SEALING": "sealer",
        "SAFESHRINK_SYSTEM_KEY": str(settings.SAFESHRINK["SYSTEM_KEY"]),
        "SAFESHRINK_SYSTEM_PUBLIC_KEY": str(settings.SAFESHRINK["SYSTEM_PUBLIC_KEY"]),
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ledger_sealer", "--idle", "0.01", "--busy", "0.005", "-v", "2"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def writer(index: int) -> None:
            try:
                for i in range(25):
                    with transaction.atomic():
                        ledger_append(
                            actor=None, action="run.progress", object_type="x", object_id=f"{index}-{i}", payload={}
                        )
            finally:
                connections.close_all()

        with _django_as(app):
            threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        deadline = time.monotonic() + 60
        while pending_events().exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "stopped after sealing 100 event(s)" in output
    assert list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 101))
    result = ledger_verify()
    assert result.ok and result.checked == 100 and result.pending == 0
