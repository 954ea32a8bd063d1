"""Importing suite versions: every row validated, all or nothing, identified by content digest.

Uploads are imported on a worker: `suite_import_request` streams the file under UPLOAD_ROOT and
queues a SuiteImport; `suite_import_execute` (the task, idempotent) parses it and stores the version
in one transaction, examples by COPY on PostgreSQL, with progress in rows stored of rows in the file.
"""

import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.errors import DomainError, ValidationFailed
from evaluations.engine.tabular import MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_SUBGROUP_CHARS, MAX_TEXT_CHARS, ParsedRow
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import Example, Slice, Suite, SuiteImport, SuiteImportStatus, SuiteVersion
from ledger.canonical import digest
from ledger.services import ledger_append

logger = logging.getLogger(__name__)
MAX_ERRORS_LISTED = 50
PROGRESS_EVERY = 20_000  # rows between progress updates of a SuiteImport
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class ExampleRow:
    """One example as read from a file; `line` is its line number in that file, for error messages."""

    external_id: str
    text: str
    label: str
    slice: str
    line: int
    subgroup: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    source_id: str = ""


def _validate(rows: Sequence[ExampleRow], labels: set[str] | None) -> list[str]:
    errors: list[str] = []
    seen: dict[str, int] = {}
    slices = set(Slice.values)
    limits = (
        ("id", MAX_ID_CHARS),
        ("text", MAX_TEXT_CHARS),
        ("label", MAX_LABEL_CHARS),
        ("subgroup", MAX_SUBGROUP_CHARS),
        ("source_id", MAX_ID_CHARS),
    )
    for row in rows:
        where = f"line {row.line}"
        refused = False
        for name, limit in () if isinstance(row, ParsedRow) else limits:  # the parser checked its rows already
            value = getattr(row, "external_id" if name == "id" else name)
            if len(value) > limit:
                errors.append(f"{where}: {name} has {len(value):,} characters, over the limit of {limit:,}")
                refused = True
            elif _UNSTORABLE.search(value):
                errors.append(
                    f"{where}: {name} contains a NUL character or an unpaired surrogate, which cannot be stored"
                )
                refused = True
        if (
            row.tags
            and not isinstance(row, ParsedRow)
            and (any(_UNSTORABLE.search(tag) for tag in row.tags) or sum(map(len, row.tags)) > MAX_TEXT_CHARS)
        ):
            errors.append(
                f"{where}: tags are over {MAX_TEXT_CHARS:,} characters or hold a character that cannot be stored"
            )
            refused = True
        if refused:
            continue
        if not row.external_id:
            errors.append(f"{where}: empty id")
        elif row.external_id in seen:
            errors.append(f"{where}: duplicate id {row.external_id!r} (first on line {seen[row.external_id]})")
        else:
            seen[row.external_id] = row.line
        if not row.text.strip():
            errors.append(f"{where}: empty text")
        if not row.label:
            errors.append(f"{where}: empty label")
        elif labels is not None and row.label not in labels:
            errors.append(f"{where}: unknown label {row.label!r} (expected one of {sorted(labels)})")
        if row.slice not in slices:
            errors.append(f"{where}: unknown slice {row.slice!r} (expected one of {sorted(slices)})")
    return errors


def _link_sources(version: SuiteVersion, rows: Sequence[ExampleRow]) -> None:
    """Point each perturbed example at the example it was derived from (same version)."""
    linked = [r for r in rows if r.source_id]
    if not linked:
        return
    ids = dict(Example.objects.filter(suite_version=version).values_list("external_id", "pk"))
    missing = sorted({r.source_id for r in linked} - set(ids))
    if missing:
        raise ValidationFailed(
            f"{len(missing)} source id(s) name no example in the suite.",
            code=EvaluationsErrorCode.INVALID_ROWS,
            details={"rows": [f"unknown source id {m!r}" for m in missing[:MAX_ERRORS_LISTED]]},
        )
    examples = list(Example.objects.filter(suite_version=version, external_id__in=[r.external_id for r in linked]))
    source_of = {r.external_id: ids[r.source_id] for r in linked}
    for example in examples:
        example.source_id = source_of[example.external_id]
    Example.objects.bulk_update(examples, ["source"], batch_size=2000)


def _examples_insert(
    version: SuiteVersion, rows: Sequence[ExampleRow], unsafe: set[str], progress: Callable[[int, int], None] | None
) -> None:
    """Store the examples of a new version (inside the caller's transaction). PostgreSQL: one COPY,
    with primary keys drawn from the sequence first when examples link to their sources; elsewhere
    bulk_create. `progress(rows_done, rows_total)` is called every PROGRESS_EVERY rows."""
    total = len(rows)
    if connection.vendor != "postgresql":
        for start in range(0, total, PROGRESS_EVERY):
            Example.objects.bulk_create(
                [
                    Example(
                        suite_version=version,
                        position=i,
                        external_id=r.external_id,
                        text=r.text,
                        label=r.label,
                        is_unsafe=r.label in unsafe,
                        slice=r.slice,
                        tags=list(r.tags),
                        subgroup=r.subgroup,
                    )
                    for i, r in enumerate(rows[start : start + PROGRESS_EVERY], start=start)
                ],
                batch_size=5000,
            )
            if progress:
                progress(min(start + PROGRESS_EVERY, total), total)
        _link_sources(version, rows)
        return
    table = connection.ops.quote_name(Example._meta.db_table)
    columns = ["suite_version_id", "position", "external_id", "text", "label", "is_unsafe", "slice", "tags", "subgroup"]
    linked = any(r.source_id for r in rows)
    with connection.cursor() as cursor:
        ids: list[int] = []
        if linked:
            missing = sorted({r.source_id for r in rows if r.source_id} - {r.external_id for r in rows})
            if missing:
                raise ValidationFailed(
                    f"{len(missing)} source id(s) name no example in the suite.",
                    code=EvaluationsErrorCode.INVALID_ROWS,
                    details={"rows": [f"unknown source id {m!r}" for m in missing[:MAX_ERRORS_LISTED]]},
                )
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [Example._meta.db_table, total],
            )
            ids = [pk for (pk,) in cursor.fetchall()]
            columns += ["id", "source_id"]
            pk_of = {r.external_id: pk for r, pk in zip(rows, ids, strict=True)}
        sql = f"COPY {table} ({', '.join(connection.ops.quote_name(c) for c in columns)}) FROM STDIN"
        tags_json: dict[tuple[str, ...], str] = {}  # most rows share a few tag lists: encode each once
        version_id = version.pk
        # The psycopg 3 cursor under Django's wrapper; its errors raised as Django's (DataError, ...).
        with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            write = copy.write_row
            for i, r in enumerate(rows):
                key = r.tags if type(r.tags) is tuple else tuple(r.tags)
                tags = tags_json.get(key)
                if tags is None:
                    tags = tags_json[key] = json.dumps(list(key))
                values: tuple[object, ...] = (
                    version_id,
                    i,
                    r.external_id,
                    r.text,
                    r.label,
                    r.label in unsafe,
                    r.slice,
                    tags,
                    r.subgroup,
                )
                if linked:
                    values += (ids[i], pk_of[r.source_id] if r.source_id else None)
                write(values)
                if progress and (i + 1) % PROGRESS_EVERY == 0:
                    progress(i + 1, total)
    if progress:
        progress(total, total)


def suite_content_digest(rows: Sequence[ExampleRow], unsafe_labels: list[str]) -> str:
    """The digest of the canonical JSON of every example (tags, a tuple, is written as a JSON list)."""
    return digest(
        {
            "unsafe_labels": sorted(unsafe_labels),
            "examples": [
                {
                    "id": r.external_id,
                    "text": r.text,
                    "label": r.label,
                    "slice": r.slice,
                    "subgroup": r.subgroup,
                    "tags": r.tags,
                    "source": r.source_id,
                }
                if r.source_id
                else {
                    "id": r.external_id,
                    "text": r.text,
                    "label": r.label,
                    "slice": r.slice,
                    "subgroup": r.subgroup,
                    "tags": r.tags,
                }
                for r in rows
            ],
        }
    )


def suite_version_import(
    *,
    actor,
    suite_name: str,
    rows: Sequence[ExampleRow],
    unsafe_labels: list[str],
    safe_labels: list[str],
    source: str = "",
    description: str = "",
    progress: Callable[[int, int], None] | None = None,
    on_stored: Callable[[SuiteVersion], None] | None = None,
) -> SuiteVersion:
    """Create the next version of a suite from validated rows. Identical content returns the
    existing version; any bad row refuses the whole import and names the lines. `rows` may be
    ExampleRow or the parser's ParsedRow (same fields). `on_stored(version)` runs inside the
    transaction that stores the version (the async import marks its SuiteImport there)."""
    if not rows:
        raise ValidationFailed(
            "The suite has no examples.", code=EvaluationsErrorCode.EMPTY_SUITE, details={"rows": ["No rows."]}
        )
    if not unsafe_labels:
        raise ValidationFailed("Name at least one unsafe label.", details={"unsafe_labels": ["May not be empty."]})
    # The parser checked its rows (ids, texts, limits); its labels and slices are checked again here, cheaply,
    # in case it was given other labels. Other rows (shared sets, perturbed variants) are checked in full.
    labels = set(unsafe_labels) | set(safe_labels)
    prechecked = (
        all(isinstance(r, ParsedRow) for r in rows)
        and {r.label for r in rows} <= labels
        and {r.slice for r in rows} <= set(Slice.values)
    )
    errors = [] if prechecked else _validate(rows, labels)
    if errors:
        shown = errors[:MAX_ERRORS_LISTED]
        more = len(errors) - len(shown)
        raise ValidationFailed(
            f"{len(errors)} invalid row(s); nothing was imported.",
            code=EvaluationsErrorCode.INVALID_ROWS,
            details={"rows": shown + ([f"... and {more} more"] if more else [])},
        )
    content_digest = suite_content_digest(rows, unsafe_labels)
    unsafe = set(unsafe_labels)
    with transaction.atomic():
        suite, _ = Suite.objects.get_or_create(
            name=suite_name, defaults={"description": description, "created_by": actor}
        )
        suite = Suite.objects.select_for_update().get(pk=suite.pk)
        existing = suite.versions.filter(digest=content_digest).first()
        if existing:
            if on_stored:
                on_stored(existing)
            return existing
        number = (suite.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        version = SuiteVersion.objects.create(
            suite=suite,
            number=number,
            digest=content_digest,
            unsafe_labels=sorted(unsafe_labels),
            example_count=len(rows),
            source=source,
            created_by=actor,
        )
        _examples_insert(version, rows, unsafe, progress)
        ledger_append(
            actor=actor,
            action="suite.imported",
            object_type="suite_version",
            object_id=version.pk,
            payload={
                "suite": suite_name,
                "number": number,
                "digest": content_digest,
                "examples": len(rows),
                "source": source,
            },
        )
        if on_stored:
            on_stored(version)
    return version


def _parse(
    data: bytes, *, fmt: str, mapping: dict | None, unsafe_labels: list[str], safe_labels: list[str], default_slice: str
):
    from evaluations.engine.tabular import SuiteFileError, parse_suite_file

    try:
        return parse_suite_file(
            data,
            fmt=fmt,
            mapping=mapping,
            labels=set(unsafe_labels) | set(safe_labels),
            default_slice=default_slice,
            max_bytes=settings.SAFESHRINK["MAX_UPLOAD_BYTES"],
        )
    except SuiteFileError as exc:
        raise ValidationFailed(
            f"{len(exc.errors)} problem(s) in the file; nothing was imported.",
            code=EvaluationsErrorCode.INVALID_ROWS,
            details={"file": exc.errors},
        ) from exc


def suite_import_file(
    *,
    actor,
    suite_name: str,
    data: bytes,
    fmt: str,
    mapping: dict | None,
    unsafe_labels: list[str],
    safe_labels: list[str],
    default_slice: str = "routine",
    source: str = "",
) -> SuiteVersion:
    """Parse a CSV or JSONL file with a column mapping and import it as the next version, in this
    process (`import_suite`; the API queues a SuiteImport instead). Every problem is reported with its
    line number, and nothing is imported unless every row is valid."""
    parsed = _parse(
        data,
        fmt=fmt,
        mapping=mapping,
        unsafe_labels=unsafe_labels,
        safe_labels=safe_labels,
        default_slice=default_slice,
    )
    return suite_version_import(
        actor=actor,
        suite_name=suite_name,
        rows=parsed.rows,
        unsafe_labels=unsafe_labels,
        safe_labels=safe_labels,
        source=source or f"uploaded {fmt} file ({len(data):,} bytes)",
    )


# Uploads imported on a worker ------------------------------------------------------------------------

_LOCK_CLASS = 0x5117E  # first key of the PostgreSQL advisory lock held while an import runs


def _upload_root() -> Path:
    return Path(settings.SAFESHRINK["UPLOAD_ROOT"])


def suite_import_request(
    *,
    actor,
    chunks: Iterable[bytes],
    file_name: str,
    suite_name: str,
    fmt: str,
    mapping: dict | None,
    unsafe_labels: list[str],
    safe_labels: list[str],
    default_slice: str = "routine",
) -> SuiteImport:
    """Store an uploaded suite file (streamed chunk by chunk, never whole in memory) and queue its
    import on a worker. Refuses at once what needs no parsing: labels, format, mapping, size."""
    from evaluations.engine.tabular import FORMATS, ColumnMapping, SuiteFileError

    if not unsafe_labels:
        raise ValidationFailed("Name at least one unsafe label.", details={"unsafe_labels": ["May not be empty."]})
    if fmt not in FORMATS:
        raise ValidationFailed(f"Unknown format {fmt!r}.", details={"format": [f"One of {list(FORMATS)}."]})
    if default_slice not in Slice.values:
        raise ValidationFailed(
            f"Unknown slice {default_slice!r}.", details={"default_slice": [f"One of {Slice.values}."]}
        )
    if mapping is not None and not (
        isinstance(mapping, dict)
        and all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items())
    ):
        raise ValidationFailed(
            "The column mapping is invalid.",
            details={"mapping": ['A JSON object {field: column name}, e.g. {"text": "comment"}.']},
        )
    try:
        ColumnMapping.from_dict(mapping or {})
    except SuiteFileError as exc:
        raise ValidationFailed("The column mapping is invalid.", details={"mapping": exc.errors}) from exc
    texts = {
        "suite": [suite_name],
        "mapping": [*(mapping or {}), *filter(None, (mapping or {}).values())],
        "unsafe_labels": unsafe_labels,
        "safe_labels": safe_labels,
    }
    for field_name, values in texts.items():  # stored as given: nothing PostgreSQL cannot store, labels that fit
        if any(_UNSTORABLE.search(value) for value in values):
            raise ValidationFailed(
                f"The {field_name} holds a NUL character or an unpaired surrogate.",
                details={field_name: ["May not contain U+0000 or an unpaired surrogate."]},
            )
        if field_name.endswith("labels") and any(len(label) > MAX_LABEL_CHARS for label in values):
            raise ValidationFailed(
                "A label is too long.", details={field_name: [f"At most {MAX_LABEL_CHARS} characters per label."]}
            )
    limit = settings.SAFESHRINK["MAX_UPLOAD_BYTES"]
    root = _upload_root()
    root.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.{fmt}"
    partial = root / f"{name}.part"
    sha, size, lines = hashlib.sha256(), 0, 0
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                if (nul := chunk.find(b"\x00")) >= 0:  # refused at once: no column of any row may hold one
                    line = lines + chunk.count(b"\n", 0, nul) + 1
                    raise ValidationFailed(
                        "The file holds a NUL byte; nothing was imported.",
                        code=EvaluationsErrorCode.INVALID_ROWS,
                        details={
                            "file": [
                                f"line {line}: a NUL byte (0x00) at byte offset "
                                f"{size + nul:,}; suite files may not contain one"
                            ]
                        },
                    )
                lines += chunk.count(b"\n")
                size += len(chunk)
                if size > limit:
                    raise ValidationFailed(
                        f"The file is over the limit of {limit:,} bytes.",
                        details={"file": [f"At most {limit:,} bytes."]},
                    )
                sha.update(chunk)
                out.write(chunk)
        if size == 0:
            raise ValidationFailed(
                "The file is empty.", code=EvaluationsErrorCode.EMPTY_SUITE, details={"file": ["The file is empty."]}
            )
        partial.rename(root / name)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    clean_name = _UNSTORABLE.sub("", file_name)[:255] or "upload"
    try:
        if size <= settings.SAFESHRINK["IMPORT_CHECK_IN_REQUEST_BYTES"]:
            # A small file is also parsed here, in well under a second, so that a bad row is a 400 naming its
            # line at once; the worker parses it again. Larger files are checked on the worker only (the import's
            # status URL then reports every bad line), so no request runs long.
            _parse(
                (root / name).read_bytes(),
                fmt=fmt,
                mapping=mapping,
                unsafe_labels=unsafe_labels,
                safe_labels=safe_labels,
                default_slice=default_slice,
            )
        with transaction.atomic():
            job = SuiteImport.objects.create(
                suite_name=suite_name,
                format=fmt,
                mapping=mapping or None,
                unsafe_labels=list(unsafe_labels),
                safe_labels=list(safe_labels),
                default_slice=default_slice,
                file_name=clean_name,
                file_path=name,
                file_size=size,
                file_sha256=sha.hexdigest(),
                requested_by=actor,
            )
            ledger_append(
                actor=actor,
                action="suite.import_requested",
                object_type="suite_import",
                object_id=job.pk,
                payload={
                    "suite": suite_name,
                    "file": clean_name,
                    "bytes": size,
                    "sha256": job.file_sha256,
                    "format": fmt,
                },
            )
            transaction.on_commit(lambda: _enqueue_import(job.pk))
    except BaseException:
        (root / name).unlink(missing_ok=True)
        raise
    return job


def _enqueue_import(import_id: int) -> None:
    from evaluations.tasks import import_suite_file

    import_suite_file.delay(import_id)


@contextmanager
def _import_lock(import_id: int):
    """Yield True while this process holds the import's advisory lock (PostgreSQL; released with the
    connection if the worker dies), False when another process holds it. Other databases: True."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_CLASS, import_id])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_CLASS, import_id])


class _ProgressWriter:
    """Writes rows_done / heartbeat of a running import from a connection of its own (autocommit), so
    that progress is visible while the import's transaction is still open. Not on other databases."""

    def __init__(self, import_id: int):
        self.import_id = import_id
        self.conn = None
        # Inside a caller's transaction the row may be locked by this very connection: no second one then.
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            import psycopg

            self.conn = psycopg.connect(**connection.get_connection_params(), autocommit=True)
            self.conn.execute("SET lock_timeout = '2s'")

    def __call__(self, done: int, total: int) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute(
                f"UPDATE {SuiteImport._meta.db_table} SET rows_done = %s, rows_total = %s, stage = 'storing', "
                "heartbeat_at = now() WHERE id = %s AND status = 'running'",
                (done, total, self.import_id),
            )
        except Exception:  # progress is informative only: never let it fail or stall the import
            logger.warning("suite import %s: progress not recorded", self.import_id, exc_info=True)
            self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _import_fail(job: SuiteImport, error: dict) -> None:
    with transaction.atomic():
        locked = SuiteImport.objects.select_for_update().get(pk=job.pk)
        if locked.is_terminal:
            return
        locked.status, locked.stage, locked.error = SuiteImportStatus.FAILED, "done", error
        locked.rows_done = 0  # the import's transaction rolled back: nothing is stored
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "stage", "error", "rows_done", "finished_at"])
        ledger_append(
            actor=job.requested_by,
            action="suite.import_failed",
            object_type="suite_import",
            object_id=job.pk,
            payload={
                "suite": job.suite_name,
                "sha256": job.file_sha256,
                "code": error["code"],
                "message": error["message"],
            },
        )


def suite_import_execute(*, import_id: int) -> None:
    """Run a queued import (the task). Idempotent: a finished import is left alone, and one that
    another live worker is running (it holds the advisory lock) is skipped; a redelivery after a
    worker died starts it again, which is safe since the dead worker's transaction rolled back."""
    with _import_lock(import_id) as got:
        if not got:
            return
        with transaction.atomic():
            job = SuiteImport.objects.select_for_update().select_related("requested_by").filter(pk=import_id).first()
            if job is None or job.is_terminal:
                return
            job.status, job.stage, job.rows_done, job.rows_total = SuiteImportStatus.RUNNING, "reading", 0, None
            job.attempts += 1
            job.started_at = job.heartbeat_at = timezone.now()
            job.save(
                update_fields=["status", "stage", "rows_done", "rows_total", "attempts", "started_at", "heartbeat_at"]
            )
        path = _upload_root() / job.file_path
        try:
            _import_run(job, path)
        except DomainError as exc:
            _import_fail(job, {"code": exc.code, "message": exc.message, "details": exc.details})
        except Exception:
            logger.exception("suite import %s failed", import_id)
            _import_fail(
                job,
                {
                    "code": "import_error",
                    "message": "The import failed on the worker; nothing was "
                    "imported. Upload the file again, or ask an administrator to read the worker log.",
                    "details": {},
                },
            )
            path.unlink(missing_ok=True)
            raise
        path.unlink(missing_ok=True)


def _import_run(job: SuiteImport, path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationFailed(
            "The uploaded file is no longer stored; upload it again.",
            code=EvaluationsErrorCode.UPLOAD_MISSING,
            details={"file": [f"{job.file_name}: not found on this worker"]},
        ) from exc
    if hashlib.sha256(data).hexdigest() != job.file_sha256:
        raise ValidationFailed(
            "The stored upload changed since it was received; upload it again.",
            code=EvaluationsErrorCode.UPLOAD_CHANGED,
            details={"file": [f"{job.file_name}: digest differs"]},
        )
    parsed = _parse(
        data,
        fmt=job.format,
        mapping=job.mapping,
        unsafe_labels=job.unsafe_labels,
        safe_labels=job.safe_labels,
        default_slice=job.default_slice,
    )
    del data
    total = len(parsed.rows)
    SuiteImport.objects.filter(pk=job.pk).update(rows_total=total, stage="storing", heartbeat_at=timezone.now())

    def mark_succeeded(version: SuiteVersion) -> None:
        SuiteImport.objects.filter(pk=job.pk).update(
            status=SuiteImportStatus.SUCCEEDED,
            stage="done",
            rows_done=total,
            rows_total=total,
            suite_version=version,
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )

    writer = _ProgressWriter(job.pk)

    def on_stored(version: SuiteVersion) -> None:
        writer.close()
        mark_succeeded(version)

    try:
        suite_version_import(
            actor=job.requested_by,
            suite_name=job.suite_name,
            rows=parsed.rows,
            unsafe_labels=job.unsafe_labels,
            safe_labels=job.safe_labels,
            source=f"upload {job.file_name} ({job.file_size:,} bytes, sha256 {job.file_sha256})",
            progress=writer,
            on_stored=on_stored,
        )
    finally:
        writer.close()


def suite_imports_requeue_stale() -> list[int]:
    """Beat: send again the imports whose message was lost (queued, or running without a heartbeat,
    for longer than the run lease). A live run holds its lock, so a resend of it does nothing."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.SAFESHRINK["RUN_LEASE_SECONDS"])
    stale = list(
        SuiteImport.objects.filter(
            status__in=[SuiteImportStatus.QUEUED, SuiteImportStatus.RUNNING],
            created_at__lt=cutoff,
        )
        .exclude(heartbeat_at__gte=cutoff)
        .values_list("pk", flat=True)
    )
    for pk in stale:
        _enqueue_import(pk)
    return stale


def suite_derive_perturbed(
    *,
    actor,
    suite_version_id: int,
    kinds: list[str],
    seed: int = 0,
    per_example: int = 1,
    from_slices: tuple[str, ...] = ("routine",),
    limit: int | None = None,
) -> SuiteVersion:
    """The next version of the same suite: every example, plus seeded adversarial variants
    (character swaps, leetspeak, spaces, homoglyphs, casing) of the chosen slices, each linked
    to its source. The recipe (kinds, seed, version) is recorded in the version's source."""
    from compression.engine.errors import EngineError
    from evaluations.engine.perturb import perturb

    base = SuiteVersion.objects.select_related("suite").filter(pk=suite_version_id).first()
    if base is None:
        raise ValidationFailed("Unknown suite version.", details={"suite_version": [f"No version {suite_version_id}."]})
    examples = list(base.examples.order_by("position").select_related("source"))
    rows = [
        ExampleRow(
            external_id=e.external_id,
            text=e.text,
            label=e.label,
            slice=e.slice,
            line=e.position + 1,
            subgroup=e.subgroup,
            tags=tuple(e.tags),
            source_id=e.source.external_id if e.source else "",
        )
        for e in examples
    ]
    sources = [r for r in rows if r.slice in from_slices and not r.source_id][:limit]
    if not sources:
        raise ValidationFailed(
            "No examples to perturb in those slices.",
            code=EvaluationsErrorCode.EMPTY_SUITE,
            details={"from_slices": [f"No examples in {list(from_slices)}."]},
        )
    try:
        variants = perturb(sources, kinds, seed, per_example)
    except EngineError as exc:
        raise ValidationFailed(exc.message, code=exc.code, details={"kinds": [exc.message]}) from exc
    by_id = {r.external_id: r for r in sources}
    derived = [
        ExampleRow(
            external_id=v.variant_id,
            text=v.text,
            label=by_id[v.source_id].label,
            slice="adversarial",
            line=by_id[v.source_id].line,
            subgroup=by_id[v.source_id].subgroup,
            tags=(*by_id[v.source_id].tags, "perturbed", v.kind),
            source_id=v.source_id,
        )
        for v in variants
    ]
    recipe = variants.recipe
    return suite_version_import(
        actor=actor,
        suite_name=base.suite.name,
        rows=rows + derived,
        unsafe_labels=base.unsafe_labels,
        safe_labels=sorted({e.label for e in examples} - set(base.unsafe_labels)),
        source=f"{base.source}; + {len(derived)} perturbed variants of {len(sources)} {'/'.join(from_slices)} "
        f"examples (kinds {','.join(recipe.kinds)}, seed {recipe.seed}, per example {recipe.per_example}, "
        f"recipe v{recipe.version})",
    )
