"""Ledger throughput and verification speed on PostgreSQL, on the monthly-partitioned events table.

(a) Where an append's time goes (bench/ledger_breakdown.py): the writer's steps and CPU (its process and
    its PostgreSQL backend), the sealer's steps and CPU per event, and a bare psycopg floor; their sum
    is the CPU one append costs, which bounds appends/s on this machine's cores.
(b) Appends per second with 8 concurrent writer processes (each its own connection) as the
    application's role, every append in its own transaction through `ledger_append`, and one
    `ledger_sealer` process as the sealer's role (`setup_db_roles --sealer-role`: the application's role
    may only insert events, the sealer's only read, seal and sign checkpoints). Timed until the writers
    return and, end to end, until the last event is sealed. Every event carries its writer's Ed25519
    signature, the sealer checks each and signs a checkpoint at the end of every batch. One more
    trial with the writers' `synchronous_commit = off`, measured for comparison only: it is NOT the
    default and not what the target is judged on (a crash may lose the last commits' events together
    with the changes they record).
(c) Verification (`ledger_verify`, the code behind `verify_ledger`) of 1,000,000 events spread over four
    monthly partitions. The events are generated with a valid chain and writer signatures by the same
    code, with a signed checkpoint every CHECKPOINT_SPACING events, and loaded with COPY, since
    appending a million through the service would take many minutes and measure (b) again.

Creates and drops its own database `safeshrink_bench_ledger` (and its two roles) on the server
DATABASE_URL names; signing keys are generated in a temporary folder.
"""

import datetime as dt
import os
import shutil
import tempfile
import time

from bench.databases import database_recreate, postgres_server

DB_NAME = "safeshrink_bench_ledger"
WRITERS = 8
APPENDS_PER_WRITER = 1000
TRIALS = 5
VERIFY_EVENTS = 1_000_000
CHECKPOINT_SPACING = 1_000
# The million events are 10 s apart from this time: January to April 2026, four monthly partitions.
VERIFY_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
VERIFY_SPACING = dt.timedelta(seconds=10)
APP_ROLE = f"{DB_NAME}_app"
SEALER_ROLE = f"{DB_NAME}_sealer"


def _django(url: str, sealing: str) -> None:
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.conf import settings

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": sealing}


def _as_role(url: str, role: str) -> str:
    """The same database, logged in as `role` (trust or ~/.pgpass authentication)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[-1]}"


def _writer(index: int, barrier, url: str, sealing: str, synchronous_commit: bool = True) -> None:
    """One writer process: its own interpreter and database connection, like a web or worker process."""
    _django(url, sealing)
    from django.db import connection, connections, transaction

    from ledger.services import ledger_append

    with transaction.atomic():  # connect and warm up before the clock starts
        pass
    if not synchronous_commit:  # the comparison trial only (see the module docstring)
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
    barrier.wait()
    for i in range(APPENDS_PER_WRITER):
        with transaction.atomic():
            ledger_append(
                actor=None,
                action="run.progress",
                object_type="bench",
                object_id=f"{index}-{i}",
                payload={"writer": index, "i": i},
            )
    connections.close_all()


def _sealer(url: str, stop, ready) -> None:
    """The dedicated sealer process (`manage.py ledger_sealer`), stopped by the parent."""
    _django(url, "sealer")
    from django.db import connections

    from ledger.services import ledger_seal_loop

    ready.set()
    ledger_seal_loop(stop=stop.is_set)
    connections.close_all()


def _appends(url: str, *, synchronous_commit: bool = True) -> dict:
    """8 writer processes (the application's role) append concurrently, only inserting; one sealer
    process (the sealer's role) chains the events. Timed until the writers return, and (the end-to-end
    figure) until every event is sealed."""
    import multiprocessing

    from django.db import connections

    from ledger.models import Checkpoint, LedgerEvent
    from ledger.services import ledger_seal
    from ledger.verification import ledger_verify

    connections.close_all()
    with psycopg_connect(url) as conn:
        conn.execute("TRUNCATE ledger_ledgerevent, ledger_checkpoint CASCADE")
        conn.execute("CHECKPOINT")  # start every trial with the WAL flushed, so none pays for another's
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS + 1)
    stop, ready = context.Event(), context.Event()
    sealer = context.Process(target=_sealer, args=(_as_role(url, SEALER_ROLE), stop, ready))
    sealer.start()
    ready.wait()
    app_url = _as_role(url, APP_ROLE)
    processes = [
        context.Process(target=_writer, args=(i, barrier, app_url, "sealer", synchronous_commit))
        for i in range(WRITERS)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    total = WRITERS * APPENDS_PER_WRITER
    unsealed = LedgerEvent.objects.filter(seq__isnull=True).count()
    while LedgerEvent.objects.filter(seq__isnull=True).exists() and time.perf_counter() - started < 120:
        time.sleep(0.002)
    all_sealed = time.perf_counter() - started
    stop.set()
    sealer.join()
    assert all(p.exitcode == 0 for p in processes)
    left_for_final_seal = ledger_seal()
    seqs = list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True))
    verification = ledger_verify()
    return {
        "sealing": "sealer",
        "synchronous_commit": "on" if synchronous_commit else "off (comparison only, not the default)",
        "writers": WRITERS,
        "writer_kind": "processes",
        "appends": total,
        "seconds": round(elapsed, 3),
        "appends_per_second": round(total / elapsed, 1),
        "seconds_until_all_sealed": round(all_sealed, 3),
        "sealed_appends_per_second": round(total / all_sealed, 1),
        "unsealed_when_writers_returned": unsealed,
        "left_for_a_final_seal": left_for_final_seal,
        "gapless": seqs == list(range(1, total + 1)),
        "chain_verifies": verification.ok,
        "checkpoints_signed": Checkpoint.objects.count(),
        "refused_events": LedgerEvent.objects.filter(rejected=True).count(),
        "writer_role": APP_ROLE,
        "sealer_role": SEALER_ROLE,
    }


def _median_trial(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["sealed_appends_per_second"])
    median = dict(ordered[len(ordered) // 2])
    median["trials_sealed_appends_per_second"] = [r["sealed_appends_per_second"] for r in runs]
    median["all_trials_gapless_and_verified"] = all(r["gapless"] and r["chain_verifies"] for r in runs)
    return median


def psycopg_connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _load_million(url: str) -> float:
    """Generate VERIFY_EVENTS chained events, each signed by its writer's key, with a signed checkpoint
    every CHECKPOINT_SPACING events (the sealer signs one per batch), using the ledger's own code, and
    COPY them in."""
    import base64

    import psycopg

    from ledger.canonical import canonical_json, sha256_hex
    from ledger.models import GENESIS_HASH, chain_hash, event_fields, signed_message
    from ledger.signing import system_private_key
    from trust.checkpoints import checkpoint_sign

    key = system_private_key()
    started = time.perf_counter()
    checkpoints = []
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE ledger_ledgerevent, ledger_checkpoint CASCADE")
        with cur.copy(
            "COPY ledger_ledgerevent (seq, occurred_at, actor_id, actor_username, actor_role, action, "
            "object_type, object_id, payload_json, state_digest, prev_hash, hash, signature) "
            "FROM STDIN"
        ) as copy:
            prev = GENESIS_HASH
            for seq in range(1, VERIFY_EVENTS + 1):
                payload = canonical_json({"i": seq, "note": "bench"})
                fields = dict(
                    seq=seq,
                    occurred_at=VERIFY_START + seq * VERIFY_SPACING,
                    actor_id=None,
                    actor_username="system",
                    actor_role="system",
                    action="run.progress",
                    object_type="bench",
                    object_id=str(seq),
                    payload_json=payload,
                    state_digest=sha256_hex(payload),
                )
                hashed = event_fields(**fields)
                h = chain_hash(prev, hashed)
                signature = base64.b64encode(key.sign(signed_message(hashed))).decode("ascii")
                copy.write_row(
                    (
                        seq,
                        fields["occurred_at"],
                        None,
                        "system",
                        "system",
                        "run.progress",
                        "bench",
                        str(seq),
                        payload,
                        fields["state_digest"],
                        prev,
                        h,
                        signature,
                    )
                )
                prev = h
                if seq % CHECKPOINT_SPACING == 0 or seq == VERIFY_EVENTS:
                    checkpoints.append(checkpoint_sign(seq, h, None, key))
        with cur.copy("COPY ledger_checkpoint (seq, head_hash, signed_at, key_id, signature) FROM STDIN") as copy:
            for c in checkpoints:
                copy.write_row((c["seq"], c["head_hash"], c["at"], c["key_id"], c["signature"]))
        conn.commit()
        cur.execute("ANALYZE ledger_ledgerevent")
    return time.perf_counter() - started


def _partitions_for_the_million() -> list[str]:
    """The monthly partitions the million events fall in (made as the owner, like the migration does)."""
    from ledger.partitions import ledger_partition_create

    last = VERIFY_START + VERIFY_EVENTS * VERIFY_SPACING
    month, made = VERIFY_START.date(), []
    while month <= last.date():
        made.append(ledger_partition_create(month))
        month = (month.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return [name for name in made if name]


def run() -> dict:
    server = postgres_server("ledger")
    url = database_recreate(server, DB_NAME)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    keys = tempfile.mkdtemp(prefix="safeshrink-bench-keys-")
    from trust.keys import generate_ed25519

    generate_ed25519(f"{keys}/system.key.pem", f"{keys}/system.pub.pem")
    # Environment, not settings: the spawned writer and sealer processes read it too.
    os.environ["SAFESHRINK_SYSTEM_KEY"] = f"{keys}/system.key.pem"
    os.environ["SAFESHRINK_SYSTEM_PUBLIC_KEY"] = f"{keys}/system.pub.pem"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from bench.ledger_breakdown import breakdown
    from ledger.partitions import ledger_partitions
    from ledger.verification import ledger_verify

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": "sealer"}
    try:
        call_command("migrate", verbosity=0)  # as the owner (DATABASE_URL's role) ...
        # ... then the writers' role (insert only) and the sealer's (read, seal, sign checkpoints).
        call_command("setup_db_roles", "--app-role", APP_ROLE, "--sealer-role", SEALER_ROLE, verbosity=0)
        where_the_time_goes = breakdown(url, APP_ROLE, SEALER_ROLE)
        runs = [_appends(url) for _ in range(TRIALS)]
        appends = _median_trial(runs)
        without_sync_commit = _appends(url, synchronous_commit=False)
        partitions_made = _partitions_for_the_million()
        load_seconds = _load_million(url)
        started = time.perf_counter()
        result = ledger_verify()
        verify_seconds = time.perf_counter() - started
        holding = [p for p in ledger_partitions(count_rows=True) if p.rows]
        figures = {
            "where_the_time_goes": where_the_time_goes,
            "concurrent_appends": appends,
            "concurrent_appends_synchronous_commit_off_not_default": {
                key: without_sync_commit[key]
                for key in ("sealed_appends_per_second", "appends_per_second", "gapless", "chain_verifies")
            },
            "verify": {
                "events": result.checked,
                "ok": result.ok,
                "seconds": round(verify_seconds, 2),
                "events_per_second": round(result.checked / verify_seconds),
                "partitions": {p.name: p.rows for p in holding},
                "partitions_made_for_it": len(partitions_made),
                "checkpoints": VERIFY_EVENTS // CHECKPOINT_SPACING,
                "writer_signatures_checked": result.signatures_checked,
                "generate_and_copy_seconds": round(load_seconds, 1),
            },
        }
        figures["targets"] = {
            # End to end: from the first append until the last event is sealed, not just inserted.
            "appends_per_second_at_least_3000": {
                "met": appends["sealed_appends_per_second"] >= 3000,
                "value": appends["sealed_appends_per_second"],
                "setting": "LEDGER_SEALING=sealer, synchronous_commit on, writers as the app role, "
                "sealer as the sealer role",
            },
            "verify_1M_at_most_5s": {
                "met": result.ok and result.checked == VERIFY_EVENTS and verify_seconds <= 5 and len(holding) > 1,
                "value": round(verify_seconds, 2),
            },
        }
        return figures
    finally:
        connections.close_all()
        import psycopg

        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            for role in (APP_ROLE, SEALER_ROLE):
                conn.execute(f"DROP ROLE IF EXISTS {role}")  # their grants went with the database
        shutil.rmtree(keys, ignore_errors=True)
