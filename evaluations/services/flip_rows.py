"""Insert a comparison's flips in one statement: binary COPY on PostgreSQL, bulk_create elsewhere.

A comparison of 1,000,000 examples can flip tens of thousands of decisions; building a Flip instance and SQL
text per row took about 6 s for 30,000 of them (bench/scale.py), COPY a fraction of a second. Floats travel as
IEEE 754 doubles (bit for bit). The rows go through Django's connection, in the caller's transaction.
"""

from collections.abc import Sequence

from django.db import connection

from evaluations.models import Flip

BULK_BATCH = 2000
# Columns after comparison_id, with their PostgreSQL types and the value a classifier's flip leaves empty.
FLIP_COLUMNS = (
    ("example_id", "int8", None),
    ("baseline_prob", "float8", None),
    ("candidate_prob", "float8", None),
    ("direction", "text", None),
    ("candidate_correct", "bool", None),
    ("stable", "bool", None),
    ("baseline_behaviour", "text", ""),
    ("candidate_behaviour", "text", ""),
    ("baseline_output", "text", ""),
    ("candidate_output", "text", ""),
)


def flips_insert(comparison_id: int, columns: dict[str, Sequence | None]) -> None:
    """Insert one Flip per row of `columns` (Python lists named as FLIP_COLUMNS; `stable` and the chat columns may
    be left out: null / empty). No row of this comparison may exist yet (the comparison is written once, under
    its row lock)."""
    n = len(columns["example_id"] or ())
    if not n:
        return
    values = [columns[name] if columns.get(name) is not None else [default] * n for name, _, default in FLIP_COLUMNS]
    if connection.vendor != "postgresql":
        names = [name for name, _, _ in FLIP_COLUMNS]
        rows = zip(*values, strict=True)
        Flip.objects.bulk_create(
            [Flip(comparison_id=comparison_id, **dict(zip(names, row, strict=True))) for row in rows],
            batch_size=BULK_BATCH,
        )
        return
    quote = connection.ops.quote_name
    names = ["comparison_id", *(name for name, _, _ in FLIP_COLUMNS)]
    sql = f"COPY {quote(Flip._meta.db_table)} ({', '.join(quote(c) for c in names)}) FROM STDIN (FORMAT BINARY)"
    # The psycopg 3 cursor under Django's wrapper; its errors raised as Django's (IntegrityError, ...).
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        copy.set_types(["int8", *(kind for _, kind, _ in FLIP_COLUMNS)])
        write = copy.write_row
        for row in zip(*values, strict=True):
            write((comparison_id, *row))
