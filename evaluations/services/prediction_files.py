"""Per-example predictions as Parquet files in the content-addressed artifact store, and one reader for them.

PostgreSQL keeps what pages query (an evaluation's metrics per group, a comparison's results and its flips);
the per-example outputs of an evaluation live in files (blobs: compression.services.blobs, named by their
sha256 and shared between machines through the shared storage):

- every chunk of an evaluation writes its predictions as one Parquet file (`chunk_file_put`, outside any
  transaction) and records its digest on the run under the row lock (`EvaluationRun.chunk_files`);
- the chunk that completes the run merges the chunk files, in position order, into one file for the evaluation
  (`predictions_merge`), linked from the run (`predictions_digest`, `predictions_rows`, `predictions_bytes`);
- a suite version's example columns that metrics, comparisons and exports need (position, id, external id,
  label, truth, slice, subgroup, source position) are one Parquet file too, built once on first use and
  linked from `SuiteVersion.examples_digest` (`suite_examples`): 1,000,000 examples are never pulled through
  the ORM again.

`evaluation_predictions(run, columns)` reads a run's predictions in position order from its file, or, for runs
from before the files (whose outputs are `Prediction` rows), from those rows: no caller knows which. The
numpy views the engines take are `example_arrays` and `run_outputs`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from compression.engine.errors import EngineError, EngineErrorCode
from compression.services.blobs import Blob, blob_put, blob_read
from evaluations.models import EvaluationRun, Example, Prediction, SuiteVersion

FORMAT = b"safeshrink evaluation predictions v1"
# One row per example. Booleans and the stability pass's columns are null where a run has no value (no
# stability pass); a classifier's output and behaviour are empty; details is JSON text (chat models).
PREDICTIONS_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("example_id", pa.int64()),
        ("unsafe_prob", pa.float64()),
        ("probs", pa.list_(pa.float64())),
        ("predicted_label", pa.string()),
        ("decision_unsafe", pa.bool_()),
        ("recomposed_unsafe_prob", pa.float64()),
        ("stable", pa.bool_()),
        ("output", pa.string()),
        ("behaviour", pa.string()),
        ("details", pa.string()),
    ],
    metadata={b"format": FORMAT},
)
EXAMPLES_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("example_id", pa.int64()),
        ("external_id", pa.string()),
        ("label", pa.string()),
        ("is_unsafe", pa.bool_()),
        ("slice", pa.string()),
        ("subgroup", pa.string()),
        ("source_position", pa.int64()),
    ],
    metadata={b"format": b"safeshrink suite examples v1"},
)
ROW_GROUP_ROWS = 131_072
_ORM_BATCH = 50_000


def _put_table(table: pa.Table) -> Blob:
    return blob_put(lambda sink: pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS))


def _read_table(digest: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A stored Parquet file (its bytes checked against the digest before they are parsed); `columns` in order."""
    table = pq.read_table(pa.BufferReader(blob_read(digest)), columns=list(columns) if columns else None)
    return table.select(list(columns)) if columns else table


# ---- writing -------------------------------------------------------------------------------------------------


def predictions_table(columns: dict[str, Any]) -> pa.Table:
    """A predictions table from columns named as in PREDICTIONS_SCHEMA (lists, numpy or Arrow arrays, None for a
    missing value); the columns a caller leaves out are filled as for a classifier (no stability pass, empty
    output and behaviour, no details)."""
    n = len(columns["position"])
    arrays = []
    for field in PREDICTIONS_SCHEMA:
        values = columns.get(field.name)
        if values is None and field.name in ("output", "behaviour"):
            arrays.append(pa.repeat("", n))
        elif values is None:
            arrays.append(pa.nulls(n, field.type))
        elif isinstance(values, pa.Array | pa.ChunkedArray):
            arrays.append(values.cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=PREDICTIONS_SCHEMA)


def details_text(details: dict | None) -> str | None:
    return None if details is None else json.dumps(details, sort_keys=True, ensure_ascii=False)


def chunk_file_put(table: pa.Table) -> dict:
    """Store one chunk's predictions as a Parquet file in the artifact store (and the shared storage); what
    the run records for the chunk: digest, rows, bytes. Call outside transactions."""
    if table.schema != PREDICTIONS_SCHEMA:
        table = table.cast(PREDICTIONS_SCHEMA)
    blob = _put_table(table)
    return {"digest": blob.digest, "rows": table.num_rows, "bytes": blob.size}


def predictions_merge(run: EvaluationRun) -> tuple[pa.Table, Blob]:
    """One file of the run's predictions in position order, from its chunks' files (a chunk of a run begun
    before the files, recorded as Prediction rows, is read from those rows). Checks that every example of the
    suite version has exactly one prediction, in order; stores the file and returns it with its blob."""
    tables = []
    for chunk in range(run.chunks_total):
        entry = (run.chunk_files or {}).get(str(chunk))
        if entry is not None:
            tables.append(_read_table(entry["digest"]))
        else:
            lo, hi = chunk * run.chunk_size, (chunk + 1) * run.chunk_size
            tables.append(_rows_table(run, position_range=(lo, hi)))
    table = pa.concat_tables(tables) if tables else predictions_table({"position": []})
    return table, _put_checked(run, table)


def _put_checked(run: EvaluationRun, table: pa.Table) -> Blob:
    expected = suite_examples(run.suite_version, columns=["example_id"]).column("example_id")
    if table.num_rows != len(expected) or not table.column("example_id").equals(expected):
        raise EngineError(
            EngineErrorCode.INVALID_INPUT,
            f"evaluation {run.pk} has {table.num_rows} prediction(s) for the suite's {len(expected)} example(s), "
            "or not in position order",
        )
    return _put_table(table.combine_chunks())


def predictions_file_link(run: EvaluationRun, table: pa.Table) -> None:
    """Store a whole run's predictions (every example of its suite, in position order) as its file and link it
    from the run, replacing what it read from before (benchmarks' made-up runs; moving a run's rows to a file).
    Its metrics are not recomputed."""
    blob = _put_checked(run, table.cast(PREDICTIONS_SCHEMA))
    run.predictions_digest, run.predictions_rows, run.predictions_bytes = blob.digest, table.num_rows, blob.size
    EvaluationRun.objects.filter(pk=run.pk).update(
        predictions_digest=blob.digest, predictions_rows=table.num_rows, predictions_bytes=blob.size
    )


# ---- reading -------------------------------------------------------------------------------------------------

_ROW_FIELDS = {  # Prediction fields of each column, for runs whose predictions are rows
    "position": "example__position",
    "example_id": "example_id",
    "unsafe_prob": "unsafe_prob",
    "probs": "probs",
    "predicted_label": "predicted_label",
    "decision_unsafe": "decision_unsafe",
    "recomposed_unsafe_prob": "recomposed_unsafe_prob",
    "stable": "stable",
    "output": "output",
    "behaviour": "behaviour",
    "details": "details",
}


def _rows_table(
    run: EvaluationRun, columns: Sequence[str] | None = None, position_range: tuple[int, int] | None = None
) -> pa.Table:
    """A run's Prediction rows (runs from before the files) as a predictions table in position order."""
    names = list(columns or PREDICTIONS_SCHEMA.names)
    rows = Prediction.objects.filter(run=run)
    if position_range is not None:
        rows = rows.filter(example__position__gte=position_range[0], example__position__lt=position_range[1])
    values = list(rows.order_by("example__position").values_list(*(_ROW_FIELDS[n] for n in names)))
    out = {}
    for i, name in enumerate(names):
        column = [r[i] for r in values]
        out[name] = [details_text(d) for d in column] if name == "details" else column
    schema = pa.schema([PREDICTIONS_SCHEMA.field(n) for n in names], metadata=PREDICTIONS_SCHEMA.metadata)
    return pa.Table.from_pydict(out, schema=schema)


def evaluation_predictions(run: EvaluationRun, columns: Sequence[str] | None = None) -> pa.Table:
    """The run's per-example predictions in position order (PREDICTIONS_SCHEMA, or the named columns): from its
    Parquet file, checked against the digest the run records; for runs from before the files, from their
    Prediction rows."""
    if run.predictions_digest:
        return _read_table(run.predictions_digest, columns)
    return _rows_table(run, columns)


def suite_examples(version: SuiteVersion, columns: Sequence[str] | None = None) -> pa.Table:
    """The suite version's example columns (EXAMPLES_SCHEMA) in position order, from its Parquet file: built
    from the rows the first time it is needed (the examples never change), stored in the artifact store and
    linked from the version. Two first readers at once build the same file; the first link stays."""
    if not version.examples_digest:
        blob = _put_table(_examples_from_rows(version))
        SuiteVersion.objects.filter(pk=version.pk, examples_digest="").update(examples_digest=blob.digest)
        version.examples_digest = SuiteVersion.objects.values_list("examples_digest", flat=True).get(pk=version.pk)
    return _read_table(version.examples_digest, columns)


def _examples_from_rows(version: SuiteVersion) -> pa.Table:
    fields = ("position", "pk", "external_id", "label", "is_unsafe", "slice", "subgroup", "source__position")
    rows = (
        Example.objects.filter(suite_version=version)
        .order_by("position")
        .values_list(*fields)
        .iterator(chunk_size=_ORM_BATCH)
    )
    batches = [_examples_batch(batch) for batch in _batched(rows, _ORM_BATCH)]
    return pa.Table.from_batches(batches, schema=EXAMPLES_SCHEMA)


def _examples_batch(rows: list[tuple]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(EXAMPLES_SCHEMA)
    return pa.RecordBatch.from_arrays(
        [pa.array(list(c), type=f.type) for c, f in zip(columns, EXAMPLES_SCHEMA, strict=True)],
        schema=EXAMPLES_SCHEMA,
    )


def _batched(rows: Iterable[tuple], size: int) -> Iterable[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---- numpy views for the engines -----------------------------------------------------------------------------


def strings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A string column as a numpy unicode array (through its dictionary: no Python string per row)."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    words = np.array(encoded.dictionary.to_pylist() or [""], dtype=str)
    return words[encoded.indices.to_numpy(zero_copy_only=False)]


def class_indexes(column: pa.ChunkedArray | pa.Array, labels: Sequence[str], missing: int) -> np.ndarray:
    """Each label's index in `labels` (`missing` for a label that is none of them)."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    index = {label: i for i, label in enumerate(labels)}
    mapping = np.array([index.get(w, missing) for w in encoded.dictionary.to_pylist()] or [missing], dtype=np.int64)
    return mapping[encoded.indices.to_numpy(zero_copy_only=False)]


def _numbers(column: pa.ChunkedArray, dtype) -> np.ndarray:
    return column.to_numpy().astype(dtype, copy=False)


def _optional(column: pa.ChunkedArray, dtype) -> np.ndarray | None:
    """None when any value is missing (runs without the stability pass), else the values."""
    if column.null_count:
        return None
    return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def example_arrays(suite_version: SuiteVersion, labels: list[str]) -> dict[str, np.ndarray]:
    """Per-example arrays in position order: id, truth, slice, subgroup, model class of the label (-1: no model
    class), the position of the source example (-1: none)."""
    t = suite_examples(suite_version, ["example_id", "is_unsafe", "slice", "subgroup", "label", "source_position"])
    return {
        "example_id": _numbers(t.column("example_id"), np.int64),
        "y": _numbers(t.column("is_unsafe"), bool) if t.num_rows else np.zeros(0, dtype=bool),
        "slice": strings(t.column("slice")),
        "subgroup": strings(t.column("subgroup")),
        "true_class": class_indexes(t.column("label"), labels, -1),
        "source_index": pc.fill_null(t.column("source_position"), -1).to_numpy().astype(np.int64, copy=False),
    }


OUTPUT_COLUMNS = ("example_id", "unsafe_prob", "decision_unsafe", "predicted_label", "stable", "recomposed_unsafe_prob")


def aligned(run: EvaluationRun, table: pa.Table, example_ids: np.ndarray) -> pa.Table:
    """The rows of a run's predictions `table` for `example_ids`, in that order (the table itself when it is in
    that order already, as a run's file always is for its suite). Raises EngineError when one has none."""
    ids = _numbers(table.column("example_id"), np.int64)
    if np.array_equal(ids, example_ids):
        return table
    sorter = np.argsort(ids, kind="stable")
    found = sorter[np.minimum(np.searchsorted(ids, example_ids, sorter=sorter), len(ids) - 1)] if len(ids) else None
    missing = len(example_ids) if found is None else int((ids[found] != example_ids).sum())
    if missing or found is None:
        raise EngineError("invalid_input", f"{missing} example(s) have no prediction in evaluation {run.pk}")
    return table.take(pa.array(found))


def run_outputs(run: EvaluationRun, example_ids: np.ndarray, table: pa.Table | None = None) -> dict[str, Any]:
    """The run's unsafe probability, decision and predicted class per example, in the given order (`table`: the
    run's predictions when the caller holds them already)."""
    t = aligned(run, table if table is not None else evaluation_predictions(run, OUTPUT_COLUMNS), example_ids)
    return {
        "unsafe_prob": _numbers(t.column("unsafe_prob"), np.float64),
        "decision": t.column("decision_unsafe").to_numpy().astype(bool, copy=False),
        "predicted_class": class_indexes(t.column("predicted_label"), run.artifact.labels, 0),
        # None when any prediction lacks the stability pass (runs from before it, or with it switched off)
        "stable": _optional(t.column("stable"), bool),
        "recomposed_unsafe_prob": _optional(t.column("recomposed_unsafe_prob"), np.float64),
    }
