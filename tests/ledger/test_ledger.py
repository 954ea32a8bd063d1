import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from ledger.fast import fast_canonical
from ledger.models import GENESIS_HASH, LedgerEvent, chain_hash
from ledger.services import ledger_append, ledger_seal
from ledger.verification import ledger_verify
from tests.conftest import require_service

pytestmark = pytest.mark.django_db


def _append(n: int, actor=None) -> list[LedgerEvent]:
    for i in range(n):
        with transaction.atomic():
            ledger_append(
                actor=actor,
                action="run.requested",
                object_type="compression_run",
                object_id=i,
                payload={"i": i, "note": "héllo"},
            )
    ledger_seal()  # in these (non-transactional) tests, on_commit hooks do not run
    return list(LedgerEvent.objects.order_by("seq"))


def test_events_chain_from_genesis_with_gapless_seq():
    events = _append(3)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS_HASH
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    assert all(chain_hash(e.prev_hash, e.hashed_fields()) == e.hash for e in events)
    result = ledger_verify()
    assert (result.ok, result.checked, result.head_seq, result.head_hash) == (True, 3, 3, events[2].hash)


@pytest.mark.django_db(transaction=True)
def test_append_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError):
        ledger_append(actor=None, action="run.requested", object_type="x", object_id=1, payload={})
    assert LedgerEvent.objects.count() == 0


def test_unknown_action_is_refused():
    with pytest.raises(ValueError), transaction.atomic():
        ledger_append(actor=None, action="run.teleported", object_type="x", object_id=1, payload={})
    assert LedgerEvent.objects.count() == 0


def test_event_rolls_back_with_the_change_it_records():
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        ledger_append(actor=None, action="run.requested", object_type="x", object_id=1, payload={})
        1 / 0  # noqa: B018 - the change fails after the event was written
    assert LedgerEvent.objects.count() == 0


def _raw(sql: str, params=()) -> None:
    """Change the table behind the application's back (PostgreSQL: with triggers switched off)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = DEFAULT")


def test_edited_payload_is_named_by_verify_ledger(capsys):
    _append(5)
    _raw("UPDATE ledger_ledgerevent SET payload_json = %s WHERE seq = 3", ['{"i":99,"note":"héllo"}'])
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    with pytest.raises(CommandError, match="BROKEN at seq 3"):
        call_command("verify_ledger")


def test_payload_and_digest_rewritten_together_still_breaks_the_hash():
    from ledger.canonical import sha256_hex

    _append(4)
    forged = '{"i":7,"note":"forged"}'
    _raw(
        "UPDATE ledger_ledgerevent SET payload_json = %s, state_digest = %s WHERE seq = 2", [forged, sha256_hex(forged)]
    )
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 2, "hash does not match the event's content")


def test_deleted_event_is_named():
    _append(4)
    _raw("DELETE FROM ledger_ledgerevent WHERE seq = 2")
    assert (ledger_verify().ok, ledger_verify().first_bad_seq) == (False, 2)


def test_reordered_events_are_detected():
    _append(4)
    _raw("UPDATE ledger_ledgerevent SET seq = 100 WHERE seq = 2")
    _raw("UPDATE ledger_ledgerevent SET seq = 2 WHERE seq = 3")
    _raw("UPDATE ledger_ledgerevent SET seq = 3 WHERE seq = 100")
    assert (ledger_verify().ok, ledger_verify().first_bad_seq) == (False, 2)


def test_verify_ledger_command_prints_ok(capsys):
    _append(2)
    call_command("verify_ledger")
    assert capsys.readouterr().out.startswith("OK: 2 events verified")


@pytest.mark.postgres
def test_postgres_trigger_refuses_update_and_delete():
    require_service("postgres")
    from django.db import DatabaseError

    _append(2)
    with transaction.atomic():
        ledger_append(actor=None, action="run.requested", object_type="x", object_id=3, payload={})
    for sql in (
        "UPDATE ledger_ledgerevent SET action = 'run.failed' WHERE seq = 1",
        "UPDATE ledger_ledgerevent SET seq = 99, hash = 'x' WHERE seq = 1",  # re-sealing
        "UPDATE ledger_ledgerevent SET payload_json = '{}' WHERE seq IS NULL",  # content of an unsealed event
        "DELETE FROM ledger_ledgerevent WHERE seq = 2",
        "DELETE FROM ledger_ledgerevent WHERE seq IS NULL",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert list(LedgerEvent.objects.filter(seq__isnull=False).values_list("seq", "action")) == [
        (1, "run.requested"),
        (2, "run.requested"),
    ]
    assert ledger_verify().pending == 1
    assert ledger_seal() == 1  # the one-time sealing is the only update the trigger allows
    assert ledger_verify().ok and ledger_verify().checked == 3


def test_events_are_sealed_in_commit_order_after_the_transaction():
    with transaction.atomic():
        event = ledger_append(actor=None, action="run.requested", object_type="x", object_id=1, payload={})
        assert event.seq is None and event.hash is None
    assert ledger_seal() == 1
    event.refresh_from_db()
    assert (
        event.seq == 1
        and event.prev_hash == GENESIS_HASH
        and event.hash == chain_hash(event.prev_hash, event.hashed_fields())
    )
    assert ledger_seal() == 0


def test_fast_canonical_form_equals_canonical_json():
    import datetime as dt

    from ledger.canonical import canonical_json
    from ledger.models import event_fields

    when = dt.datetime(2026, 11, 23, 1, 2, 3, 45, tzinfo=dt.UTC)
    for actor_id, text in ((None, "plain"), (42, 'quote " and \\ backslash'), (7, "ünïcödé \u2028 \n tab\t 😀")):
        fields = event_fields(
            seq=12,
            occurred_at=when,
            actor_id=actor_id,
            actor_username=text,
            actor_role="officer",
            action="release.approved",
            object_type="release",
            object_id=text,
            payload_json=canonical_json({"t": text}),
            state_digest="ab" * 32,
        )
        fast = fast_canonical(
            12,
            when.isoformat(timespec="microseconds"),
            actor_id,
            text,
            "officer",
            "release.approved",
            "release",
            text,
            canonical_json({"t": text}),
            "ab" * 32,
        )
        assert fast == canonical_json(fields)


def test_fast_signed_message_equals_signed_message():
    import datetime as dt

    from ledger.canonical import canonical_json
    from ledger.fast import fast_signed_message
    from ledger.models import event_fields, signed_message

    when = dt.datetime(2026, 11, 23, 1, 2, 3, 45, tzinfo=dt.UTC)
    for actor_id, text in ((None, "plain"), (42, 'quote " and \\ backslash'), (7, "ünïcödé \u2028 \n tab\t 😀")):
        content = (
            actor_id,
            text,
            "officer",
            "release.approved",
            "release",
            text,
            canonical_json({"t": text}),
            "ab" * 32,
        )
        fields = event_fields(
            seq=None,
            occurred_at=when,
            actor_id=actor_id,
            actor_username=text,
            actor_role="officer",
            action="release.approved",
            object_type="release",
            object_id=text,
            payload_json=canonical_json({"t": text}),
            state_digest="ab" * 32,
        )
        assert fast_signed_message(when.isoformat(timespec="microseconds"), *content) == signed_message(fields)


def test_events_with_awkward_text_verify_and_an_edit_to_one_is_named():
    """Verification reads an event's text fields joined by U+001F: a field holding that character itself
    (or a payload whose canonical JSON escapes it) is read again column by column, and checked the same."""
    from ledger.chain import GENESIS_HASH as CHAIN_GENESIS

    assert CHAIN_GENESIS == GENESIS_HASH
    awkward = ("a\x1fb", 'quote " back \\ slash', "\x1e\u2028 ünï 😀", "tab\tnew\nline")
    for text in awkward:
        with transaction.atomic():
            ledger_append(actor=None, action="run.requested", object_type="run", object_id=text, payload={"t": text})
    ledger_seal()
    result = ledger_verify()
    assert result.ok and result.checked == 4
    _raw("UPDATE ledger_ledgerevent SET object_id = %s WHERE seq = 1", ["a\x1fc"])
    result = ledger_verify()
    assert (result.ok, result.first_bad_seq, result.reason) == (False, 1, "hash does not match the event's content")


def test_partitions_are_postgresql_only_and_nothing_on_sqlite():
    from ledger.partitions import ledger_partitions, ledger_partitions_ensure, ledger_partitions_ensure_due

    if connection.vendor == "postgresql":
        assert ledger_partitions()[-1].name == "ledger_ledgerevent_default"
        return
    assert ledger_partitions() == [] and ledger_partitions_ensure() == [] and ledger_partitions_ensure_due() == []
    with connection.cursor() as cursor:  # migration 0004 left SQLite's plain table alone
        cursor.execute("SELECT type FROM sqlite_master WHERE name = 'ledger_ledgerevent'")
        assert cursor.fetchone() == ("table",)


def test_append_stores_exactly_the_fields_that_are_hashed():
    from accounts.models import User

    officer = User.objects.create_user("zoë", password="x", role="officer")
    with transaction.atomic():
        event = ledger_append(
            actor=officer,
            action="release.approved",
            object_type="release",
            object_id=7,
            payload={"note": "ünïcödé", "n": 1},
        )
    stored = LedgerEvent.objects.get(pk=event.pk)
    assert stored.hashed_fields() == event.hashed_fields()
    assert (stored.actor_id, stored.actor_username, stored.actor_role) == (officer.pk, "zoë", "officer")
    assert ledger_seal() == 1
    stored.refresh_from_db()
    assert stored.hash == chain_hash(stored.prev_hash, stored.hashed_fields()) and ledger_verify().ok


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sealing", ["inline", "sealer"])
def test_sealing_mode_decides_who_chains_after_commit(settings, sealing):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": sealing}
    with transaction.atomic():
        ledger_append(actor=None, action="run.requested", object_type="x", object_id=1, payload={})
    assert LedgerEvent.objects.filter(seq__isnull=True).count() == (1 if sealing == "sealer" else 0)


@pytest.mark.django_db(transaction=True)
def test_sealer_loop_seals_what_writers_commit_and_stops_when_told(settings):
    from ledger.services import ledger_seal_loop

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    for i in range(5):
        with transaction.atomic():
            ledger_append(actor=None, action="run.requested", object_type="x", object_id=i, payload={"i": i})
    batches: list[int] = []
    total = ledger_seal_loop(idle_seconds=0, busy_seconds=0, on_sealed=batches.append, stop=lambda: bool(batches))
    assert total == 5 and batches == [5]
    assert [e.seq for e in LedgerEvent.objects.order_by("id")] == [1, 2, 3, 4, 5]
    assert ledger_verify().ok and ledger_verify().pending == 0


@pytest.mark.django_db(transaction=True)
def test_ledger_sealer_once_command(settings, capsys):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    for i in range(3):
        with transaction.atomic():
            ledger_append(actor=None, action="run.requested", object_type="x", object_id=i, payload={})
    call_command("ledger_sealer", "--once")
    assert "sealed 3 event(s)" in capsys.readouterr().out
    assert ledger_verify().checked == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_a_running_sealer_leave_a_gapless_verified_chain(settings):
    """Writers in threads (each its own PostgreSQL connection) insert while the sealer loop runs."""
    from django.db import connections

    from ledger.services import ledger_seal_loop

    require_service("postgres")
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    done = threading.Event()
    sealed: list[int] = []

    def sealer() -> None:
        try:
            ledger_seal_loop(idle_seconds=0.001, busy_seconds=0.001, stop=done.is_set, on_sealed=sealed.append)
        finally:
            connections.close_all()

    def writer(index: int) -> None:
        try:
            for i in range(25):
                with transaction.atomic():
                    ledger_append(
                        actor=None, action="run.progress", object_type="x", object_id=f"{index}-{i}", payload={"i": i}
                    )
                time.sleep(0.002)  # spread the appends over the sealer's passes
        finally:
            connections.close_all()

    sealing = threading.Thread(target=sealer)
    sealing.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    deadline = time.monotonic() + 10
    while LedgerEvent.objects.filter(seq__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    sealing.join()
    assert sum(sealed) == 100  # the running loop sealed everything, not a final call
    assert list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 101))
    result = ledger_verify()
    assert result.ok and result.checked == 100 and result.pending == 0


@pytest.mark.django_db(transaction=True)
def test_sealer_loop_survives_a_lost_database_connection(settings, monkeypatch):
    from django.db import OperationalError

    import ledger.sealing as sealing

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    with transaction.atomic():
        ledger_append(actor=None, action="run.requested", object_type="x", object_id=1, payload={})
    real, calls = sealing.ledger_seal, []

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(sealing, "ledger_seal", flaky)
    sealed: list[int] = []
    total = sealing.ledger_seal_loop(idle_seconds=0, busy_seconds=0, on_sealed=sealed.append, stop=lambda: bool(sealed))
    assert len(calls) == 2 and total == 1 and ledger_verify().pending == 0


def test_unknown_sealing_mode_is_a_system_check_error(settings):
    from django.core.checks import run_checks

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "seal"}
    errors = [e for e in run_checks() if e.id == "ledger.E001"]
    assert len(errors) == 1 and "SAFESHRINK_LEDGER_SEALING" in errors[0].msg and "'seal'" in errors[0].msg
    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    assert not [e for e in run_checks() if e.id == "ledger.E001"]
