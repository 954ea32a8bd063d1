"""Single files in the content-addressed artifact store, named by the sha256 of their bytes ("blobs").

Model artifacts are folders named by their manifest digest (compression.services.artifacts); a blob is one
file, `ARTIFACT_ROOT/blobs/<sha256>` on each machine, and `blobs/<sha256>` in the shared storage when one is
configured (SAFESHRINK["ARTIFACT_STORAGE"]). Evaluations keep their per-example predictions in blobs
(Parquet files, evaluations.services.prediction_files), so a chunk written on one machine is read on another.

- `blob_put` writes a file atomically: into a private file in the store's `tmp/` (same volume), hashed while it
  is written, fsynced, then renamed to its digest; then it is published to the shared storage. Call it outside
  transactions, before the row that names the digest is written, so that every recorded digest is readable.
- `blob_read` (bytes) and `blob_path` (a path) hand out a blob only after hashing it: a file whose sha256
  differs from its name is refused (EngineError `corrupt_artifact`), never used. `blob_read` hashes the very
  bytes it returns, so nothing can change between the check and the use. A blob missing here is fetched from
  the shared storage and installed only if its bytes hash to the digest.
"""

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.core.files import File

from compression.engine.errors import EngineError, EngineErrorCode

from .artifacts import artifact_root, shared_storage

logger = logging.getLogger(__name__)
BLOB_FOLDER = "blobs"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Blob:
    """A stored file: the sha256 of its bytes (its name) and its size."""

    digest: str
    size: int


class HashingWriter:
    """A write-only binary file that hashes and counts what goes through it (pyarrow and shutil write to it)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._sha256.update(view)
        self._out.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:  # the caller closes the file underneath
        self.closed = True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def blob_root() -> Path:
    root = artifact_root() / BLOB_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    return root


def _local(digest: str) -> Path:
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise EngineError(EngineErrorCode.INVALID_INPUT, f"{digest!r} is not a sha256 digest")
    return blob_root() / digest


def _remote_name(digest: str) -> str:
    return f"{BLOB_FOLDER}/{digest}"


def _write(fill: Callable[[Any], object], expected: str | None = None) -> tuple[Blob, Path]:
    """Write a blob through `fill` into a private file, hash it on the way, and rename it to its digest
    (replacing whatever file had that name: the new bytes are the ones just hashed). With `expected`, bytes that
    hash to anything else are discarded and refused."""
    scratch = artifact_root() / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=scratch, prefix="blob-")
    try:
        with os.fdopen(handle, "wb") as out:
            sink = HashingWriter(out)
            fill(sink)
            out.flush()
            os.fsync(out.fileno())
        blob = Blob(digest=sink.hexdigest(), size=sink.size)
        if expected is not None and blob.digest != expected:
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT,
                f"the shared copy of blob {expected} hashes to {blob.digest}: refused",
            )
        os.chmod(name, 0o444)
        target = _local(blob.digest)
        os.replace(name, target)  # atomic: a reader sees no file or the whole file
        return blob, target
    finally:
        if os.path.exists(name):
            os.unlink(name)


def blob_put(fill: Callable[[BinaryIO], object]) -> Blob:
    """Store the bytes `fill` writes to the file it is given (sequential writes only) as a blob, and publish it
    to the shared storage when one is configured. Returns its digest and size. No database work."""
    blob, path = _write(fill)
    _publish(blob, path)
    return blob


def blob_put_bytes(data: bytes) -> Blob:
    return blob_put(lambda sink: sink.write(data))


def _publish(blob: Blob, path: Path) -> None:
    """Upload a blob to the shared storage unless a copy of the right size is there already. An object store
    writes an object whole or not at all; a copy of another size (a storage that writes in place, interrupted)
    is replaced. The reader hashes what it fetches in any case."""
    remote = shared_storage()
    if remote is None:
        return
    name = _remote_name(blob.digest)
    if remote.exists(name):
        if remote.size(name) == blob.size:
            return
        remote.delete(name)
    with open(path, "rb") as handle:
        saved = remote.save(name, File(handle))
    if saved != name:  # a storage that does not overwrite renamed ours: another machine published it meanwhile
        remote.delete(saved)
        if not remote.exists(name):
            raise EngineError(EngineErrorCode.STORAGE_ERROR, f"shared storage saved {name!r} as {saved!r}")


def _fetch(digest: str) -> Path:
    remote = shared_storage()
    name = _remote_name(digest)
    if remote is None or not remote.exists(name):
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"blob {digest} is in neither this machine's artifact store nor the shared storage",
        )
    with remote.open(name, "rb") as source:
        blob, path = _write(lambda sink: shutil.copyfileobj(source, sink, _CHUNK), expected=digest)
    logger.info("fetched blob %s (%d bytes) from the shared storage, digest verified", digest, blob.size)
    return path


def _located(digest: str) -> Path:
    path = _local(digest)
    return path if path.is_file() else _fetch(digest)


def _refused(digest: str, actual: str) -> EngineError:
    return EngineError(
        EngineErrorCode.CORRUPT_ARTIFACT,
        f"the stored blob {digest} hashes to {actual}: it was changed after it was written, and is not used",
    )


def blob_read(digest: str) -> bytes:
    """The blob's bytes, after checking that they hash to `digest` (fetched from the shared storage if this
    machine lacks it). Raises EngineError("corrupt_artifact") when they do not, or when no copy exists."""
    data = _located(digest).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise _refused(digest, actual)
    return data


def blob_path(digest: str) -> Path:
    """The blob's file on this machine, hashed just now and matching `digest` (fetched if missing). For readers
    that stream a file too large to hold; `blob_read` leaves no window between the check and the use."""
    path = _located(digest)
    sha256 = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
    if sha256.hexdigest() != digest:
        raise _refused(digest, sha256.hexdigest())
    return path


def blob_exists(digest: str) -> bool:
    """Whether this machine's store or the shared storage holds the blob (not verified)."""
    if _local(digest).is_file():
        return True
    remote = shared_storage()
    return remote is not None and remote.exists(_remote_name(digest))
