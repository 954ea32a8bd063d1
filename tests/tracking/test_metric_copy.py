"""insert_metrics: binary COPY on PostgreSQL, bulk_create elsewhere; both must store exactly what they were given,
inside the caller's transaction. Runs on whichever database DATABASE_URL names (SQLite by default)."""

import math
import struct

import pytest
from django.db import connection, transaction

from tests.conftest import require_service
from tracking.models import ExternalRunMetric
from tracking.services.metric_copy import insert_metrics

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ROWS = [
    ("loss", 0.1, 0, 1_700_000_000_000),
    ("loss", -2.5e-308, INT64_MIN, 0),
    ("loss", 1.7976931348623157e308, INT64_MAX, INT64_MAX),
    ("précision/top-1 ✓", 5e-324, -1, 1),  # unicode key, smallest subnormal
    ("精度", math.pi, 2**53 + 1, 2**62),
    ("a\tb\\c\nd", -1e-300, 7, -(2**40)),  # characters text COPY would have to escape
    ("x" * 250, 123456789.123456789, 3, 3),  # the column's full length
]


def _bits(value: float) -> bytes:
    return struct.pack(">d", value)


def _stored(run) -> list[tuple]:
    return list(
        ExternalRunMetric.objects.filter(run=run).order_by("id").values_list("key", "value", "step", "timestamp")
    )


def test_rows_round_trip_exactly(eve_run):
    insert_metrics(eve_run.pk, ROWS)
    stored = _stored(eve_run)
    assert [(k, s, t) for k, _, s, t in stored] == [(k, s, t) for k, _, s, t in ROWS]
    # Bit for bit: the subnormal, the largest double and a tiny negative survive.
    assert [_bits(v) for _, v, _, _ in stored] == [_bits(v) for _, v, _, _ in ROWS]


def test_negative_zero_keeps_its_sign_on_postgresql(eve_run):
    """SQLite itself stores -0.0 as 0 (any insert path); PostgreSQL's float8 keeps the sign, and COPY must too."""
    require_service("postgres")
    insert_metrics(eve_run.pk, [("z", -0.0, 0, 0)])
    ((_, value, _, _),) = _stored(eve_run)
    assert _bits(value) == _bits(-0.0)


def test_ints_given_as_values_are_stored_as_floats(eve_run):
    insert_metrics(eve_run.pk, [("acc", 1, 0, 5)])
    ((_, value, _, _),) = _stored(eve_run)
    assert type(value) is float and value == 1.0


def test_rows_go_to_the_named_run_only(eve_run, oscar_run):
    insert_metrics(oscar_run.pk, ROWS[:2])
    insert_metrics(eve_run.pk, ROWS[2:3])
    assert len(_stored(oscar_run)) == 2
    assert _stored(eve_run)[0][0] == ROWS[2][0]


def test_many_rows_and_the_orm_still_inserts_after_them(eve_run):
    rows = [(f"m{i % 7}", i / 3, i, 1_700_000_000_000 + i) for i in range(2500)]
    insert_metrics(eve_run.pk, rows)
    later = ExternalRunMetric.objects.create(run=eve_run, key="later", value=1.0, step=0, timestamp=0)
    stored = _stored(eve_run)
    assert len(stored) == 2501 and stored[-1][0] == "later"
    assert [(k, v, s, t) for k, v, s, t in stored[:-1]] == rows
    assert later.pk > max(ExternalRunMetric.objects.exclude(pk=later.pk).values_list("pk", flat=True))


def test_nothing_to_insert_is_a_no_op(eve_run):
    insert_metrics(eve_run.pk, [])
    assert _stored(eve_run) == []


def test_rollback_of_the_callers_transaction_removes_the_rows(eve_run):
    with pytest.raises(RuntimeError), transaction.atomic():
        insert_metrics(eve_run.pk, ROWS)
        assert len(_stored(eve_run)) == len(ROWS)  # visible inside the transaction
        raise RuntimeError("the caller fails after inserting")
    assert _stored(eve_run) == []
    insert_metrics(eve_run.pk, ROWS[:1])  # the connection is usable afterwards
    assert len(_stored(eve_run)) == 1


@pytest.mark.django_db(transaction=True)
def test_rollback_of_a_real_outer_transaction(eve_run):
    """Not a savepoint under the test's own transaction: the outermost atomic block, rolled back."""
    assert connection.get_autocommit()
    with pytest.raises(RuntimeError), transaction.atomic():
        insert_metrics(eve_run.pk, ROWS)
        raise RuntimeError("rollback")
    assert _stored(eve_run) == []
    with transaction.atomic():
        insert_metrics(eve_run.pk, ROWS)
    assert len(_stored(eve_run)) == len(ROWS)


def test_postgresql_uses_copy_not_bulk_create(eve_run, monkeypatch):
    """On PostgreSQL the ORM's bulk_create is not called (the rows go by COPY); elsewhere it is."""
    calls = []
    original = ExternalRunMetric.objects.bulk_create
    monkeypatch.setattr(
        type(ExternalRunMetric.objects), "bulk_create", lambda self, *a, **kw: calls.append(1) or original(*a, **kw)
    )
    insert_metrics(eve_run.pk, ROWS)
    assert len(_stored(eve_run)) == len(ROWS)
    assert bool(calls) == (connection.vendor != "postgresql")


def test_out_of_range_step_is_refused_and_stores_nothing(eve_run):
    with pytest.raises(Exception), transaction.atomic():  # noqa: B017 - the vendor's own overflow error
        insert_metrics(eve_run.pk, [("ok", 1.0, 0, 0), ("bad", 1.0, 2**63, 0)])
    assert _stored(eve_run) == []
