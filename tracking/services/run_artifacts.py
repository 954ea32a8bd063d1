"""Files logged to external runs through MLflow's artifact routes (`mlflow.log_artifact(s)`).

A run's files live on disk under TRACKING_ARTIFACT_ROOT/<run_uuid>/<path> (by default a `mlflow-runs` folder in
the artifact store's volume). Each upload is streamed to a private temporary file while its sha256 and size are
measured (never read whole into memory), then moved into place and recorded (`RunArtifactFile`) with one
`external_run.artifact_logged` ledger event. The record, not the folder, is what listing shows; registering a
model from a run checks every file on disk against it (tracking.services.registry).

Paths are relative POSIX paths: `..`, absolute paths, empty or `.` segments, backslashes and NUL are refused (400,
naming `path`), and so is a path that would pass through a symbolic link on disk. Only the owner of the run's
experiment writes, and only while the run is running (as for params and metrics); whoever may see the run reads.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.db import transaction

from accounts.errors import Conflict, NotFound, ValidationFailed
from ledger.services import ledger_append
from tracking.error_codes import TrackingErrorCode
from tracking.models import ExternalRun, RunArtifactFile
from tracking.selectors import external_runs_visible_to

from .runs import OBJECT_TYPE, _expect_running, run_for_writing

CHUNK_BYTES = 1024 * 1024
MAX_PATH_LENGTH = 1000
MAX_SEGMENTS = 32


def tracking_artifact_root() -> Path:
    configured = settings.SAFESHRINK.get("TRACKING_ARTIFACT_ROOT")
    root = Path(configured) if configured else Path(settings.SAFESHRINK["ARTIFACT_ROOT"]) / "mlflow-runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _path_refused(path: object, why: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid artifact path {path!r}: {why}",
        code=TrackingErrorCode.ARTIFACT_PATH,
        details={"path": [why]},
    )


def artifact_relative_path(path: object, *, allow_empty: bool = False) -> str:
    """The normalised relative POSIX path ("" for the run's root when allowed), or 400 naming `path`."""
    if path is None or path == "":
        if allow_empty:
            return ""
        raise _path_refused(path, "A file path is required.")
    if not isinstance(path, str):
        raise _path_refused(path, "Must be a string.")
    if "\x00" in path or "\\" in path:
        raise _path_refused(path, "No NUL bytes or backslashes.")
    if len(path) > MAX_PATH_LENGTH:
        raise _path_refused(path[:80], f"At most {MAX_PATH_LENGTH} characters.")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise _path_refused(path, "Must be relative to the run's artifact folder, not absolute.")
    parts = path.rstrip("/").split("/") if allow_empty else path.split("/")
    if any(part in ("..",) for part in parts):
        raise _path_refused(path, "May not contain '..'.")
    if any(part in ("", ".") for part in parts):
        raise _path_refused(path, "No empty or '.' segments.")
    if len(parts) > MAX_SEGMENTS:
        raise _path_refused(path, f"At most {MAX_SEGMENTS} segments.")
    return "/".join(parts)


def run_artifact_dir(run: ExternalRun) -> Path:
    return tracking_artifact_root() / run.run_uuid


def _no_links(base: Path, relative: str) -> Path:
    """base/relative, refusing it if the run folder or any existing component below it is a symbolic link."""
    current = base
    for part in ("", *(PurePosixPath(relative).parts if relative else ())):
        current = current / part if part else current
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISLNK(mode):
            raise _path_refused(relative, "It passes through a symbolic link.")
    return base / relative if relative else base


@dataclass(frozen=True)
class LoggedFile:
    path: str
    sha256: str
    size: int


def run_artifact_put(*, actor, run_uuid: str, path: str, stream: BinaryIO, length: int | None) -> LoggedFile:
    """Store one uploaded file at `path` under the run's artifact folder (a new upload to the same path replaces
    it, as in MLflow). Who before what: the run is checked before the path and before any byte is read."""
    run = run_for_writing(actor, None, run_uuid=run_uuid, lock=False)
    _expect_running(run)
    relative = artifact_relative_path(path)
    limit = settings.SAFESHRINK["TRACKING_ARTIFACT_MAX_BYTES"]
    if length is not None and length > limit:
        raise ValidationFailed(
            f"The file is {length:,} bytes, over the limit of {limit:,}.", details={"body": [f"At most {limit:,}."]}
        )
    base = run_artifact_dir(run)
    target = _no_links(base, relative)
    staging_dir = tracking_artifact_root() / "tmp"
    staging_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_dir / f"{run.run_uuid}-{uuid.uuid4().hex}"
    hasher, size = hashlib.sha256(), 0
    try:
        with open(staging, "xb") as out:
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise ValidationFailed(
                        f"The file is over the limit of {limit:,} bytes.", details={"body": [f"At most {limit:,}."]}
                    )
                hasher.update(chunk)
                out.write(chunk)
        if length is not None and size != length:
            raise ValidationFailed(
                f"The body ended after {size:,} of {length:,} bytes.", details={"body": ["Incomplete upload."]}
            )
        sha256 = hasher.hexdigest()
        with transaction.atomic():
            run = run_for_writing(actor, None, run_uuid=run_uuid)
            _expect_running(run)
            _check_no_clash(run, relative)
            target = _no_links(base, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            _no_links(base, relative)  # again, after creating the folders
            os.replace(staging, target)
            RunArtifactFile.objects.update_or_create(run=run, path=relative, defaults={"sha256": sha256, "size": size})
            ledger_append(
                actor=actor,
                action="external_run.artifact_logged",
                object_type=OBJECT_TYPE,
                object_id=run.pk,
                payload={"run_uuid": run.run_uuid, "path": relative, "sha256": sha256, "size": size},
            )
    finally:
        staging.unlink(missing_ok=True)
    return LoggedFile(relative, sha256, size)


def _check_no_clash(run: ExternalRun, relative: str) -> None:
    """A file may not sit where a folder of the run's files is, nor under a path that is a file."""
    parents = [str(p) for p in PurePosixPath(relative).parents if str(p) != "."]
    files = RunArtifactFile.objects.filter(run=run)
    if parents and files.filter(path__in=parents).exists():
        raise Conflict(
            f"Cannot log {relative!r}: a file of this run already has the name of one of its folders.",
            details={"path": ["A parent folder of this path is a file."]},
        )
    if files.filter(path__startswith=relative + "/").exists():
        raise Conflict(
            f"Cannot log {relative!r}: the run already has a folder of that name.",
            details={"path": ["This path is a folder of the run's files."]},
        )


def run_for_reading(actor, run_uuid: object) -> ExternalRun:
    run = None
    if isinstance(run_uuid, str):
        run = external_runs_visible_to(actor).filter(run_uuid=run_uuid).first()
    if run is None:
        raise NotFound(f"No external run {run_uuid!r}.")
    return run


@dataclass(frozen=True)
class ListedEntry:
    path: str  # relative to the listed folder's parent, as MLflow lists them (the listed folder + name)
    is_dir: bool
    size: int | None


def run_artifact_list(run: ExternalRun, folder: str) -> list[ListedEntry]:
    """The direct children of `folder` ("" for the run's root) among the run's recorded files; [] when there are
    none. A file path lists as that one file."""
    prefix = folder + "/" if folder else ""
    rows = RunArtifactFile.objects.filter(run=run)
    if prefix:
        rows = rows.filter(path__startswith=prefix) | rows.filter(path=folder)
    entries: dict[str, ListedEntry] = {}
    for path, size in rows.values_list("path", "size").order_by("path"):
        if path == folder:
            return [ListedEntry(path, False, size)]
        rest = path[len(prefix) :]
        name, _, below = rest.partition("/")
        if below:
            entries.setdefault(name, ListedEntry(prefix + name, True, None))
        else:
            entries[name] = ListedEntry(prefix + name, False, size)
    return [entries[name] for name in sorted(entries)]


def run_artifact_file(run: ExternalRun, path: str) -> Path:
    """The stored file at `path` (recorded, on disk, reached through no link), or 404."""
    relative = artifact_relative_path(path)
    if not RunArtifactFile.objects.filter(run=run, path=relative).exists():
        raise NotFound(f"Run {run.run_uuid} has no artifact file {relative!r}.")
    target = _no_links(run_artifact_dir(run), relative)
    if not target.is_file():
        raise NotFound(f"Run {run.run_uuid} has no artifact file {relative!r} on disk.")
    return target
