"""The monthly partitions of the ledger's events on PostgreSQL (migration 0004): made ahead of time, and
listed. SQLite keeps one plain table; everything here does nothing there.

An event whose month has no partition goes to the DEFAULT partition (an insert never fails for want of
one). The sealer (`ledger_seal_loop`) and the beat task make this month's partition and the next
MONTHS_AHEAD months' through `ledger_event_partitions_ensure`, a SECURITY DEFINER function of the
owner's: neither the application's role nor the sealer's owns the table. A month whose events already
sit in the default partition gets no partition of its own (PostgreSQL would refuse to create one over
them); they stay where they are, read and verified like any other."""

import datetime as dt
import logging
import time
from dataclasses import dataclass

from django.db import DatabaseError, connection, transaction

logger = logging.getLogger(__name__)

TABLE = "ledger_ledgerevent"
DEFAULT_PARTITION = f"{TABLE}_default"
MONTHS_AHEAD = 3
# How often one process asks again (the function does nothing when every partition exists).
ENSURE_EVERY_SECONDS = 3600.0
_last_ensured: dict[str, float] = {}


@dataclass(frozen=True)
class Partition:
    name: str
    bounds: str  # PostgreSQL's own words: "FOR VALUES FROM (...) TO (...)" or "DEFAULT"
    rows: int | None = None


def partitioned() -> bool:
    return connection.vendor == "postgresql"


def partition_name(month: dt.date) -> str:
    return f"{TABLE}_p{month.year:04d}_{month.month:02d}"


def ledger_partitions_ensure(*, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Make the partitions of this month (UTC) and the next `months_ahead` months where missing; returns
    the names made (none on SQLite, or when every one exists)."""
    if not partitioned():
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT ledger_event_partitions_ensure(%s)", [months_ahead])
        made = [row[0] for row in cursor.fetchall()]
    if made:
        logger.info("ledger: made partition(s) %s", ", ".join(made))
    return made


def ledger_partitions_ensure_due(*, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """`ledger_partitions_ensure` at most once per ENSURE_EVERY_SECONDS in this process (the sealer calls
    it on every pass, beat every 30 s). A failure is logged, not raised: sealing must go on, and until
    the next try events of an uncovered month land in the default partition."""
    if not partitioned():
        return []
    now = time.monotonic()
    last = _last_ensured.get(connection.alias)
    if last is not None and now - last < ENSURE_EVERY_SECONDS:
        return []
    _last_ensured[connection.alias] = now
    try:
        return ledger_partitions_ensure(months_ahead=months_ahead)
    except DatabaseError:
        logger.exception("ledger: could not make the next partitions; events of an uncovered month go to the default")
        return []


def ledger_partition_create(month: dt.date) -> str | None:
    """Make the partition of `month` (any month; the owner's role only). Returns its name, or None when
    it exists or that month's events already sit in the default partition."""
    if not partitioned():
        return None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT ledger_event_partition_create(%s)", [month])
        return cursor.fetchone()[0]


def ledger_partitions(*, count_rows: bool = False) -> list[Partition]:
    """The partitions of the events table, oldest first, the default last (empty on SQLite)."""
    if not partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass "
            "ORDER BY c.relname = %s, c.relname",
            [TABLE, DEFAULT_PARTITION],
        )
        found = cursor.fetchall()
        rows: dict[str, int] = {}
        if count_rows:
            cursor.execute(f"SELECT tableoid::regclass::text, count(*) FROM {TABLE} GROUP BY 1")
            rows = dict(cursor.fetchall())
    return [Partition(name, bounds, rows.get(name, 0) if count_rows else None) for name, bounds in found]
