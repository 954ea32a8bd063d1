"""The sha256 digests of an upload's files, kept as their chunks arrive (compression.services.uploads).

Every chunk is hashed twice on arrival: alone, to check it against the sha256 sent with it, and as the
continuation of its file's running sha256 (trust.resumable_sha256), whose state is saved on the file's
row in the same UPDATE that advances `received`. Consecutive chunks reach different gunicorn workers, so
the state travels through the database, never through a process's memory. At finish a file whose state
covers all of its bytes has its whole-file sha256 without being read again; a file without one (no
libcrypto here, a row from before the state was kept, a state that does not cover exactly its bytes) is
read and hashed whole, as before. Both give the same digest, and both are checked against the manifest.

What the saved state guarantees: the bytes this server wrote to the file, as it wrote them under the
file's lock, hash to the digest. A file changed on disk by something else between its chunks and the
finish is not seen by that digest; it is caught right after, because installing the folder in the
artifact store re-hashes every file and compares with the digest built from these hashes (a mismatch
refuses the finish), and the store verifies a folder again before any job uses it (artifact_path).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from compression.engine.manifest import file_sha256
from compression.models import UploadFile
from trust.resumable_sha256 import BadState, ResumableSha256, Unavailable

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _saved(row: UploadFile) -> bytes:
    return bytes(row.sha256_state or b"")  # PostgreSQL gives a memoryview


def running_sha256(row: UploadFile, offset: int) -> ResumableSha256 | None:
    """The file's sha256 over its first `offset` bytes, to continue with the next chunk; None when it is not
    known (its chunks then go unhashed as a whole, and finishing reads the file)."""
    try:
        if offset == 0:
            return ResumableSha256()
        return ResumableSha256.resume(_saved(row), hashed=offset)
    except (Unavailable, BadState):
        return None


class ChunkDigests:
    """Hashes a chunk's pieces alone (hashlib), and as its file's continuation (`running`) when that is known.
    One after the other: a thread per request to overlap them cost more CPU than it saved on a busy machine."""

    def __init__(self, running: ResumableSha256 | None):
        self.chunk = hashlib.sha256()
        self.running = running

    def update(self, piece: bytes) -> None:
        self.chunk.update(piece)
        if self.running is not None:
            self.running.update(piece)

    def state(self) -> bytes:
        """What to save on the row with the chunk (empty: not known)."""
        return self.running.state() if self.running is not None else b""


def whole_file_digests(folder: Path, rows: list[UploadFile]) -> dict[str, str]:
    """path -> sha256 of each fully received file: from its saved state when that covers exactly its bytes,
    else by reading it whole."""
    digests = {}
    for row in rows:
        if row.size == 0:
            digests[row.path] = EMPTY_SHA256
            continue
        try:
            digests[row.path] = ResumableSha256.resume(_saved(row), hashed=row.size).hexdigest()
        except (Unavailable, BadState):
            digests[row.path] = file_sha256(folder / row.path)
    return digests
