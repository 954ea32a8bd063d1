"""Uploads imported on a worker: `suite_import_request` streams the file under UPLOAD_ROOT and
queues a SuiteImport; `suite_import_execute` (the task, idempotent) parses it and stores the version
in one transaction, examples by COPY on PostgreSQL, with progress in rows stored of rows in the file.
"""

import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.errors import DomainError, ValidationFailed
from evaluations.engine.tabular import MAX_LABEL_CHARS
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import Slice, SuiteImport, SuiteImportStatus, SuiteVersion
from evaluations.services.suites import _UNSTORABLE, _parse, suite_version_import
from ledger.services import ledger_append

logger = logging.getLogger(__name__)
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
