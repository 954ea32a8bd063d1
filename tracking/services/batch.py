"""Parsing and checking what an engineer logs to an external run: params, metrics and tags, in one batch.

Pure Python, no database: the REST API and the MLflow protocol layer (issue 13 item 3) hand it the decoded JSON
as they received it, and it either returns the whole batch normalised or refuses it whole, naming every bad item
by its list and index (`metrics[3].value`), so nothing of a refused batch is stored. The rules are MLflow's
(mlflow.utils.validation), so a batch that one server takes the other takes too, with two differences that the
issue asks for: a metric value must be a finite number (MLflow stores NaN), and a step must fit in int64.

Parsing is on the logging hot path: one pass over plain dicts and tuples, no serializer objects.
"""

from __future__ import annotations

import functools
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from accounts.errors import ValidationFailed
from tracking.models import MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# proto3 JSON (MLflow's wire format) writes doubles' non-finite values as these strings.
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# MLflow's per-request limits for log_batch.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_ERRORS_LISTED = 20

# MLflow's rule for param, metric and tag names: letters, digits, _ - . space : and /, and a normalised path.
_NAME_CHARS = re.compile(r"^[/\w.\- :]+$")
NAME_RULE = "Letters, digits and _ - . : / and spaces only; not starting with '/', no '..', '.' or empty segment."


class _Missing:
    """A list left out of the request (None is a list sent as null, which is refused)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Batch:
    """A checked batch. `params` keep their first occurrence (a repeat with the same value is dropped), `tags`
    their last value per key; `metrics` are (key, value, step, timestamp in ms), in the order sent."""

    params: tuple[tuple[str, str], ...]
    metrics: tuple[tuple[str, float, int, int], ...]
    tags: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.params) + len(self.metrics) + len(self.tags)


class _Problems:
    """Collects `field -> [message]` and raises them together (the first MAX_ERRORS_LISTED)."""

    def __init__(self) -> None:
        self.details: dict[str, list[str]] = {}
        self.total = 0

    def add(self, field: str, message: str) -> None:
        self.total += 1
        if len(self.details) < MAX_ERRORS_LISTED:
            self.details.setdefault(field, []).append(message)

    def raise_if_any(self, what: str = "batch", outcome: str = "Nothing was logged.") -> None:
        if not self.total:
            return
        fields = ", ".join(self.details)
        more = f" (and {self.total - len(self.details)} more)" if self.total > len(self.details) else ""
        raise ValidationFailed(f"Invalid {what}: {fields}{more}. {outcome}", details=self.details)


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a param, metric or tag key (None when it can)."""
    if not isinstance(name, str):
        return f"Must be a string, not {_kind(name)}."
    if not name:
        return "May not be empty."
    if len(name) > MAX_KEY_LENGTH:
        return f"At most {MAX_KEY_LENGTH} characters."
    if not _NAME_CHARS.match(name):
        return NAME_RULE
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        return NAME_RULE
    return None


def metric_value(value: Any) -> float | str:
    """The value as a float, or why it is refused (a str). Booleans are not numbers here (nor in JSON)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"Must be a number, not {_kind(value)}."
    try:
        number = float(value)
    except OverflowError:
        return "Must be a finite number; this one is too large for a float."
    if not math.isfinite(number):
        return "Must be a finite number (NaN and infinities are refused)."
    return number


def integer_in(value: Any, low: int, high: int) -> int | str:
    """`value` as an int within [low, high] (an integral float such as 3.0 counts), or why it is refused."""
    if isinstance(value, bool):
        return "Must be an integer, not a boolean."
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return f"Must be an integer, not {_kind(value)}."
    if not low <= value <= high:
        return f"Must be between {low} and {high}."
    return value


def proto_number(value: Any) -> Any:
    """A double as proto3 JSON may carry it: "NaN"/"Infinity"/"-Infinity" and numeric strings become floats
    (then checked like any number: non-finite is refused); anything else is passed on to be refused."""
    if isinstance(value, str):
        if value in _NON_FINITE:
            return _NON_FINITE[value]
        try:
            return float(value)
        except ValueError:
            return value
    return value


def proto_int(value: Any) -> Any:
    """An int64 as proto3 JSON may carry it (a string of digits); anything else is passed on to be checked."""
    if type(value) is str and 0 < len(value) <= 26 and value.isascii():  # str methods, not a regex: the hot path
        digits = value[1:] if value[0] == "-" else value
        if digits.isdigit():
            return int(value)
    return value


def parse_batch(
    *,
    params: Any = MISSING,
    metrics: Any = MISSING,
    tags: Any = MISSING,
    now_ms: int,
    proto_json: bool = False,
) -> Batch:
    """Check a whole batch; `now_ms` is the timestamp of metrics sent without one. A list left out is MISSING (a
    list sent as null is refused). With `proto_json`, metrics are as MLflow's client sends them (proto3 JSON:
    int64 step and timestamp as strings, "NaN"/"Infinity" as strings, a null step 0), decoded in the same pass.
    Raises ValidationFailed naming every bad item (`params[0].key`,
    `metrics[3].value`, `tags`) when anything is wrong."""
    problems = _Problems()
    param_items = _items(params, "params", MAX_PARAMS_PER_BATCH, problems)
    metric_items = _items(metrics, "metrics", MAX_METRICS_PER_BATCH, problems)
    tag_items = _items(tags, "tags", MAX_TAGS_PER_BATCH, problems)
    if len(param_items) + len(metric_items) + len(tag_items) > MAX_ENTITIES_PER_BATCH:
        problems.add("metrics", f"At most {MAX_ENTITIES_PER_BATCH} params, metrics and tags together per request.")
    problems.raise_if_any()

    parsed_params: dict[str, str] = {}
    first_index: dict[str, int] = {}
    for i, item in enumerate(param_items):
        pair = _key_value(item, f"params[{i}]", MAX_PARAM_VALUE_LENGTH, problems)
        if pair is None:
            continue
        key, value = pair
        if key in parsed_params and parsed_params[key] != value:
            problems.add(f"params[{i}].value", f"params[{first_index[key]}] gives '{key}' another value in this batch.")
            continue
        parsed_params.setdefault(key, value)
        first_index.setdefault(key, i)

    parsed_metrics: list[tuple[str, float, int, int]] = []
    for i, item in enumerate(metric_items):
        metric = _metric(item, i, now_ms, problems, proto_json)
        if metric is not None:
            parsed_metrics.append(metric)

    parsed_tags: dict[str, str] = {}
    for i, item in enumerate(tag_items):
        pair = _key_value(item, f"tags[{i}]", MAX_TAG_VALUE_LENGTH, problems)
        if pair is not None:
            parsed_tags.pop(pair[0], None)  # the last value wins, in the position it was last sent
            parsed_tags[pair[0]] = pair[1]
    problems.raise_if_any()
    return Batch(params=tuple(parsed_params.items()), metrics=tuple(parsed_metrics), tags=tuple(parsed_tags.items()))


def parse_tags(tags: Any, field: str = "tags") -> dict[str, str]:
    """A {key: value} mapping of tags (as given when a run is created), checked like a batch's tags."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ValidationFailed(f"{field} must be an object.", details={field: ["Must be an object of key: value."]})
    problems = _Problems()
    if len(tags) > MAX_TAGS_PER_BATCH:
        problems.add(field, f"At most {MAX_TAGS_PER_BATCH} tags.")
    for key, value in tags.items():
        problem = name_problem(key)
        if problem:
            problems.add(f"{field}.{key}", f"Not a valid tag key: {problem}")
        elif not isinstance(value, str) or len(value) > MAX_TAG_VALUE_LENGTH:
            problems.add(f"{field}.{key}", f"Must be a string of at most {MAX_TAG_VALUE_LENGTH} characters.")
    problems.raise_if_any("tags", "Nothing was stored.")
    return dict(tags)


def _items(value: Any, field: str, limit: int, problems: _Problems) -> list:
    if value is MISSING:
        return []
    if not isinstance(value, list):
        problems.add(field, f"Must be a list, not {_kind(value)}.")
        return []
    if len(value) > limit:
        problems.add(field, f"At most {limit} per request (got {len(value)}).")
        return []
    return value


def _key_value(item: Any, where: str, max_value: int, problems: _Problems) -> tuple[str, str] | None:
    if not isinstance(item, Mapping):
        problems.add(where, "Must be an object with key and value.")
        return None
    key, value = item.get("key"), item.get("value")
    ok = True
    problem = name_problem(key)
    if problem:
        problems.add(f"{where}.key", problem)
        ok = False
    if not isinstance(value, str):
        problems.add(f"{where}.value", f"Must be a string, not {_kind(value)}.")
        ok = False
    elif len(value) > max_value:
        problems.add(f"{where}.value", f"At most {max_value} characters.")
        ok = False
    return (key, value) if ok and isinstance(key, str) and isinstance(value, str) else None


@functools.lru_cache(maxsize=4096)
def _str_name_problem(name: str) -> str | None:
    """name_problem for a string, remembered: a log_batch repeats a few keys over its 1,000 metrics."""
    return name_problem(name)


def _metric(
    item: Any, i: int, now_ms: int, problems: _Problems, proto: bool = False
) -> tuple[str, float, int, int] | None:
    where = f"metrics[{i}]"
    if not isinstance(item, Mapping):
        problems.add(where, "Must be an object with key, value, and optionally step and timestamp.")
        return None
    before = problems.total
    key = item.get("key")
    problem = _str_name_problem(key) if type(key) is str else name_problem(key)
    if problem:
        problems.add(f"{where}.key", problem)
    if "value" in item:
        value = metric_value(proto_number(item["value"]) if proto else item["value"])
    else:
        value = "This field is required."
    if isinstance(value, str):
        problems.add(f"{where}.value", value)
    raw_step = item.get("step", 0)
    if proto:
        raw_step = 0 if raw_step is None else proto_int(raw_step)
    step = integer_in(raw_step, INT64_MIN, INT64_MAX)
    if isinstance(step, str):
        problems.add(f"{where}.step", step)
    raw_ts = item.get("timestamp")
    if proto and raw_ts is not None:
        raw_ts = proto_int(raw_ts)
    timestamp = now_ms if raw_ts is None else integer_in(raw_ts, 0, INT64_MAX)
    if isinstance(timestamp, str):
        problems.add(f"{where}.timestamp", timestamp + " (milliseconds since the Unix epoch)")
    if problems.total != before:
        return None
    return key, value, step, timestamp  # type: ignore[return-value]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list"}.get(
        type(value), "an object" if isinstance(value, Mapping) else type(value).__name__
    )
