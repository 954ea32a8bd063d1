"""MLflow's search filter for runs, the subset SafeShrink supports: conditions joined by AND, each
`metrics.<key> <op> <number>` (the key's latest value), `params.<key> <op> '<string>'`, `tags.<key> <op> '<string>'`
(op: = != and LIKE without wildcards in the middle), or `attributes.<name> <op> <value>` for status, run_name,
run_id, start_time and end_time. Keys may be quoted with backticks or double quotes. Anything else is refused
(400 naming `filter`); ordering is by start time (`attributes.start_time ASC|DESC`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from accounts.errors import ValidationFailed

_ENTITIES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_ATTRIBUTES = {"status": "status", "run_name": "name", "run_id": "run_uuid", "start_time": "started_at"}
_ATTRIBUTES["end_time"] = "ended_at"
_CONDITION = re.compile(
    r"""^\s*(?:(?P<entity>[A-Za-z]+)\.)?(?P<key>`[^`]+`|"[^"]+"|[\w.\-/: ]+?)\s*"""
    r"""(?P<op>!=|>=|<=|=|>|<|\bLIKE\b|\bILIKE\b)\s*"""
    r"""(?P<value>'(?:[^']|'')*'|"[^"]*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$""",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(f"Unsupported search filter: {message}", details={"filter": [message]})


def parse_filter(text: Any) -> list[tuple[str, str, str, Any]]:
    """[(kind, key, op, value)] for tracking.selectors.external_runs_search."""
    if text in (None, ""):
        return []
    if not isinstance(text, str) or len(text) > 4000:
        raise _refuse("the filter must be a string of at most 4000 characters.")
    conditions = []
    for part in _AND.split(text.strip()):
        match = _CONDITION.match(part)
        if match is None:
            raise _refuse(f"cannot read {part[:200]!r}.")
        entity = _ENTITIES.get((match["entity"] or "attribute").lower())
        if entity is None:
            raise _refuse(f"unknown entity {match['entity']!r}.")
        key = match["key"].strip()
        if key[:1] in '`"' and key[-1:] == key[:1]:
            key = key[1:-1]
        op = match["op"].upper()
        raw = match["value"]
        is_string = raw[:1] in "'\""
        value: Any = raw[1:-1].replace("''", "'") if is_string else float(raw)
        if entity == "metric":
            if is_string or op in ("LIKE", "ILIKE"):
                raise _refuse(f"metrics.{key} compares with a number.")
        elif entity in ("param", "tag"):
            if not is_string or op not in ("=", "!=", "LIKE"):
                raise _refuse(f"{entity}s.{key} compares with a quoted string by =, != or LIKE.")
            if op == "LIKE":
                value = _like_contains(value)
        else:
            entity, key, op, value = _attribute(key, op, value, is_string)
        conditions.append((entity, key, op if op != "LIKE" else "LIKE", value))
    return conditions


def _like_contains(pattern: str) -> str:
    inner = pattern[1:] if pattern.startswith("%") else pattern
    inner = inner[:-1] if inner.endswith("%") else inner
    if "%" in inner or "_" in inner or not (pattern.startswith("%") and pattern.endswith("%")):
        raise _refuse("LIKE supports only '%text%'.")
    return inner


def _attribute(key: str, op: str, value: Any, is_string: bool) -> tuple[str, str, str, Any]:
    field = _ATTRIBUTES.get(key)
    if field is None:
        raise _refuse(f"unknown attribute {key!r} (status, run_name, run_id, start_time, end_time).")
    if field in ("started_at", "ended_at"):
        if is_string:
            raise _refuse(f"{key} compares with milliseconds since the epoch.")
        return "attribute", field, op, dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    if not is_string or op not in ("=", "!="):
        raise _refuse(f"{key} compares with a quoted string by = or !=.")
    return "attribute", field, op, value.lower() if field == "status" else value


def oldest_first(order_by: Any) -> bool:
    """True for `start_time ASC`; the default (and `start_time DESC`) is newest first; anything else is refused."""
    if not order_by:
        return False
    if not isinstance(order_by, list) or len(order_by) != 1 or not isinstance(order_by[0], str):
        raise ValidationFailed("Unsupported order_by.", details={"order_by": ["Only attributes.start_time."]})
    words = order_by[0].replace("attributes.", "").replace("attribute.", "").split()
    if (
        not words
        or words[0] != "start_time"
        or len(words) > 2
        or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC"))
    ):
        raise ValidationFailed("Unsupported order_by.", details={"order_by": ["Only attributes.start_time ASC|DESC."]})
    return len(words) == 2 and words[1].upper() == "ASC"
