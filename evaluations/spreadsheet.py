"""Text leaving SafeShrink as CSV (or anything a spreadsheet opens): formula injection neutralised.

Suite texts are stored verbatim, including cells that begin with `=`, `+`, `-` or `@` (a safety suite
must keep "=HYPERLINK(...)" exactly as written). A spreadsheet that opens a CSV would run such a cell
as a formula, so every CSV that SafeShrink writes goes through `csv_text` / `write_csv`, which prefix
such a cell with an apostrophe (OWASP, "CSV Injection"): spreadsheets show the text and run nothing.
There is no CSV or spreadsheet download today (exports are PDF and JSON); any future one (flip set,
predictions) must use this module. Pure Python; no Django.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, TextIO

# A cell beginning with one of these is read as a formula by Excel, LibreOffice or Google Sheets
# (tab and carriage return too: some spreadsheets skip them and read the formula after).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """The cell as a spreadsheet should show it: text that would start a formula gets a leading "'".
    Numbers (int, float, not bool) pass unchanged, so negative figures stay numbers; None -> ""."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def write_csv(out: TextIO, header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> None:
    """Write a header and rows as CSV (every field quoted when needed, "\\r\\n" lines), each cell neutralised."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralise_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([neutralise_cell(cell) for cell in row])


def csv_text(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    write_csv(out, header, rows)
    return out.getvalue()
