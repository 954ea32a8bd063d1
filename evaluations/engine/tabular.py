"""Parse uploaded suite files (CSV or JSONL, as bytes) into validated rows, all or nothing (stdlib only).

Every row is checked and every problem is reported with its line number ("line 7: empty text"), so a
user can fix a file in one go; nothing is returned unless the whole file is valid.

Column mapping
    ``ColumnMapping`` maps the fields text, label, id (required) and slice, tags, subgroup, source_id
    (optional) to the file's column names (CSV header names or JSON keys). An optional field set to
    ``None`` is not read. An optional field mapped to its own name (the default, e.g. ``subgroup`` ->
    "subgroup") is read when the column exists and otherwise left at its default; an optional field
    mapped to any other name was asked for explicitly, so a file without that column is an error.

Values
    - text: kept exactly as written (not stripped); blank text is an error.
    - label: must be in the allowed label set when one is given.
    - slice: routine, edge or adversarial; an empty or absent value takes ``default_slice``.
    - tags: "a|b|c" or a JSON list of strings (in CSV: a cell starting with "["); empty -> ().
    - subgroup, source_id: strings, empty when absent. A source_id must name another row's id in the
      same file unless ``require_known_sources=False``.
    - JSONL values may be strings or integers for id/label/source_id (integers become strings), null
      counts as absent.

Limits (the same for CSV and JSONL, checked on every stored field)
    id and source_id: at most ``MAX_ID_CHARS`` characters; text, and a row's tags together:
    ``MAX_TEXT_CHARS``; label: ``MAX_LABEL_CHARS``; subgroup: ``MAX_SUBGROUP_CHARS``. A NUL character
    (U+0000) or an unpaired surrogate (JSONL "\\ud800") in a stored field is refused, since PostgreSQL
    cannot store either; a raw NUL byte anywhere in the file is refused too.

Line numbers are physical lines (CSV: header = line 1, a record spanning several lines is reported at
its first line). A file that is not UTF-8 is reported by byte offset and line of each invalid sequence.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from compression.engine.errors import EngineError

__all__ = [
    "SLICES",
    "DEFAULT_MAX_BYTES",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_SUBGROUP_CHARS",
    "MAX_ERRORS_LISTED",
    "ColumnMapping",
    "ParsedRow",
    "ParsedSuite",
    "SuiteFileError",
    "parse_suite_file",
    "detect_format",
]

SLICES: tuple[str, ...] = ("routine", "edge", "adversarial")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_ERRORS_LISTED = 50
# Field limits, in characters, for both formats; the Example model's column sizes use the same constants.
MAX_ID_CHARS = 200  # id and source_id
MAX_TEXT_CHARS = 131_072  # text (and a row's tags together); 128 Ki characters
MAX_LABEL_CHARS = 64
MAX_SUBGROUP_CHARS = 200
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
FORMATS = ("csv", "jsonl")
_REQUIRED = ("text", "label", "id")
_OPTIONAL = ("slice", "tags", "subgroup", "source_id")


class SuiteFileError(EngineError):
    """The file was refused; ``errors`` lists every problem found (capped, with "... and N more")."""

    def __init__(self, errors: list[str]) -> None:
        self.errors: list[str] = list(errors)
        shown = "; ".join(self.errors[:3]) + ("; ..." if len(self.errors) > 3 else "")
        super().__init__("invalid_input", f"the suite file was refused: {shown}")

    def __reduce__(self) -> tuple[type[SuiteFileError], tuple[list[str]]]:  # type: ignore[override]
        return (type(self), (self.errors,))


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds each field (see the module docstring for optional fields)."""

    text: str = "text"
    label: str = "label"
    id: str = "id"
    slice: str | None = "slice"
    tags: str | None = "tags"
    subgroup: str | None = "subgroup"
    source_id: str | None = "source_id"

    @classmethod
    def from_dict(cls, mapping: Mapping[str, str | None]) -> ColumnMapping:
        """Build from {field: column}; unknown fields or non-string column names raise SuiteFileError."""
        known = {f.name for f in fields(cls)}
        problems = [
            f"column mapping: unknown field {key!r} (expected some of {sorted(known)})"
            for key in mapping
            if key not in known
        ]
        for key, value in mapping.items():
            if (
                key in known
                and not (isinstance(value, str) and value.strip())
                and not (value is None and key in _OPTIONAL)
            ):
                problems.append(f"column mapping: field {key!r} needs a column name, got {value!r}")
        if problems:
            raise SuiteFileError(problems)
        # Checked above: every required field maps to a non-empty string, an optional one may be None.
        cleaned: dict[str, Any] = {
            key: (value.strip() if isinstance(value, str) else value) for key, value in mapping.items()
        }
        return cls(**cleaned)

    def explicit(self, name: str) -> bool:
        """True when optional field ``name`` is mapped to a column other than its own name."""
        column = getattr(self, name)
        return column is not None and column != name


@dataclass(frozen=True)
class ParsedRow:
    """One validated example; ``line`` is where its record starts in the file (for later messages)."""

    external_id: str
    text: str
    label: str
    slice: str
    tags: tuple[str, ...]
    subgroup: str
    source_id: str
    line: int


@dataclass(frozen=True)
class ParsedSuite:
    """Every row of a valid file, in file order."""

    rows: tuple[ParsedRow, ...]
    format: str = "csv"


def detect_format(filename: str) -> str:
    """'csv' for *.csv, 'jsonl' for *.jsonl / *.ndjson; SuiteFileError otherwise."""
    lower = filename.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise SuiteFileError([f"cannot tell the format of {filename!r}: expected a .csv or .jsonl file"])


def _utf8_errors(data: bytes, limit: int) -> list[str]:
    """One message per invalid UTF-8 sequence (byte offset and line), at most ``limit`` + a summary."""
    errors: list[str] = []
    position = 0
    found = 0
    while position < len(data):
        try:
            data[position:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            offset = position + exc.start
            found += 1
            if found <= limit:
                line = data.count(b"\n", 0, offset) + 1
                errors.append(f"line {line}: not valid UTF-8 (byte 0x{data[offset]:02x} at byte offset {offset})")
            position = position + max(exc.end, exc.start + 1)
    if found > limit:
        errors.append(f"... and {found - limit} more")
    return errors


def _cap(errors: list[str], limit: int) -> list[str]:
    if len(errors) <= limit:
        return errors
    return errors[:limit] + [f"... and {len(errors) - limit} more"]


def _as_text(value: Any, what: str, where: str, errors: list[str], *, allow_int: bool) -> str | None:
    """A JSON value as a string: str as is, int (not bool) when allowed, None/absent -> None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    errors.append(f"{where}: {what} must be a string, got {type(value).__name__}")
    return None


def _parse_tags(value: Any, where: str, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return ()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: tags look like a JSON list but are malformed ({exc.msg})")
                return ()
        else:
            return tuple(tag.strip() for tag in stripped.split("|") if tag.strip())
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return tuple(tag.strip() for tag in value if tag.strip())
    errors.append(f"{where}: tags must be '|'-joined text or a list of strings")
    return ()


def _csv_records(text: str, errors: list[str]) -> tuple[int, list[str] | None, list[tuple[int, list[str]]]]:
    """(header line, header, [(first line, cells)]) with blank lines skipped; a csv error is reported
    with its line and ends reading (the reader cannot resynchronise reliably after a quoting error)."""
    # The csv module refuses fields over its own limit (131,072 by default) without naming the column;
    # lift it to the file's length so that the per-field limits below apply alike to CSV and JSONL.
    if csv.field_size_limit() <= len(text):
        csv.field_size_limit(len(text) + 1)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 1
    records: list[tuple[int, list[str]]] = []
    previous_end = 0
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"line {reader.line_num}: malformed CSV ({exc})")
            break
        previous_end = reader.line_num
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if header is None:
            header, header_line = cells, start
            continue
        records.append((start, cells))
    return header_line, header, records


def _csv_table(
    text: str, mapping: ColumnMapping, errors: list[str]
) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """({column name: index}, [(line, cells)] of the records with as many cells as the header)."""
    header_line, header, records = _csv_records(text, errors)
    if header is None:
        return {}, []
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            errors.append(f"line {header_line}: duplicate column {name!r}")
        seen.add(name)
    missing = [getattr(mapping, f) for f in _REQUIRED if getattr(mapping, f) not in seen]
    missing += [getattr(mapping, f) for f in _OPTIONAL if mapping.explicit(f) and getattr(mapping, f) not in seen]
    if missing:
        errors.append(
            f"line {header_line}: missing column(s) {', '.join(repr(m) for m in missing)} (header has {names})"
        )
    if missing or len(seen) != len(names):
        return {}, []
    width = len(names)
    kept = []
    for line, cells in records:
        if len(cells) != width:
            errors.append(f"line {line}: {len(cells)} field(s) but the header has {width}")
            continue
        kept.append((line, cells))
    return {name: i for i, name in enumerate(names)}, kept


def _jsonl_rows(text: str, mapping: ColumnMapping, errors: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    seen_keys: set[str] = set()
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError) as exc:  # an integer of over 4,300 digits; nesting too deep
            errors.append(f"line {number}: unreadable JSON ({str(exc)[:120]})")
            continue
        if not isinstance(value, dict):
            errors.append(f"line {number}: expected a JSON object, got {type(value).__name__}")
            continue
        seen_keys.update(value)
        missing = [getattr(mapping, f) for f in _REQUIRED if value.get(getattr(mapping, f)) is None]
        if missing:
            errors.append(f"line {number}: missing column(s) {', '.join(repr(m) for m in missing)}")
            continue
        yield number, value
    absent = [getattr(mapping, f) for f in _OPTIONAL if mapping.explicit(f) and getattr(mapping, f) not in seen_keys]
    if absent and seen_keys:
        errors.append(f"column(s) {', '.join(repr(a) for a in absent)} appear in no line of the file")


def parse_suite_file(
    data: bytes,
    *,
    fmt: str,
    mapping: ColumnMapping | Mapping[str, str | None] | None = None,
    labels: Collection[str] | None = None,
    default_slice: str = "routine",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_errors: int = MAX_ERRORS_LISTED,
    require_known_sources: bool = True,
) -> ParsedSuite:
    """Parse and validate a whole suite file; return every row or raise SuiteFileError listing problems.

    ``fmt`` is "csv" or "jsonl" (see ``detect_format``); ``labels`` is the allowed label set (None
    accepts any non-empty label); ``max_bytes`` refuses larger files before reading them; at most
    ``max_errors`` problems are listed, followed by "... and N more".
    """
    if fmt not in FORMATS:
        raise SuiteFileError([f"unknown format {fmt!r} (expected one of {list(FORMATS)})"])
    if default_slice not in SLICES:
        raise SuiteFileError([f"default slice {default_slice!r} is not one of {list(SLICES)}"])
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SuiteFileError([f"file content must be bytes, got {type(data).__name__}"])
    data = bytes(data)
    if len(data) > max_bytes:
        raise SuiteFileError([f"file is {len(data):,} bytes, larger than the limit of {max_bytes:,} bytes"])
    columns = mapping if isinstance(mapping, ColumnMapping) else ColumnMapping.from_dict(mapping or {})
    utf8 = _utf8_errors(data, max_errors)
    if utf8:
        raise SuiteFileError(utf8)
    text = data.decode("utf-8").removeprefix("\ufeff")
    if not text.strip():
        raise SuiteFileError(["the file is empty"])
    allowed = set(labels) if labels is not None else None

    errors: list[str] = []
    nul = text.find("\x00")
    # NUL or a lone surrogate can only come from a raw NUL byte or (JSONL) a \\u escape: check fields then only.
    check_chars = nul >= 0 or (fmt == "jsonl" and "\\u" in text)
    raw_rows: list[tuple[int, list[str]]] | list[tuple[int, dict[str, Any]]]
    if fmt == "csv":
        index, raw_rows = _csv_table(text, columns, errors)
    else:
        index, raw_rows = {}, list(_jsonl_rows(text, columns, errors))
    rows: list[ParsedRow] = []
    first_line: dict[str, int] = {}
    tag_cache: dict[str, tuple[str, ...]] = {}
    i_id, i_text, i_label, i_slice, i_subgroup, i_source, i_tags = (
        None if column is None else index.get(column)
        for column in (
            columns.id,
            columns.text,
            columns.label,
            columns.slice,
            columns.subgroup,
            columns.source_id,
            columns.tags,
        )
    )
    wanted = [
        (name, getattr(columns, name), name in ("id", "label", "source_id"))
        for name in ("id", "text", "label", "slice", "subgroup", "source_id")
    ]
    external_id: str | None
    text_value: str | None
    label: str | None
    slice_value: str | None
    subgroup: str | None
    source_id: str | None
    record: Any  # CSV: the cells (list[str], by column index); JSONL: the object (dict[str, Any])
    for line, record in raw_rows:
        where = f"line {line}"
        if fmt == "csv":  # a list of strings, read by column index (the hot path of a large file)
            external_id, text_value, label = record[i_id], record[i_text], record[i_label]
            slice_value = None if i_slice is None else record[i_slice]
            subgroup = None if i_subgroup is None else record[i_subgroup]
            source_id = None if i_source is None else record[i_source]
        else:
            external_id, text_value, label, slice_value, subgroup, source_id = (
                None if column is None else _as_text(record.get(column), name, where, errors, allow_int=allow_int)
                for name, column, allow_int in wanted
            )
        if fmt == "csv":
            tags_raw = None if i_tags is None else record[i_tags]
        else:
            tags_raw = record.get(columns.tags) if columns.tags is not None else None
        if type(tags_raw) is str and (cached := tag_cache.get(tags_raw)) is not None:
            tags = cached  # the same cell as an earlier row's, parsed without error
        else:
            tags = _parse_tags(tags_raw, where, errors)
            if type(tags_raw) is str and not tags_raw.lstrip().startswith("["):
                tag_cache[tags_raw] = tags

        refused = (
            check_chars
            or (external_id and len(external_id) > MAX_ID_CHARS)
            or (text_value and len(text_value) > MAX_TEXT_CHARS)
            or (label and len(label) > MAX_LABEL_CHARS)
            or (slice_value and len(slice_value) > MAX_LABEL_CHARS)
            or (subgroup and len(subgroup) > MAX_SUBGROUP_CHARS)
            or (source_id and len(source_id) > MAX_ID_CHARS)
        ) and _refuse_unstorable(
            where,
            columns,
            errors,
            check_chars,
            (
                ("id", external_id, MAX_ID_CHARS),
                ("text", text_value, MAX_TEXT_CHARS),
                ("label", label, MAX_LABEL_CHARS),
                ("slice", slice_value, MAX_LABEL_CHARS),
                ("subgroup", subgroup, MAX_SUBGROUP_CHARS),
                ("source_id", source_id, MAX_ID_CHARS),
            ),
        )
        if tags and (sum(map(len, tags)) > MAX_TEXT_CHARS or (check_chars and _UNSTORABLE.search("".join(tags)))):
            _refuse_unstorable(where, columns, errors, check_chars, (("tags", "|".join(tags), MAX_TEXT_CHARS),))
        if refused:  # the other checks would only repeat (or echo) the refused value
            rows.append(
                ParsedRow(
                    external_id="",
                    text="",
                    label="",
                    slice=default_slice,
                    tags=(),
                    subgroup="",
                    source_id="",
                    line=line,
                )
            )
            continue

        external_id = (external_id or "").strip()
        if not external_id:
            errors.append(f"{where}: empty id")
        elif external_id in first_line:
            errors.append(f"{where}: duplicate id {external_id!r} (first on line {first_line[external_id]})")
        else:
            first_line[external_id] = line
        text_value = text_value or ""
        if not text_value.strip():
            errors.append(f"{where}: empty text")
        label = (label or "").strip()
        if not label:
            errors.append(f"{where}: empty label")
        elif allowed is not None and label not in allowed:
            errors.append(f"{where}: unknown label {label!r} (expected one of {sorted(allowed)})")
        slice_value = (slice_value or "").strip() or default_slice
        if slice_value not in SLICES:
            errors.append(f"{where}: unknown slice {slice_value!r} (expected one of {list(SLICES)})")
        rows.append(
            ParsedRow(
                external_id=external_id,
                text=text_value,
                label=label,
                slice=slice_value,
                tags=tags,
                subgroup=(subgroup or "").strip(),
                source_id=(source_id or "").strip(),
                line=line,
            )
        )
    if require_known_sources:
        for row in rows:
            if not row.source_id:
                continue
            if row.source_id == row.external_id:
                errors.append(f"line {row.line}: source_id {row.source_id!r} names the row itself")
            elif row.source_id not in first_line:
                errors.append(f"line {row.line}: source_id {row.source_id!r} names no row of this file")
    if nul >= 0 and not any("NUL" in e for e in errors):  # in a column that is not read, or the header
        errors.append(f"line {text.count(chr(10), 0, nul) + 1}: a NUL byte (0x00); suite files may not contain one")
    if not rows and not errors:
        errors.append("the file has no examples")
    if errors:
        errors.sort(key=_line_of)
        raise SuiteFileError(_cap(errors, max_errors))
    return ParsedSuite(rows=tuple(rows), format=fmt)


def _refuse_unstorable(
    where: str, columns: ColumnMapping, errors: list[str], check_chars: bool, values: tuple[tuple[str, Any, int], ...]
) -> bool:
    """Report each value over its limit, or holding NUL / an unpaired surrogate; True when any was."""
    refused = False
    for name, value, limit in values:
        if not isinstance(value, str):
            continue
        what = f"{name} (column {getattr(columns, name)!r})"
        if len(value) > limit:
            errors.append(f"{where}: {what} has {len(value):,} characters, over the limit of {limit:,}")
            refused = True
        elif check_chars and (bad := _UNSTORABLE.search(value)):
            kind = (
                "a NUL character (U+0000)"
                if bad.group() == "\x00"
                else f"an unpaired surrogate (U+{ord(bad.group()):04X})"
            )
            errors.append(f"{where}: {what} contains {kind} at character {bad.start() + 1}, which cannot be stored")
            refused = True
    return refused


def _line_of(message: str) -> int:
    """Sort key: the line number a message starts with (file-level messages last)."""
    if message.startswith("line "):
        number = message[5:].split(":", 1)[0]
        if number.isdigit():
            return int(number)
    return 1 << 62
