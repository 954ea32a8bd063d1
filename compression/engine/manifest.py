"""Content manifests of model artifact directories (stdlib only: imported by the web process)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compression.engine.errors import EngineError, EngineErrorCode
from trust.canonical import digest as canonical_digest

__all__ = [
    "file_sha256",
    "manifest",
    "manifest_digest",
    "dir_size",
    "entries_digest",
    "VerificationCache",
    "VerifiedManifest",
    "verify_manifest",
]

_CHUNK = 1 << 20


def file_sha256(path: Path | str) -> str:
    """Return the hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(directory: Path) -> list[tuple[str, Path]]:
    """Return (relative posix path, absolute path) of every regular file under ``directory``, sorted.

    Raises EngineError("model_not_found") when the directory is missing, not a directory or holds no file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"artifact directory {str(directory)!r} does not exist")
    files = sorted((path.relative_to(directory).as_posix(), path) for path in directory.rglob("*") if path.is_file())
    if not files:
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"artifact directory {str(directory)!r} is empty")
    return files


def manifest(directory: Path | str) -> list[tuple[str, str, int]]:
    """Return (relative posix path, sha256, size in bytes) for every file, sorted by path; nothing is ignored."""
    return [(rel, file_sha256(path), path.stat().st_size) for rel, path in _files(Path(directory))]


def entries_digest(entries: list[tuple[str, str, int]]) -> str:
    """The sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of (path, sha256, size) entries."""
    rows = [{"path": rel, "sha256": sha, "size": size} for rel, sha, size in entries]
    return canonical_digest(rows)


def manifest_digest(directory: Path | str) -> str:
    """Return the sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of the manifest entries."""
    return entries_digest(manifest(directory))


def dir_size(directory: Path | str) -> int:
    """Return the total size in bytes of every regular file under ``directory``."""
    return sum(path.stat().st_size for _, path in _files(Path(directory)))


# --- Verifying a stored artifact before a job uses it -------------------------------------------------

# A file whose mtime or ctime is this close to the moment it was hashed is not cached: timestamps are
# kept at the kernel's coarse clock (a few ms; 1-2 s on some file systems), so a write right after the
# hash could leave them unchanged ("racily clean", as git calls it). Such a file is hashed again next time.
RACY_WINDOW_NS = 2_000_000_000


class VerificationCache:
    """sha256 of files already hashed, keyed by absolute path and valid only while the file's
    (size, mtime_ns, ctime_ns, inode, device) are unchanged. Writing, truncating, replacing
    (new inode) or touching a file (ctime always moves, even when mtime is set back) invalidates it.
    Process-local: each worker process hashes a file once, then checks one lstat per file."""

    def __init__(self, max_entries: int = 100_000):
        self._entries: dict[str, tuple[tuple, str]] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, path: str, key: tuple) -> str | None:
        with self._lock:
            hit = self._entries.get(path)
        return hit[1] if hit and hit[0] == key else None

    def put(self, path: str, key: tuple, sha256: str) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[path] = (key, sha256)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class VerifiedManifest:
    """What a verification found: the manifest digest of the bytes on disk now, and how many files
    were hashed again or taken from the cache."""

    digest: str
    files: int
    hashed: int
    cached: int
    bytes_hashed: int


def _stat_key(st: os.stat_result) -> tuple:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def verify_manifest(
    directory: Path | str,
    expected: str,
    *,
    cache: VerificationCache | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> VerifiedManifest:
    """Hash a stored artifact folder (reusing `cache` for unchanged files) and check it against `expected`.

    Raises EngineError("model_not_found") when the folder is missing or empty and
    EngineError("corrupt_artifact") when it holds a symlink or special file, or when its bytes do not
    hash to `expected` (a changed, added, missing or renamed file)."""
    directory = Path(directory)
    if not directory.is_dir() or directory.is_symlink():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"artifact directory {str(directory)!r} does not exist")
    found: list[tuple[str, Path, os.stat_result]] = []
    for path in directory.rglob("*"):
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT,
                f"artifact {expected} holds {path.relative_to(directory).as_posix()!r}, "
                "which is not a regular file (a symlink or special file)",
            )
        found.append((path.relative_to(directory).as_posix(), path, st))
    if not found:
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"artifact directory {str(directory)!r} is empty")
    found.sort(key=lambda item: item[0])
    entries, hashed, cached, bytes_hashed = [], 0, 0, 0
    for rel, path, st in found:
        key = _stat_key(st)
        sha = cache.get(str(path), key) if cache is not None else None
        if sha is not None:
            cached += 1
        else:
            started = now_ns()
            sha = file_sha256(path)
            after = os.lstat(path)
            hashed, bytes_hashed = hashed + 1, bytes_hashed + st.st_size
            if _stat_key(after) != key:
                raise EngineError(
                    EngineErrorCode.CORRUPT_ARTIFACT,
                    f"{rel} of artifact {expected} changed while it was being verified",
                )
            if cache is not None and max(st.st_mtime_ns, st.st_ctime_ns) < started - RACY_WINDOW_NS:
                cache.put(str(path), key, sha)
        entries.append((rel, sha, st.st_size))
    digest = entries_digest(entries)
    if digest != expected:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"the stored files of artifact {expected} no longer match its digest "
            f"(they hash to {digest}): a file was changed, added or removed",
        )
    return VerifiedManifest(digest=digest, files=len(entries), hashed=hashed, cached=cached, bytes_hashed=bytes_hashed)
