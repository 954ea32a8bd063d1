"""Suite file parsing (CSV and JSONL): valid files, column mappings, and every bad input with its line."""

from __future__ import annotations

import json
import pickle

import pytest

from compression.engine.errors import EngineError
from evaluations.engine.tabular import (
    ColumnMapping,
    ParsedRow,
    ParsedSuite,
    SuiteFileError,
    detect_format,
    parse_suite_file,
)

LABELS = {"normal", "hatespeech", "offensive"}


def refused(data: bytes, **options) -> list[str]:
    options.setdefault("fmt", "csv")
    with pytest.raises(SuiteFileError) as caught:
        parse_suite_file(data, **options)
    assert caught.value.code == "invalid_input"
    return caught.value.errors


def test_csv_all_fields_and_defaults() -> None:
    data = (
        b"id,text,label,slice,tags,subgroup,source_id\r\n"
        b"a1,I hate them,hatespeech,edge,counter-speech|slur,women,\r\n"
        b'a2,"two\nlines, quoted",normal,,"[""x"", ""y""]",,a1\r\n'
        b"\r\n"
        b"a3,  padded text ,offensive,adversarial,,,\r\n"
    )
    suite = parse_suite_file(data, fmt="csv", labels=LABELS)
    assert isinstance(suite, ParsedSuite) and suite.format == "csv"
    assert suite.rows == (
        ParsedRow("a1", "I hate them", "hatespeech", "edge", ("counter-speech", "slur"), "women", "", 2),
        ParsedRow("a2", "two\nlines, quoted", "normal", "routine", ("x", "y"), "", "a1", 3),
        ParsedRow("a3", "  padded text ", "offensive", "adversarial", (), "", "", 6),
    )


def test_csv_without_optional_columns_bom_and_custom_mapping() -> None:
    data = "\ufeffpost,body,class\n7,hello,normal\n".encode()
    mapping = {"id": "post", "text": "body", "label": "class"}
    suite = parse_suite_file(data, fmt="csv", mapping=mapping, default_slice="edge")
    assert suite.rows == (ParsedRow("7", "hello", "normal", "edge", (), "", "", 2),)


def test_jsonl_values_and_lines() -> None:
    lines = [
        {"id": 1, "text": "a", "label": "normal", "tags": ["t1", "t2"], "subgroup": None},
        {"id": "2", "text": "b", "label": "offensive", "slice": "edge", "tags": "p|q", "source_id": 1},
    ]
    data = (json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n").encode()
    suite = parse_suite_file(data, fmt="jsonl", labels=LABELS)
    assert suite.rows == (
        ParsedRow("1", "a", "normal", "routine", ("t1", "t2"), "", "", 1),
        ParsedRow("2", "b", "offensive", "edge", ("p", "q"), "", "1", 3),
    )


def test_every_row_problem_is_listed_with_its_line() -> None:
    data = (
        b"id,text,label,slice\n"
        b"1,fine,normal,routine\n"
        b"2,   ,normal,routine\n"
        b"1,dup,normal,routine\n"
        b"4,x,toxic,routine\n"
        b"5,x,normal,weird\n"
        b"6,x,,routine\n"
        b",x,normal,routine\n"
        b"8,x,normal\n"
    )
    assert refused(data, labels=LABELS) == [
        "line 3: empty text",
        "line 4: duplicate id '1' (first on line 2)",
        "line 5: unknown label 'toxic' (expected one of ['hatespeech', 'normal', 'offensive'])",
        "line 6: unknown slice 'weird' (expected one of ['routine', 'edge', 'adversarial'])",
        "line 7: empty label",
        "line 8: empty id",
        "line 9: 3 field(s) but the header has 4",
    ]


def test_missing_columns_are_named() -> None:
    assert refused(b"id,body\n1,x\n") == ["line 1: missing column(s) 'text', 'label' (header has ['id', 'body'])"]
    # An optional field mapped explicitly to another name must exist.
    errors = refused(b"id,text,label\n1,x,normal\n", mapping={"subgroup": "target"})
    assert errors == ["line 1: missing column(s) 'target' (header has ['id', 'text', 'label'])"]
    assert refused(b"id,text,text,label\n1,x,y,normal\n") == ["line 1: duplicate column 'text'"]
    jsonl = b'{"id": 1, "text": "x"}\n{"id": 2, "label": "normal"}\n'
    assert refused(jsonl, fmt="jsonl") == ["line 1: missing column(s) 'label'", "line 2: missing column(s) 'text'"]


def test_not_utf8_names_byte_offset_and_line() -> None:
    data = b"id,text,label\n1,caf\xe9,normal\n2,ok,normal\n3,\xff\xfe,normal\n"
    assert refused(data) == [
        "line 2: not valid UTF-8 (byte 0xe9 at byte offset 19)",
        "line 4: not valid UTF-8 (byte 0xff at byte offset 42)",
        "line 4: not valid UTF-8 (byte 0xfe at byte offset 43)",
    ]


def test_size_limit_and_empty_files() -> None:
    data = b"id,text,label\n" + b"1,x,normal\n" * 100
    assert refused(data, max_bytes=100) == [f"file is {len(data):,} bytes, larger than the limit of 100 bytes"]
    assert refused(b"") == ["the file is empty"]
    assert refused(b"id,text,label\n") == ["the file has no examples"]


def test_malformed_json_lines() -> None:
    data = b'{"id": 1, "text": "a", "label": "normal"}\n{"id": 2, "text": "b"\n[1, 2]\n"just text"\n'
    assert refused(data, fmt="jsonl") == [
        "line 2: malformed JSON (Expecting ',' delimiter at column 22)",
        "line 3: expected a JSON object, got list",
        "line 4: expected a JSON object, got str",
    ]
    bad_types = b'{"id": 1.5, "text": ["a"], "label": "normal", "tags": 3}\n'
    assert refused(bad_types, fmt="jsonl") == [
        "line 1: id must be a string, got float",
        "line 1: text must be a string, got list",
        "line 1: tags must be '|'-joined text or a list of strings",
        "line 1: empty id",
        "line 1: empty text",
    ]


def test_malformed_csv_quote_and_bad_tags() -> None:
    data = b'id,text,label,tags\n1,ok,normal,"[""a"""\n2,"bad"x,normal,\n'
    errors = refused(data)
    assert errors[0].startswith("line 2: tags look like a JSON list but are malformed")
    assert errors[1].startswith("line 3: malformed CSV")


def test_source_ids_must_name_rows() -> None:
    data = b"id,text,label,source_id\n1,a,normal,\n2,b,normal,1\n3,c,normal,9\n4,d,normal,4\n"
    assert refused(data) == [
        "line 4: source_id '9' names no row of this file",
        "line 5: source_id '4' names the row itself",
    ]
    suite = parse_suite_file(data.replace(b",4\n", b",\n"), fmt="csv", require_known_sources=False)
    assert [row.source_id for row in suite.rows] == ["", "1", "9", ""]


def test_errors_are_capped_with_a_count_of_the_rest() -> None:
    data = b"id,text,label\n" + b"".join(b"%d,,normal\n" % i for i in range(60))
    errors = refused(data, max_errors=5)
    assert errors == [f"line {i}: empty text" for i in range(2, 7)] + ["... and 55 more"]


def test_bad_options_and_format_detection() -> None:
    assert detect_format("Suite.CSV") == "csv" and detect_format("x.jsonl") == "jsonl"
    with pytest.raises(SuiteFileError):
        detect_format("x.xlsx")
    assert refused(b"x", fmt="xlsx") == ["unknown format 'xlsx' (expected one of ['csv', 'jsonl'])"]
    assert refused(b"x", default_slice="other")[0].startswith("default slice 'other'")
    assert refused(b"x", mapping={"colour": "c"})[0].startswith("column mapping: unknown field 'colour'")
    assert refused(b"x", mapping={"text": ""})[0] == "column mapping: field 'text' needs a column name, got ''"
    assert ColumnMapping.from_dict({"subgroup": None}).subgroup is None


def test_suite_file_error_is_an_engine_error_and_pickles() -> None:
    error = SuiteFileError(["line 2: empty text"])
    assert isinstance(error, EngineError) and error.code == "invalid_input"
    copy = pickle.loads(pickle.dumps(error))
    assert copy.errors == ["line 2: empty text"] and copy.code == "invalid_input"
