"""tracking.services.batch: a logging batch is checked whole, every bad item named by list and index."""

import math

import pytest

from accounts.errors import ValidationFailed
from tracking.services.batch import (
    INT64_MAX,
    INT64_MIN,
    MAX_ERRORS_LISTED,
    MAX_METRICS_PER_BATCH,
    name_problem,
    parse_batch,
)

NOW = 1_700_000_000_000


def _refused(**batch) -> dict:
    with pytest.raises(ValidationFailed) as caught:
        parse_batch(now_ms=NOW, **batch)
    assert "Nothing was logged" in caught.value.message
    return caught.value.details


def test_a_good_batch_is_normalised():
    batch = parse_batch(
        params=[{"key": "bits", "value": "4"}, {"key": "bits", "value": "4"}, {"key": "group size", "value": ""}],
        metrics=[
            {"key": "loss", "value": 1, "step": 3, "timestamp": 5},
            {"key": "train/ppl", "value": 2.5},
            {"key": "loss", "value": 0.5, "step": 4.0},
        ],
        tags=[{"key": "team", "value": "a"}, {"key": "mlflow.note:x", "value": "b"}, {"key": "team", "value": "c"}],
        now_ms=NOW,
    )
    assert batch.params == (("bits", "4"), ("group size", ""))
    assert batch.metrics == (("loss", 1.0, 3, 5), ("train/ppl", 2.5, 0, NOW), ("loss", 0.5, 4, NOW))
    assert all(type(v) is float and type(s) is int for _, v, s, _ in batch.metrics)
    assert batch.tags == (("mlflow.note:x", "b"), ("team", "c"))
    assert len(batch) == 7


def test_an_empty_batch_is_empty():
    assert len(parse_batch(now_ms=NOW)) == 0
    assert len(parse_batch(params=[], metrics=[], tags=[], now_ms=NOW)) == 0


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (10**400, "too large"),
        ("1.5", "a string"),
        ("NaN", "a string"),
        (True, "a boolean"),
        (None, "null"),
        ([1], "a list"),
        ({"v": 1}, "an object"),
    ],
)
def test_non_finite_or_non_numeric_metric_values_are_refused_naming_the_index(value, words):
    details = _refused(metrics=[{"key": "ok", "value": 1}, {"key": "bad", "value": value}])
    assert list(details) == ["metrics[1].value"] and words in details["metrics[1].value"][0]


@pytest.mark.parametrize("step", [INT64_MAX + 1, INT64_MIN - 1, 1.5, "3", True, None])
def test_steps_must_be_int64_integers(step):
    details = _refused(metrics=[{"key": "loss", "value": 1.0, "step": step}])
    assert list(details) == ["metrics[0].step"]


def test_steps_at_the_int64_bounds_are_accepted():
    batch = parse_batch(
        metrics=[{"key": "a", "value": 0, "step": INT64_MAX}, {"key": "a", "value": 0, "step": INT64_MIN}], now_ms=NOW
    )
    assert [m[2] for m in batch.metrics] == [INT64_MAX, INT64_MIN]


@pytest.mark.parametrize("timestamp", [-1, INT64_MAX + 1, "now", 1.5])
def test_timestamps_are_milliseconds_in_range(timestamp):
    details = _refused(metrics=[{"key": "a", "value": 0, "timestamp": timestamp}])
    assert list(details) == ["metrics[0].timestamp"] and "milliseconds" in details["metrics[0].timestamp"][0]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/", ".", "..", "semi;colon", "x" * 251, 3, None])
def test_keys_follow_mlflow_s_naming_rule(key):
    assert name_problem(key)
    details = _refused(params=[{"key": key, "value": "v"}])
    assert list(details) == ["params[0].key"]


@pytest.mark.parametrize("key", ["loss", "train/loss", "eval loss", "a.b-c_d:e", "ä"])
def test_good_keys(key):
    assert name_problem(key) is None


def test_every_bad_item_is_named_and_the_first_ones_listed():
    details = _refused(
        params=[{"key": "p", "value": 4}],
        metrics=[{"key": "m", "value": "x"}, "not an object", {"value": 1}],
        tags=[{"key": "t"}],
    )
    assert set(details) == {"params[0].value", "metrics[0].value", "metrics[1]", "metrics[2].key", "tags[0].value"}
    many = _refused(metrics=[{"key": "m", "value": "x"}] * (MAX_ERRORS_LISTED + 5))
    assert len(many) == MAX_ERRORS_LISTED


def test_a_param_repeated_with_another_value_in_one_batch_is_refused():
    details = _refused(params=[{"key": "bits", "value": "4"}, {"key": "bits", "value": "8"}])
    assert list(details) == ["params[1].value"] and "params[0]" in details["params[1].value"][0]


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        ({"metrics": [{"key": "m", "value": 1}] * (MAX_METRICS_PER_BATCH + 1)}, "metrics"),
        ({"params": [{"key": f"p{i}", "value": "v"} for i in range(101)]}, "params"),
        ({"tags": [{"key": f"t{i}", "value": "v"} for i in range(101)]}, "tags"),
        ({"metrics": {"key": "m", "value": 1}}, "metrics"),
        ({"params": "bits=4"}, "params"),
        ({"tags": None}, "tags"),  # left out is fine; sent as null is not a list
        ({"params": [{"key": "p", "value": "x" * 6001}]}, "params[0].value"),
        ({"tags": [{"key": "t", "value": "x" * 8001}]}, "tags[0].value"),
    ],
)
def test_shapes_and_limits(batch, field):
    assert field in _refused(**batch)


def test_proto_json_metrics_are_decoded_in_the_same_pass():
    batch = parse_batch(
        metrics=[
            {"key": "a", "value": "0.5", "step": "12", "timestamp": "1700000000000"},
            {"key": "a", "value": 1, "step": None},
            {"key": "b", "value": -2.5, "step": "-3"},
        ],
        now_ms=7,
        proto_json=True,
    )
    assert batch.metrics == (("a", 0.5, 12, 1700000000000), ("a", 1.0, 0, 7), ("b", -2.5, -3, 7))


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        ({"key": "a", "value": "NaN"}, "metrics[0].value"),
        ({"key": "a", "value": "-Infinity"}, "metrics[0].value"),
        ({"key": "a", "value": "abc"}, "metrics[0].value"),
        ({"key": "a", "value": 1, "step": "1.5"}, "metrics[0].step"),
        ({"key": "a", "value": 1, "step": "９"}, "metrics[0].step"),
        ({"key": "a", "value": 1, "step": str(2**63)}, "metrics[0].step"),
        ({"key": "a", "value": 1, "timestamp": "-1"}, "metrics[0].timestamp"),
    ],
)
def test_proto_json_metrics_are_checked_after_decoding(metric, field):
    with pytest.raises(ValidationFailed) as caught:
        parse_batch(metrics=[metric], now_ms=0, proto_json=True)
    assert field in caught.value.details
