"""Resumable, chunked uploads of model folders over HTTP, stored as normal content-addressed artifacts.

An engineer declares the folder's files up front (relative path, size and, usually, sha256: the manifest
format of compression.engine.manifest), sends each file's bytes in chunks, each with its offset and sha256,
asks which bytes arrived to resume after an interruption, and finishes. Finishing checks every whole file
against its declared sha256 and stores the folder as artifact_store does (its detection, install and
shared-storage publishing from compression.services.artifacts, reusing the hashes just checked instead
of hashing the folder twice more), then records it with artifact_ingest: same digest, same store, same
ledger event as a server-side import.

Bytes are streamed to UPLOAD_ROOT/models/<key>/<path> and never held whole in memory. A file's received
bytes are always a prefix: a chunk must start where they end (as in the tus protocol), one writer per
file at a time (an flock on the file, so gunicorn's processes on one machine agree), and a chunk whose
bytes do not match its sha256, arrive short or lose a race is cut off again before anyone sees it.
No transaction is open while bytes move. What a refused request would have stored is removed; abandoned
uploads are expired by beat (uploads_expire).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, DomainError, NotFound, ValidationFailed
from compression.engine.formats import CONFIG_FILE
from compression.engine.manifest import entries_digest
from compression.error_codes import CompressionErrorCode as Code
from compression.models import ArtifactUpload, UploadFile, UploadStatus
from compression.selectors import artifacts_visible_to
from compression.services.artifacts import (
    StoredArtifact,
    _detect,
    _install,
    _publish,
    artifact_ingest,
    artifact_root,
)
from compression.services.signatures import SIGNATURE_FILE, carried_signature_check
from compression.services.upload_digests import ChunkDigests, running_sha256, whole_file_digests

PIECE = 1024 * 1024  # bytes read from the request body at a time
MAX_PATH_CHARS = 1024
MAX_PART_BYTES = 255  # one path component, as most file systems allow
# Checked against the declared paths: what makes a name unsafe to create under the upload's folder.
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


class ChunkTooLarge(DomainError):
    """A chunk body over MODEL_UPLOAD_CHUNK_BYTES (413, before a byte of it is read)."""

    status = 413
    code = Code.UPLOAD_TOO_LARGE


def _setting(name: str) -> Any:
    return settings.SAFESHRINK[name]


def chunk_limit() -> int:
    """The largest chunk one request may carry."""
    return _setting("MODEL_UPLOAD_CHUNK_BYTES")


def uploads_root() -> Path:
    return Path(_setting("UPLOAD_ROOT")) / "models"


def upload_dir(upload: ArtifactUpload) -> Path:
    """The folder the upload's files are received in (the model folder, as it will be stored)."""
    return uploads_root() / upload.key.hex


def upload_expires_at(upload: ArtifactUpload) -> dt.datetime | None:
    if upload.status not in (UploadStatus.OPEN, UploadStatus.FINISHING):
        return None
    return upload.active_at + dt.timedelta(seconds=_setting("MODEL_UPLOAD_EXPIRY_SECONDS"))


def uploads_visible_to(user):
    """An upload is private scratch space: only its owner sees it (anyone else gets 404)."""
    return ArtifactUpload.objects.filter(owner=user).select_related("artifact", "parent")


def _owned(actor, upload_id: int) -> ArtifactUpload:
    upload = uploads_visible_to(actor).filter(pk=upload_id).first()
    if upload is None:
        raise NotFound(f"No upload {upload_id}.", details={"id": [f"No upload {upload_id} of yours."]})
    return upload


def _closed(upload: ArtifactUpload) -> Conflict:
    return Conflict(
        f"Upload {upload.pk} is {upload.status}; it takes no more chunks and cannot be finished again.",
        code=Code.UPLOAD_CLOSED,
        details={"status": [f"The upload is {upload.status}."]},
    )


# --- Declaring the files --------------------------------------------------------------------------------


def _path_problem(path: str) -> str | None:
    """Why `path` may not name a file inside the model folder, or None when it may."""
    if not path:
        return "An empty path."
    if len(path) > MAX_PATH_CHARS:
        return f"Longer than {MAX_PATH_CHARS} characters."
    if any(ch in _CONTROL for ch in path):
        return "Holds a NUL or another control character."
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "Holds an unpaired surrogate (not UTF-8)."
    if "\\" in path:
        return "Holds a backslash; separate folders with '/'."
    if path.startswith("/") or PurePosixPath(path).is_absolute() or (len(path) > 1 and path[1] == ":"):
        return "An absolute path; paths are relative to the model folder."
    parts = path.split("/")
    if ".." in parts:
        return "Holds '..'; a path may not leave the model folder."
    if any(part in ("", ".") for part in parts):
        return "Holds an empty or '.' component (a leading, trailing or doubled '/')."
    if any(len(part.encode("utf-8")) > MAX_PART_BYTES for part in parts):
        return f"A component is longer than {MAX_PART_BYTES} bytes."
    return None


def _entry_refused(i: int, field: str, problem: str, code: str = Code.UPLOAD_PATH_REFUSED) -> ValidationFailed:
    return ValidationFailed(f"files[{i}].{field}: {problem}", code=code, details={f"files[{i}].{field}": [problem]})


def _declared(files: list[dict]) -> list[dict]:
    """Check the declared files ({path, size, sha256?, type?, target?}); sorted by path as in a manifest.
    Every refusal names the entry (files[i].<field>), and nothing is stored."""
    suffixes = {s.lower() for s in _setting("MODEL_UPLOAD_SUFFIXES")}
    limit, max_files = _setting("MODEL_UPLOAD_MAX_BYTES"), _setting("MODEL_UPLOAD_MAX_FILES")
    if not files:
        raise ValidationFailed("Declare at least one file.", details={"files": ["May not be empty."]})
    if len(files) > max_files:
        raise ValidationFailed(
            f"{len(files):,} files declared; an upload may hold at most {max_files:,}.",
            code=Code.UPLOAD_TOO_LARGE,
            details={"files": [f"At most {max_files:,} files (SAFESHRINK_MODEL_UPLOAD_MAX_FILES)."]},
        )
    seen: dict[str, int] = {}  # NFC, case-folded: names that differ only in case clash on many disks
    for i, entry in enumerate(files):
        path = entry["path"]
        if entry.get("type", "file") != "file" or entry.get("target"):
            kind = "a link" if entry.get("target") else f"of type {entry['type']!r}"
            link = f"{path!r} is {kind}: only regular files are uploaded"
            raise _entry_refused(i, "type", f"{link} (links are refused, never followed: upload the file itself).")
        if problem := _path_problem(path):
            raise _entry_refused(i, "path", f"{path!r} is refused: {problem}")
        if (key := unicodedata.normalize("NFC", path).casefold()) in seen:
            raise _entry_refused(i, "path", f"{path!r} is declared twice (as files[{seen[key]}], up to case).")
        seen[key] = i
        if path != SIGNATURE_FILE and (suffix := PurePosixPath(path).suffix.lower()) not in suffixes:
            allowed = f"{', '.join(sorted(suffixes))} (SAFESHRINK_MODEL_UPLOAD_SUFFIXES)"
            problem = f"{path!r}: files ending {suffix or 'without a suffix'!r} are not accepted; allowed: {allowed}."
            raise _entry_refused(i, "path", problem, Code.UPLOAD_FORMAT_REFUSED)
    for i, entry in enumerate(files):  # "a" and "a/b" cannot both exist
        parts = unicodedata.normalize("NFC", entry["path"]).casefold().split("/")
        for depth in range(1, len(parts)):
            if (j := seen.get("/".join(parts[:depth]))) is not None:
                raise _entry_refused(i, "path", f"{entry['path']!r} is inside files[{j}], which is a file.")
    if CONFIG_FILE not in {entry["path"] for entry in files}:
        raise ValidationFailed(
            "A model folder holds config.json at its top level; none is declared.",
            details={"files": ["Declare config.json (a Hugging Face model folder)."]},
        )
    if (total := sum(entry["size"] for entry in files)) > limit:
        raise ValidationFailed(
            f"The files declared hold {total:,} bytes, over the limit of {limit:,}.",
            code=Code.UPLOAD_TOO_LARGE,
            details={"files": [f"At most {limit:,} bytes in all (SAFESHRINK_MODEL_UPLOAD_MAX_BYTES)."]},
        )
    return sorted(
        ({"path": e["path"], "size": e["size"], "sha256": (e.get("sha256") or "").lower()} for e in files),
        key=lambda e: e["path"],
    )


def upload_create(*, actor, name: str, files: list[dict], parent_id: int | None = None) -> ArtifactUpload:
    """Open an upload of a model folder whose files are declared now. Nothing touches the disk until the
    first chunk. Refused (400, naming the entry) for an unsafe, duplicate or disallowed path, a link, a folder
    without config.json or files over the size limit; 409 when the engineer already holds too many open."""
    declared = _declared(files)
    parent = None
    if parent_id is not None:
        parent = artifacts_visible_to(actor).filter(pk=parent_id).first()
        if parent is None:
            raise ValidationFailed("Unknown parent artifact.", details={"parent": [f"No artifact {parent_id}."]})
    digest = ""
    if all(entry["sha256"] for entry in declared):
        digest = entries_digest([(e["path"], e["sha256"], e["size"]) for e in declared])
    with transaction.atomic():
        open_count = ArtifactUpload.objects.filter(
            owner=actor, status__in=(UploadStatus.OPEN, UploadStatus.FINISHING)
        ).count()
        most = _setting("MODEL_UPLOAD_MAX_OPEN")
        if open_count >= most:
            raise Conflict(
                f"You hold {open_count} open uploads; finish or abort one first.",
                code=Code.TOO_MANY_UPLOADS,
                details={"files": [f"At most {most} open uploads per engineer (SAFESHRINK_MODEL_UPLOAD_MAX_OPEN)."]},
            )
        upload = ArtifactUpload.objects.create(
            key=uuid.uuid4(),
            owner=actor,
            name=name,
            parent=parent,
            total_bytes=sum(e["size"] for e in declared),
            manifest_digest=digest,
            active_at=timezone.now(),
        )
        UploadFile.objects.bulk_create(UploadFile(upload=upload, **entry) for entry in declared)
    return upload


# --- Receiving chunks -----------------------------------------------------------------------------------


def _file_of(upload: ArtifactUpload, path: str) -> UploadFile:
    row = upload.files.filter(path=path).first()
    if row is None:
        raise NotFound(
            f"Upload {upload.pk} declares no file {path!r}.",
            details={"path": ["Not one of the upload's declared files."]},
        )
    return row


def _open_locked(path: Path, *, wait: bool) -> int:
    """A descriptor of the received file (created if missing, never through a symlink), holding its flock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def upload_chunk_receive(
    *, actor, upload_id: int, path: str, offset: int, sha256: str, length: int, body: IO[bytes]
) -> UploadFile:
    """Append `length` bytes read from `body` to the file `path` at `offset`, which must be where its
    received bytes end (409 otherwise, with that offset). Read PIECE bytes at a time; kept only when they
    hash to `sha256`, else cut off again (400). Returns the file with its new `received`."""
    upload = _owned(actor, upload_id)
    row = _file_of(upload, path)
    if upload.status != UploadStatus.OPEN:
        raise _closed(upload)
    most = chunk_limit()
    if length > most:
        raise ChunkTooLarge(
            f"The chunk is {length:,} bytes; at most {most:,} are accepted per request.",
            details={"body": [f"At most {most:,} bytes per chunk (SAFESHRINK_MODEL_UPLOAD_CHUNK_BYTES)."]},
        )
    if length <= 0:
        raise ValidationFailed(
            "A chunk carries at least one byte, and its Content-Length says how many.",
            details={"body": ["Empty, or no Content-Length header."]},
        )
    if offset + length > row.size:
        raise ValidationFailed(
            f"The chunk would end at byte {offset + length:,} of {path!r}, which has {row.size:,}.",
            details={"offset": [f"offset + chunk length may not pass the declared size ({row.size:,})."]},
        )
    if offset != row.received:
        raise _wrong_offset(row, offset)
    target = upload_dir(upload) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _open_locked(target, wait=False)
    except BlockingIOError:
        raise Conflict(
            f"Another chunk of {path!r} is being received; retry when it is done.",
            code=Code.UPLOAD_BUSY,
            details={"path": ["A chunk of this file is in flight."]},
        ) from None
    kept, writing = False, False
    try:
        row.refresh_from_db(fields=["received", "sha256_state"])  # under the lock: what the last writer committed
        if offset != row.received:
            raise _wrong_offset(row, offset)
        writing = True
        os.ftruncate(fd, offset)  # bytes past `received` are a failed chunk's leftovers
        digests, written = ChunkDigests(running_sha256(row, offset)), 0
        os.lseek(fd, offset, os.SEEK_SET)
        while written < length:
            piece = body.read(min(PIECE, length - written))
            if not piece:
                break
            digests.update(piece)
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
            written += len(piece)
        digest = digests.chunk
        if written != length:
            raise ValidationFailed(
                f"The body ended after {written:,} of the {length:,} bytes its Content-Length announced.",
                details={"body": ["Shorter than its Content-Length."]},
            )
        if digest.hexdigest() != sha256:
            raise ValidationFailed(
                f"The chunk at offset {offset:,} of {path!r} does not hash to the sha256 sent with it; "
                "it was not kept.",
                code=Code.CHUNK_DIGEST_MISMATCH,
                details={"sha256": [f"The bytes received hash to {digest.hexdigest()}."]},
            )
        with transaction.atomic():
            kept = bool(
                UploadFile.objects.filter(pk=row.pk, received=offset, upload__status=UploadStatus.OPEN).update(
                    received=offset + length, sha256_state=digests.state()
                )
            )
            if kept:
                ArtifactUpload.objects.filter(pk=upload.pk).update(active_at=timezone.now())
        if not kept:  # finished or aborted while the bytes were arriving
            upload.refresh_from_db(fields=["status"])
            raise _closed(upload)
    finally:
        if writing and not kept:  # back to the bytes committed before this chunk
            os.ftruncate(fd, offset)
        os.close(fd)
    row.received = offset + length
    return row


def _wrong_offset(row: UploadFile, offset: int) -> Conflict:
    where = "beyond" if offset > row.received else "before"
    return Conflict(
        f"The chunk starts at byte {offset:,} of {row.path!r}, {where} the {row.received:,} bytes received; "
        f"send the chunk that starts at {row.received:,}.",
        code=Code.CHUNK_OFFSET,
        details={
            "offset": [f"{row.received:,} bytes of {row.path!r} are received: send the chunk at offset {row.received}."]
        },
    )


# --- Finishing, aborting, expiring ----------------------------------------------------------------------


def _expected_digests(rows: list[UploadFile], files: list[dict] | None) -> dict[str, str]:
    """path -> sha256 of every file: as declared at creation, or from the manifest sent at finish, which must
    list exactly the declared files with their sizes (and the same sha256 where one was declared)."""
    declared = {row.path: row for row in rows}
    if files is None:
        missing = [row.path for row in rows if not row.sha256]
        if missing:
            raise ValidationFailed(
                f"No sha256 was declared for {len(missing)} file(s); finish with the manifest.",
                code=Code.MANIFEST_MISMATCH,
                details={"files": [f"{path!r}: no sha256 declared; send every file's sha256." for path in missing]},
            )
        return {row.path: row.sha256 for row in rows}
    given: dict[str, str] = {}
    for i, entry in enumerate(files):
        row, sha = declared.get(entry["path"]), entry["sha256"].lower()
        problem, field = None, "path"
        if row is None:
            problem = f"{entry['path']!r} was not declared when the upload was created."
        elif entry["path"] in given:
            problem = f"{entry['path']!r} is listed twice."
        elif entry["size"] != row.size:
            problem, field = f"Declared as {row.size:,} bytes when the upload was created.", "size"
        elif row.sha256 and sha != row.sha256:
            problem, field = f"Declared as {row.sha256} when the upload was created.", "sha256"
        if problem:
            raise ValidationFailed(
                f"The manifest does not match the upload's files: files[{i}].{field}: {problem}",
                code=Code.MANIFEST_MISMATCH,
                details={f"files[{i}].{field}": [problem]},
            )
        given[entry["path"]] = sha
    left_out = sorted(set(declared) - set(given))
    if left_out:
        raise ValidationFailed(
            f"The manifest leaves out {len(left_out)} declared file(s).",
            code=Code.MANIFEST_MISMATCH,
            details={"files": [f"{path!r} is missing." for path in left_out]},
        )
    return given


def _incomplete(rows: list[UploadFile]) -> Conflict | None:
    short = [row for row in rows if row.received < row.size]
    if not short:
        return None
    return Conflict(
        f"{len(short)} file(s) are not fully received; send their missing bytes, then finish.",
        code=Code.UPLOAD_INCOMPLETE,
        details={"files": [f"{row.path!r}: {row.received:,} of {row.size:,} bytes received." for row in short]},
    )


def _set_status(upload: ArtifactUpload, status: str, *, code: str = "", reason: str = "") -> None:
    upload.status, upload.failure_code, upload.failure_reason = status, code, reason[:2000]
    upload.active_at = timezone.now()
    if status not in (UploadStatus.OPEN, UploadStatus.FINISHING):
        upload.finished_at = upload.active_at
    upload.save(update_fields=["status", "failure_code", "failure_reason", "active_at", "finished_at", "artifact"])


def _remove(upload: ArtifactUpload) -> None:
    shutil.rmtree(upload_dir(upload), ignore_errors=True)


def _refuse(upload: ArtifactUpload, error: DomainError) -> DomainError:
    """An upload that can never become an artifact: its bytes are removed and the error says why."""
    _remove(upload)
    _set_status(upload, UploadStatus.REFUSED, code=error.code, reason=error.message)
    return error


@contextmanager
def _writers_stopped(upload: ArtifactUpload, rows: list[UploadFile]) -> Iterator[dict[str, int]]:
    """Hold every file's lock (waiting for chunks in flight, which then fail to commit and cut their bytes
    off) and yield their descriptors. Creates the files that no chunk created (empty files)."""
    folder = upload_dir(upload)
    with ExitStack() as stack:
        fds = {}
        for row in rows:
            (folder / row.path).parent.mkdir(parents=True, exist_ok=True)
            fds[row.path] = fd = _open_locked(folder / row.path, wait=True)
            stack.callback(os.close, fd)
        yield fds


def _check_and_store(upload: ArtifactUpload, rows: list[UploadFile], expected: dict[str, str], fds) -> StoredArtifact:
    """artifact_store for a folder whose files' sha256 are known (kept as chunks arrived, else read here: see
    upload_digests) and checked against the manifest: the same detection, install (moved, then re-hashed: what
    lands in the store must be what was hashed) and shared-storage publishing. Refusals name the field."""
    folder = upload_dir(upload)
    hashes = whole_file_digests(folder, rows)
    wrong = [i for i, row in enumerate(rows) if hashes[row.path] != expected[row.path]]
    if wrong:
        for i in wrong:
            os.ftruncate(fds[rows[i].path], 0)
        UploadFile.objects.filter(pk__in=[rows[i].pk for i in wrong]).update(received=0, sha256_state=b"")
        raise ValidationFailed(
            f"{len(wrong)} file(s) do not hash to the manifest's sha256; their bytes were dropped: send them "
            "again, then finish.",
            code=Code.MANIFEST_MISMATCH,
            details={
                f"files[{i}].sha256": [f"The bytes of {rows[i].path!r} hash to {hashes[rows[i].path]}."] for i in wrong
            },
        )
    try:
        detected = _detect(folder, upload.name)
        fmt = detected.format
    except ValidationFailed as exc:
        detail = exc.details.get("path") or [exc.message]
        raise _refuse(upload, ValidationFailed(exc.message, code=exc.code, details={"files": detail})) from exc
    if fmt not in (allowed := _setting("MODEL_UPLOAD_FORMATS")):
        raise _refuse(
            upload,
            ValidationFailed(
                f"Artifacts of format {fmt!r} are not accepted by upload; the upload was removed.",
                code=Code.UPLOAD_FORMAT_REFUSED,
                details={"format": [f"One of {', '.join(allowed)} (SAFESHRINK_MODEL_UPLOAD_FORMATS)."]},
            ),
        )
    entries = sorted((row.path, hashes[row.path], row.size) for row in rows)
    digest, files = entries_digest(entries), [{"path": p, "sha256": h, "size": n} for p, h, n in entries]
    target = artifact_root() / digest
    if not target.exists():
        changed = ValidationFailed(  # on disk since they were received: the install re-hashes them (upload_digests)
            "The files changed on disk after they were received; the upload was removed.",
            code=Code.CORRUPT_ARTIFACT,
            details={"files": ["Changed after they were received."]},
        )
        try:
            _install(digest, "upload", lambda content: shutil.move(str(folder), content), changed)
        except ValidationFailed as exc:
            raise (_refuse(upload, changed) if exc is changed else exc) from None
    _publish(digest, target, files)
    return StoredArtifact.of(detected, digest=digest, files=files, size=sum(n for *_, n in entries), stored=target)


def upload_finish(*, actor, upload_id: int, files: list[dict] | None = None) -> ArtifactUpload:
    """Check every received file against its sha256 and store the folder as an artifact: the same digest,
    store, shared-storage copy (compression.services.artifacts) and ledger event (artifact_ingest) as
    any import.

    409 while bytes are missing; 400 for a manifest that differs from the declared files or from the bytes
    (those files' bytes are dropped so they can be sent again; the upload stays open), and for a format the
    settings do not allow (the upload is refused and its bytes removed)."""
    upload = _owned(actor, upload_id)
    if upload.status != UploadStatus.OPEN:
        raise _closed(upload)
    rows = list(upload.files.all())
    expected = _expected_digests(rows, files)
    if (problem := _incomplete(rows)) is not None:
        raise problem
    switched = ArtifactUpload.objects.filter(pk=upload.pk, status=UploadStatus.OPEN).update(
        status=UploadStatus.FINISHING, active_at=timezone.now()
    )
    if not switched:
        upload.refresh_from_db()
        raise _closed(upload)
    upload.status = UploadStatus.FINISHING
    stored = None
    try:
        with _writers_stopped(upload, rows) as fds:
            rows = list(upload.files.all())  # a chunk may have committed just before the switch
            if (problem := _incomplete(rows)) is not None:
                raise problem
            for row in rows:
                os.ftruncate(fds[row.path], row.size)  # leftovers of a chunk that failed past the end
            stored = _check_and_store(upload, rows, expected, fds)
        signature = carried_signature_check(stored, actor)  # a model.sig at the top: checked, never refused
        with transaction.atomic():
            upload.artifact, _ = artifact_ingest(
                stored=stored, name=upload.name, actor=actor, parent=upload.parent, signature=signature
            )
            _set_status(upload, UploadStatus.COMPLETED)
    except BaseException as exc:
        if upload.status == UploadStatus.FINISHING:  # not refused: back to open if its bytes are still there
            if stored is None and upload_dir(upload).is_dir():
                _set_status(upload, UploadStatus.OPEN)
            else:
                _set_status(upload, UploadStatus.REFUSED, code=Code.INTERNAL_ERROR, reason=repr(exc))
        raise
    _remove(upload)  # what is left: nothing, or the folder when the store held these bytes already
    return upload


def upload_abort(*, actor, upload_id: int) -> ArtifactUpload:
    """Abandon an open upload and remove its bytes (again: the same answer). 409 once it is finished."""
    upload = _owned(actor, upload_id)
    if upload.status in (UploadStatus.ABORTED, UploadStatus.EXPIRED, UploadStatus.REFUSED):
        return upload
    if not ArtifactUpload.objects.filter(pk=upload.pk, status=UploadStatus.OPEN).update(status=UploadStatus.ABORTED):
        upload.refresh_from_db()
        raise _closed(upload)
    _remove(upload)
    _set_status(upload, UploadStatus.ABORTED)
    return upload


def uploads_expire() -> list[int]:
    """Beat's sweep: uploads with no chunk for MODEL_UPLOAD_EXPIRY_SECONDS become `expired` and their bytes
    are removed; so are folders left behind by uploads that ended (a chunk arriving as one was aborted).
    Returns the ids expired."""
    cutoff = timezone.now() - dt.timedelta(seconds=_setting("MODEL_UPLOAD_EXPIRY_SECONDS"))
    expired = []
    stale = ArtifactUpload.objects.filter(
        status__in=(UploadStatus.OPEN, UploadStatus.FINISHING), active_at__lt=cutoff
    ).values_list("pk", "status")
    for pk, status in stale:
        if ArtifactUpload.objects.filter(pk=pk, status=status, active_at__lt=cutoff).update(
            status=UploadStatus.EXPIRED
        ):
            upload = ArtifactUpload.objects.get(pk=pk)
            _remove(upload)
            _set_status(
                upload,
                UploadStatus.EXPIRED,
                code=Code.UPLOAD_EXPIRED,
                reason=f"No chunk for {_setting('MODEL_UPLOAD_EXPIRY_SECONDS')} s; its bytes were removed.",
            )
            expired.append(pk)
    root = uploads_root()
    folders = {entry.name: entry for entry in os.scandir(root)} if root.is_dir() else {}
    if folders:
        live = {
            key.hex
            for key in ArtifactUpload.objects.filter(
                status__in=(UploadStatus.OPEN, UploadStatus.FINISHING)
            ).values_list("key", flat=True)
        }
        for name, entry in folders.items():
            if name not in live:
                shutil.rmtree(entry.path, ignore_errors=True)
    return expired
