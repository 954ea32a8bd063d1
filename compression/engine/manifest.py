"""Content manifests of model artifact directories (stdlib only: imported by the web process)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from compression.engine.errors import EngineError

__all__ = ["file_sha256", "manifest", "manifest_digest", "dir_size"]

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
        raise EngineError("model_not_found", f"artifact directory {str(directory)!r} does not exist")
    files = sorted(
        (path.relative_to(directory).as_posix(), path) for path in directory.rglob("*") if path.is_file()
    )
    if not files:
        raise EngineError("model_not_found", f"artifact directory {str(directory)!r} is empty")
    return files


def manifest(directory: Path | str) -> list[tuple[str, str, int]]:
    """Return (relative posix path, sha256, size in bytes) for every file, sorted by path; nothing is ignored."""
    return [(rel, file_sha256(path), path.stat().st_size) for rel, path in _files(Path(directory))]


def manifest_digest(directory: Path | str) -> str:
    """Return the sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of the manifest entries."""
    entries = [{"path": rel, "sha256": sha, "size": size} for rel, sha, size in manifest(directory)]
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def dir_size(directory: Path | str) -> int:
    """Return the total size in bytes of every regular file under ``directory``."""
    return sum(path.stat().st_size for _, path in _files(Path(directory)))
