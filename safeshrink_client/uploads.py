"""A model folder as the server's upload API sees it (standard library only).

The manifest is SafeShrink's: every regular file as {path, sha256, size}, sorted by path, and its digest
is the sha256 of the canonical JSON of that list (sorted keys, no whitespace, UTF-8), the same digest
the stored artifact will have. The client uses it to find an upload of the same folder to resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

READ_BYTES = 1 << 20


class UploadRefused(ValueError):
    """The folder cannot be uploaded as it is (a link, a special file, no files); nothing was sent."""


@dataclass
class LocalFile:
    path: str  # relative, '/'-separated
    full: str
    size: int
    sha256: str = ""
    # (offset, length) -> sha256 of the chunks hash_files saw, so sending them does not hash them again.
    chunk_sha256: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)

    def entry(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


def scan_folder(root: str | os.PathLike, *, include_hidden: bool = False) -> list[LocalFile]:
    """Every regular file under `root`, sorted by relative path. Links are refused, never followed: a
    symlink could point anywhere on this machine, and the server would store what it points to. Files and
    folders whose name starts with '.' (.git, .cache/huggingface, .DS_Store) are left out unless
    `include_hidden`: they are a checkout's or a download's bookkeeping, not the model."""
    root = os.fspath(root)
    if not os.path.isdir(root) or os.path.islink(root):
        raise UploadRefused(f"{root} is not a folder")
    found = []
    for folder, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        if not include_hidden:
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            filenames = [name for name in filenames if not name.startswith(".")]
        for name in [*dirnames, *filenames]:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            relative = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            if stat.S_ISLNK(st.st_mode):
                raise UploadRefused(f"{relative} is a symbolic link; links are not uploaded (copy the file in)")
            if name in filenames and not stat.S_ISREG(st.st_mode):
                raise UploadRefused(f"{relative} is not a regular file")
            if name in filenames:
                found.append(LocalFile(relative, os.path.join(folder, name), st.st_size))
    if not found:
        raise UploadRefused(f"{root} holds no files")
    return sorted(found, key=lambda f: f.path)


def hash_files(
    files: list[LocalFile], on_bytes: Callable[[int], None] | None = None, *, chunk_bytes: int | None = None
) -> None:
    """Fill in each file's sha256, reporting bytes read as they are. With `chunk_bytes`, the same pass also
    keeps the sha256 of each chunk of that size (in chunk_sha256): the file is read once, and its digest and
    its chunk's digest are computed side by side (hashlib releases the GIL on large blocks)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        for local in files:
            digest, chunk, offset, in_chunk = hashlib.sha256(), hashlib.sha256(), 0, 0
            local.chunk_sha256 = {}
            with open(local.full, "rb") as handle:
                while True:
                    want = READ_BYTES * 8 if not chunk_bytes else min(READ_BYTES * 8, chunk_bytes - in_chunk)
                    block = handle.read(want)
                    if not block:
                        break
                    if chunk_bytes:
                        pending = pool.submit(digest.update, block)
                        chunk.update(block)
                        pending.result()
                        in_chunk += len(block)
                        if in_chunk == chunk_bytes:
                            local.chunk_sha256[offset, in_chunk] = chunk.hexdigest()
                            chunk, offset, in_chunk = hashlib.sha256(), offset + in_chunk, 0
                    else:
                        digest.update(block)
                    if on_bytes:
                        on_bytes(len(block))
            if chunk_bytes and in_chunk:
                local.chunk_sha256[offset, in_chunk] = chunk.hexdigest()
            local.sha256 = digest.hexdigest()


def manifest_digest(files: list[LocalFile]) -> str:
    rows = [local.entry() for local in files]
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Chunk:
    path: str
    offset: int
    data: bytes
    sha256: str


def missing_chunks(files: list[LocalFile], received: dict[str, int], chunk_bytes: int) -> Iterator[tuple]:
    """(file, offset, length) of every chunk not yet received, file by file from where each one stops."""
    for local in files:
        for offset in range(received.get(local.path, 0), local.size, chunk_bytes):
            yield local, offset, min(chunk_bytes, local.size - offset)


def _read(local: LocalFile, offset: int, length: int) -> Chunk:
    with open(local.full, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    if len(data) != length:
        raise UploadRefused(f"{local.path} changed while it was uploaded (it is shorter than before)")
    sha256 = local.chunk_sha256.get((offset, length)) or hashlib.sha256(data).hexdigest()
    return Chunk(local.path, offset, data, sha256)


def read_ahead(plan: Iterable[tuple]) -> Iterator[Chunk]:
    """The chunks of `plan`, each read (and hashed, unless hash_files did) in a thread while the one before is
    being sent (hashlib and file reads release the GIL), so at most two chunks are in memory."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for local, offset, length in plan:
            future = pool.submit(_read, local, offset, length)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()
