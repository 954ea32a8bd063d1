"""Ledger throughput and verification speed on PostgreSQL.

(a) Appends per second with 8 concurrent writer processes (each its own connection), every append in
    its own transaction through `ledger_append`, in both sealing modes: "inline" (each writer seals
    after its commit) and "sealer" (writers only insert; one `ledger_sealer` process chains). Timed
    until the writers return and, end to end, until the last event is sealed. As in production,
    writers and the sealer connect as the application's role (`setup_db_roles`: insert and seal only),
    every event carries its writer's Ed25519 signature, the sealer checks it, and a checkpoint is
    signed at the end of every sealing batch.
(b) Verification (`ledger_verify`, the code behind `verify_ledger`) of 1,000,000 events. The events
    are generated with a valid chain and writer signatures by the same code, with a signed checkpoint
    every CHECKPOINT_SPACING events, and loaded with COPY, since appending a million through the
    service would take many minutes and measure (a) again.

Creates and drops its own database `safeshrink_bench_ledger` (and its application role) on the
server DATABASE_URL names; signing keys are generated in a temporary folder.
"""

import datetime as dt
import os
import shutil
import tempfile
import time

from bench.databases import database_recreate, postgres_server

DB_NAME = "safeshrink_bench_ledger"
WRITERS = 8
APPENDS_PER_WRITER = 500
TRIALS = 5
VERIFY_EVENTS = 1_000_000
CHECKPOINT_SPACING = 1_000
APP_ROLE = f"{DB_NAME}_app"


def _django(url: str, sealing: str) -> None:
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.conf import settings

    settings.SAFESHRINK = {**settings.SAFESHRINK, "LEDGER_SEALING": sealing}


def _as_app_role(url: str) -> str:
    """The same database, logged in as the application's role (trust or ~/.pgpass authentication)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{APP_ROLE}@{rest.split('@', 1)[-1]}"


def _writer(index: int, barrier, url: str, sealing: str) -> None:
    """One writer process: its own interpreter and database connection, like a web or worker process."""
    _django(url, sealing)
    from django.db import connections, transaction

    from ledger.services import ledger_append

    with transaction.atomic():  # connect and warm up before the clock starts
        pass
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


def _appends(url: str, sealing: str) -> dict:
    """8 writer processes append concurrently. With sealing="inline" each writer seals after its own
    commit (try-lock); with "sealer" writers only insert and one sealer process chains the events.
    Timed until the writers return, and (the end-to-end figure) until every event is sealed."""
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
    sealer = None
    if sealing == "sealer":
        sealer = context.Process(target=_sealer, args=(_as_app_role(url), stop, ready))
        sealer.start()
        ready.wait()
    app_url = _as_app_role(url)
    processes = [context.Process(target=_writer, args=(i, barrier, app_url, sealing)) for i in range(WRITERS)]
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
    if sealer is not None:
        stop.set()
        sealer.join()
    assert all(p.exitcode == 0 for p in processes)
    left_for_final_seal = ledger_seal()
    seqs = list(LedgerEvent.objects.order_by("seq").values_list("seq", flat=True))
    verification = ledger_verify()
    return {
        "sealing": sealing,
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
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
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
                    occurred_at=base + dt.timedelta(microseconds=seq * 7),
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
    from django.core.management import call_command
    from django.db import connections

    from ledger.verification import ledger_verify

    try:
        call_command("migrate", verbosity=0)  # as the owner (DATABASE_URL's role) ...
        call_command("setup_db_roles", "--app-role", APP_ROLE, verbosity=0)  # ... then the writers' role
        trials: dict[str, list[dict]] = {"inline": [], "sealer": []}
        for _ in range(TRIALS):  # alternate the modes; report each mode's median trial
            for mode in trials:
                trials[mode].append(_appends(url, mode))
        modes = {mode: _median_trial(runs) for mode, runs in trials.items()}
        appends = modes["sealer"]  # the production setting (docker/compose.yml runs the sealer)
        load_seconds = _load_million(url)
        started = time.perf_counter()
        result = ledger_verify()
        verify_seconds = time.perf_counter() - started
        figures = {
            "concurrent_appends": modes,
            "verify": {
                "events": result.checked,
                "ok": result.ok,
                "seconds": round(verify_seconds, 2),
                "events_per_second": round(result.checked / verify_seconds),
                "checkpoints": VERIFY_EVENTS // CHECKPOINT_SPACING,
                "writer_signatures_checked": result.signatures_checked,
                "generate_and_copy_seconds": round(load_seconds, 1),
            },
        }
        figures["targets"] = {
            # End to end: from the first append until the last event is sealed, not just inserted.
            "appends_per_second_at_least_1000": {
                "met": appends["sealed_appends_per_second"] >= 1000,
                "value": appends["sealed_appends_per_second"],
                "setting": "LEDGER_SEALING=sealer",
            },
            "verify_1M_at_most_10s": {
                "met": result.ok and result.checked == VERIFY_EVENTS and verify_seconds <= 10,
                "value": round(verify_seconds, 2),
            },
        }
        return figures
    finally:
        connections.close_all()
        import psycopg

        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {APP_ROLE}")  # its grants went with the database
        shutil.rmtree(keys, ignore_errors=True)
