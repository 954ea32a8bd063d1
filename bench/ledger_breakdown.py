"""Where a ledger append's time goes (part of bench/ledger.py), measured in one process at a time so
each figure is clean: per append, the writer's steps (as the application's role) and the CPU of the
writer process and of its PostgreSQL backend; per event, the sealer's steps (as the sealer's role) and
the CPU of the sealer and its backend; and the floor, a bare psycopg BEGIN / prepared INSERT / COMMIT
with no Django, no signing and no sealing. The CPU figures add up to what one append costs the
machine, which bounds appends/s on its cores whatever the concurrency.

Backend CPU is read from /proc/<backend pid>/stat: the benchmark and the server share the machine."""

import contextlib
import datetime as dt
import os
import time

APPENDS = 2000
WARM_UP = 200


def _backend_cpu(pid: int) -> float | None:
    """utime + stime of a PostgreSQL backend, seconds (None if the server is not on this machine)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@contextlib.contextmanager
def as_role(role: str):
    """Django's default connection logged in as `role` for the block (trust or ~/.pgpass)."""
    from django.db import connection

    conf = connection.settings_dict
    saved = conf["USER"], conf["PASSWORD"]
    connection.close()
    conf["USER"], conf["PASSWORD"] = role, ""
    try:
        yield
    finally:
        connection.close()
        conf["USER"], conf["PASSWORD"] = saved


def _us(seconds: float | None, n: int) -> float | None:
    return None if seconds is None else round(seconds / n * 1e6, 1)


def writer_steps(app_role: str) -> dict:
    """ledger_append's steps timed apart, one writer, each append in its own transaction."""
    from django.db import transaction
    from django.utils import timezone

    from ledger import services
    from ledger.canonical import canonical_json, sha256_hex
    from ledger.models import LedgerEvent

    steps = dict.fromkeys(("prepare", "sign", "begin_and_insert", "commit"), 0.0)
    with as_role(app_role):
        for i in range(WARM_UP):
            with transaction.atomic():
                services.ledger_append(actor=None, action="run.progress", object_type="bench", object_id=i, payload={})
        pid = _pid()
        for i in range(APPENDS):
            a = time.perf_counter()
            atomic = transaction.atomic()
            atomic.__enter__()
            payload_json = canonical_json({"writer": 0, "i": i})
            occurred_at = timezone.now().astimezone(dt.UTC)
            content = (
                None,
                "system",
                "system",
                "run.progress",
                "bench",
                str(i),
                payload_json,
                sha256_hex(payload_json),
            )
            b = time.perf_counter()
            signature = services._writer_signature(occurred_at, content)
            c = time.perf_counter()
            pk = services._insert((occurred_at, *content, signature))
            LedgerEvent(id=pk, occurred_at=occurred_at, payload_json=payload_json, signature=signature)
            d = time.perf_counter()
            atomic.__exit__(None, None, None)
            e = time.perf_counter()
            for key, seconds in zip(steps, (b - a, c - b, d - c, e - d), strict=True):
                steps[key] += seconds
        # The real thing, end to end, with the CPU it costs on both sides of the connection.
        backend0, cpu0, wall0 = _backend_cpu(pid), time.process_time(), time.perf_counter()
        for i in range(APPENDS):
            with transaction.atomic():
                services.ledger_append(
                    actor=None, action="run.progress", object_type="bench", object_id=i, payload={"writer": 0, "i": i}
                )
        wall, cpu, backend1 = time.perf_counter() - wall0, time.process_time() - cpu0, _backend_cpu(pid)
    return {
        "steps_us": {key: _us(seconds, APPENDS) for key, seconds in steps.items()},
        "append_wall_us": _us(wall, APPENDS),
        "writer_process_cpu_us": _us(cpu, APPENDS),
        "writer_backend_cpu_us": _us(None if backend1 is None or backend0 is None else backend1 - backend0, APPENDS),
    }


def sealer_steps(sealer_role: str) -> dict:
    """One sealing batch over what writer_steps left pending, its steps timed apart, as the sealer's role."""
    import hashlib

    from django.db import transaction

    from ledger import sealing
    from ledger.fast import fast_canonical
    from ledger.models import GENESIS_HASH

    with as_role(sealer_role):
        pid = _pid()
        backend0, cpu0 = _backend_cpu(pid), time.process_time()
        a = time.perf_counter()
        with transaction.atomic():
            sealing._lock_head()
            rows = sealing._pending_rows(sealing.SEAL_BATCH)
            b = time.perf_counter()
            public = sealing._sealer_public_key()
            assert all(sealing._signature_verifies(row, public) for row in rows)
            c = time.perf_counter()
            head = sealing._sealed_head()
            seq, prev = head if head else (0, GENESIS_HASH)
            seals = []
            for row in rows:
                seq += 1
                event_hash = hashlib.sha256((prev + fast_canonical(seq, *row[1:10])).encode()).hexdigest()
                seals.append((row[0], seq, prev, event_hash))
                prev = event_hash
            d = time.perf_counter()
            sealing._write_seals(seals)
            e = time.perf_counter()
            sealing._sign_checkpoint(seq, prev)
        f = time.perf_counter()
        cpu, backend1 = time.process_time() - cpu0, _backend_cpu(pid)
    n = len(rows)
    return {
        "events": n,
        "steps_us_per_event": {
            "fetch_pending": _us(b - a, n),
            "check_writer_signatures": _us(c - b, n),
            "chain_hashes": _us(d - c, n),
            "one_update_for_the_batch": _us(e - d, n),
        },
        "checkpoint_and_commit_ms_per_batch": round((f - e) * 1e3, 2),
        "sealer_process_cpu_us": _us(cpu, n),
        "sealer_backend_cpu_us": _us(None if backend1 is None or backend0 is None else backend1 - backend0, n),
    }


def floor(url: str) -> dict:
    """A bare psycopg client: BEGIN, the same INSERT prepared, COMMIT; and one SELECT 1 round trip."""
    import psycopg

    sql = (
        "INSERT INTO ledger_ledgerevent (occurred_at, actor_id, actor_username, actor_role, action, object_type, "
        "object_id, payload_json, state_digest, signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "RETURNING id"
    )
    row = [dt.datetime.now(dt.UTC), None, "system", "system", "run.progress", "bench", "1", "{}", "0" * 64, "x" * 88]
    figures = {}
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        pid = conn.info.backend_pid
        for name in ("select_1_round_trip", "begin_insert_commit"):
            for i in range(WARM_UP + APPENDS):
                if i == WARM_UP:
                    backend0, cpu0, wall0 = _backend_cpu(pid), time.process_time(), time.perf_counter()
                if name == "select_1_round_trip":
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
                    conn.rollback()
                else:
                    cursor.execute(sql, row, prepare=True)
                    cursor.fetchone()
                    conn.commit()
            wall, cpu, backend1 = time.perf_counter() - wall0, time.process_time() - cpu0, _backend_cpu(pid)
            figures[name] = {
                "wall_us": _us(wall, APPENDS),
                "client_cpu_us": _us(cpu, APPENDS),
                "backend_cpu_us": _us(None if backend1 is None or backend0 is None else backend1 - backend0, APPENDS),
            }
        conn.execute("TRUNCATE ledger_ledgerevent")
        conn.commit()
    return figures


def breakdown(url: str, app_role: str, sealer_role: str) -> dict:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE ledger_ledgerevent, ledger_checkpoint CASCADE")
    bare = floor(url)
    writer = writer_steps(app_role)
    sealer = sealer_steps(sealer_role)
    parts = (
        writer["writer_process_cpu_us"],
        writer["writer_backend_cpu_us"],
        sealer["sealer_process_cpu_us"],
        sealer["sealer_backend_cpu_us"],
    )
    total = None if None in parts else round(sum(p for p in parts if p is not None), 1)
    cores = os.cpu_count() or 1
    return {
        "writer": writer,
        "sealer": sealer,
        "floor_bare_psycopg": bare,
        "cpu_us_per_append": total,
        # No concurrency beats this: every append costs `total` of CPU somewhere on these cores.
        "ceiling_appends_per_second_on_these_cores": round(cores * 1e6 / total) if total else None,
        "floor_ceiling_transactions_per_second": round(
            cores * 1e6 / (bare["begin_insert_commit"]["client_cpu_us"] + bare["begin_insert_commit"]["backend_cpu_us"])
        )
        if bare["begin_insert_commit"]["backend_cpu_us"] is not None
        else None,
    }
