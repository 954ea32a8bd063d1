"""The content-addressed artifact store and artifact registration.

Every machine keeps a local store (one folder per manifest digest under ARTIFACT_ROOT). When a shared
storage is configured (SAFESHRINK["ARTIFACT_STORAGE"], an S3-compatible bucket through
django-storages), every artifact that enters a local store is also published there, and a machine
whose store lacks an artifact fetches it, checking every byte against the digest before use.

A job never trusts the local store either: artifact_path re-checks the stored files against the digest
(cached per file while its size, timestamps and inode are unchanged). API clients register folders only
from SAFESHRINK_IMPORT_ROOTS (artifact_import); operators' commands use artifact_register.
"""

import datetime as dt
import errno
import json
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import IntegrityError, transaction

from accounts.errors import ValidationFailed
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.manifest import (
    VerificationCache,
    VerifiedManifest,
    entries_digest,
    manifest,
    manifest_digest,
    verify_manifest,
)
from compression.engine.weights_header import safetensors_parameter_count
from compression.error_codes import CompressionErrorCode
from compression.models import ArtifactFormat, ModelArtifact, ModelKind
from compression.selectors import artifacts_visible_to
from ledger.services import ledger_append
from trust.model_signing import ModelSignatureResult

from .signatures import (
    carried_signature_check,
    carried_signature_record,
    system_signature_prepare,
    system_signature_record,
)

logger = logging.getLogger(__name__)
# This machine's record of each artifact it fetched from the shared storage: ARTIFACT_ROOT/fetched/<digest>.json.
FETCH_RECEIPTS = "fetched"


def artifact_root() -> Path:
    root = Path(settings.SAFESHRINK["ARTIFACT_ROOT"])
    root.mkdir(parents=True, exist_ok=True)
    return root


def artifact_dir(artifact: ModelArtifact) -> Path:
    """The artifact's folder in this machine's store, fetched from the shared storage if missing.
    NOT verified: for reading small metadata (config.json) at request time. A job uses artifact_path."""
    path = artifact_root() / artifact.digest
    if not path.exists() and shared_storage() is not None:
        _fetch(artifact.digest)
    return path


# Process-local: a worker hashes each stored file once, then checks one lstat per file per job.
_VERIFIED = VerificationCache()


def artifact_verified(artifact: ModelArtifact) -> tuple[Path, VerifiedManifest]:
    """The artifact's folder, after checking that its bytes still hash to the registered digest
    (files unchanged since an earlier check in this process are not hashed again: see
    VerificationCache). Raises EngineError("corrupt_artifact") when they do not."""
    path = artifact_dir(artifact)
    return path, verify_manifest(path, artifact.digest, cache=_VERIFIED)


def artifact_path(artifact: ModelArtifact) -> Path:
    """The artifact's folder for a job (compression or evaluation), verified against its digest."""
    return artifact_verified(artifact)[0]


def shared_storage():
    """The configured shared artifact storage (a Django Storage), or None."""
    alias = settings.SAFESHRINK.get("ARTIFACT_STORAGE") or ""
    return storages[alias] if alias else None


def _manifest_name(digest: str) -> str:
    # Beside the folder, not inside it: a model file could be called anything.
    return f"{digest}.manifest.json"


def _publish(digest: str, directory: Path, files: list[dict]) -> None:
    """Upload a stored artifact to the shared storage. Its manifest goes last, so its presence means
    the upload is complete; a half-finished upload is simply done again."""
    remote = shared_storage()
    if remote is None or remote.exists(_manifest_name(digest)):
        return
    for entry in files:
        name = f"{digest}/{entry['path']}"
        if remote.exists(name):
            remote.delete(name)  # left by an interrupted upload; rewritten from the verified local copy
        with open(directory / entry["path"], "rb") as handle:
            saved = remote.save(name, File(handle))
        if saved != name:
            raise EngineError(EngineErrorCode.STORAGE_ERROR, f"shared storage saved {name!r} as {saved!r}")
    remote.save(_manifest_name(digest), ContentFile(json.dumps(files, sort_keys=True).encode("utf-8")))


def _fetch(digest: str) -> Path:
    """Copy an artifact from the shared storage into this machine's store, refusing it unless its
    files hash to `digest` (a changed or missing object in the bucket is caught here)."""
    remote = shared_storage()
    if not remote.exists(_manifest_name(digest)):
        raise EngineError(
            CompressionErrorCode.MODEL_NOT_FOUND,
            f"artifact {digest} is in neither this machine's store nor the shared storage",
        )
    with remote.open(_manifest_name(digest), "rb") as handle:
        files = json.loads(handle.read())

    def download(content: Path) -> None:
        for entry in files:
            relative = PurePosixPath(entry["path"])
            if relative.is_absolute() or ".." in relative.parts:
                raise EngineError(
                    CompressionErrorCode.CORRUPT_ARTIFACT,
                    f"shared manifest of {digest} names a path outside it: {entry['path']!r}",
                )
            destination = content / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with remote.open(f"{digest}/{entry['path']}", "rb") as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)

    target = _install(
        digest,
        "fetch",
        download,
        EngineError(
            CompressionErrorCode.CORRUPT_ARTIFACT, f"the shared copy of artifact {digest} does not match its digest"
        ),
    )
    _fetch_receipt_write(digest, files)
    return target


def _fetch_receipt_write(digest: str, files: list[dict]) -> None:
    """Record on this machine that `digest` came from the shared storage and hashed to its digest (written only
    after _install's check passed; a refused copy leaves no receipt). Written whole or not at all."""
    folder = artifact_root() / FETCH_RECEIPTS
    folder.mkdir(parents=True, exist_ok=True)
    receipt = {
        "digest": digest,
        "verified": "manifest sha256 of the downloaded files equals the digest",
        "files": len(files),
        "bytes": sum(int(entry.get("size") or 0) for entry in files),
        "fetched_at": dt.datetime.now(dt.UTC).isoformat(),
        "pid": os.getpid(),
    }
    staging = folder / f".{digest}.{uuid.uuid4().hex}"
    staging.write_text(json.dumps(receipt, sort_keys=True), "utf-8")
    os.replace(staging, folder / f"{digest}.json")
    logger.info("fetched artifact %s from the shared storage: %d files, digest verified", digest, len(files))


def artifact_fetch_receipt(digest: str) -> dict | None:
    """This machine's receipt for an artifact fetched from the shared storage (None: made, registered or
    uploaded here, or not here at all)."""
    try:
        return json.loads((artifact_root() / FETCH_RECEIPTS / f"{digest}.json").read_text("utf-8"))
    except FileNotFoundError:
        return None


def _install(digest: str, prefix: str, fill: Callable[[Path], object], mismatch: Exception) -> Path:
    """Fill a private staging folder, check that it hashes to `digest` (raise `mismatch` if not) and
    rename it into the store; a concurrent install of the same digest wins harmlessly."""
    target = artifact_root() / digest
    staging = scratch_dir(prefix)
    try:
        fill(staging / "content")
        if manifest_digest(staging / "content") != digest:
            raise mismatch
        try:
            (staging / "content").rename(target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def scratch_dir(prefix: str) -> Path:
    """A private working folder inside the store's volume, so the final move is a rename."""
    path = artifact_root() / "tmp" / f"{prefix}-{uuid.uuid4().hex}"
    path.mkdir(parents=True)
    return path


def _read_json(directory: Path, name: str) -> dict:
    try:
        data = json.loads((directory / name).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationFailed(
            f"{name} is not valid JSON.",
            code=CompressionErrorCode.CORRUPT_ARTIFACT,
            details={"path": [f"{name}: {exc}"]},
        ) from exc
    if not isinstance(data, dict):
        raise ValidationFailed(
            f"{name} is not a JSON object.",
            code=CompressionErrorCode.CORRUPT_ARTIFACT,
            details={"path": [f"{name} must hold a JSON object."]},
        )
    return data


@dataclass(frozen=True)
class Detected:
    """What a folder holds: its format, kind, class labels (a chat model's: its judged behaviours; a judge's:
    what it decides) and its chat template's digest (chat models)."""

    format: str
    kind: str
    labels: list
    chat_template_digest: str = ""


def _detect(directory: Path, label: str | None = None) -> Detected:
    from compression.engine.kinds import CHAT_BEHAVIOURS, JUDGE_FILE, MODEL_KIND_CHAT, chat_template_digest, model_kind

    if (directory / JUDGE_FILE).is_file():  # a judge of chat-model answers (evaluations.engine.judges)
        judge = _read_json(directory, JUDGE_FILE)
        labels = judge.get("labels")
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
            raise ValidationFailed(
                f"{JUDGE_FILE} names no labels.",
                code=CompressionErrorCode.CORRUPT_ARTIFACT,
                details={"path": [f"{JUDGE_FILE}: labels must be a list of names."]},
            )
        fmt = ArtifactFormat.HF_DIR if (directory / "config.json").is_file() else ArtifactFormat.JUDGE_RULES
        return Detected(format=fmt, kind=ModelKind.JUDGE, labels=list(labels))
    if not (directory / "config.json").is_file():
        raise ValidationFailed(
            f"{label or directory} holds no config.json: not a model directory.",
            code=CompressionErrorCode.MODEL_NOT_FOUND,
            details={"path": ["No config.json in this directory."]},
        )
    config = _read_json(directory, "config.json")
    id2label = config.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)] if isinstance(id2label, dict) and id2label else []
    fmt = ArtifactFormat.HF_DIR
    if (directory / "recipe.json").is_file():
        recipe = _read_json(directory, "recipe.json")
        fmt = recipe.get("format") or ArtifactFormat.TORCH_QUANTIZED
        if fmt not in ArtifactFormat.values:
            raise ValidationFailed(
                f"Unknown artifact format {fmt!r}.",
                code=CompressionErrorCode.UNSUPPORTED_ARCHITECTURE,
                details={"path": [f"recipe.json names format {fmt!r}."]},
            )
    try:
        kind = model_kind(directory)
        template = chat_template_digest(directory) if kind == MODEL_KIND_CHAT else None
    except EngineError as exc:
        raise ValidationFailed(exc.message, code=exc.code, details={"path": [exc.message]}) from exc
    if kind == MODEL_KIND_CHAT:
        return Detected(fmt, ModelKind.CHAT, list(CHAT_BEHAVIOURS), template or "")
    return Detected(fmt, ModelKind.CLASSIFIER, labels)


# Formats whose weights are plain floating-point tensors in model.safetensors: counted from the headers when stored.
HEADER_COUNTED_FORMATS = (ArtifactFormat.HF_DIR, ArtifactFormat.HF_PRUNED)


@dataclass(frozen=True)
class StoredArtifact:
    """A model folder placed in this machine's store (and the shared storage), not yet recorded."""

    digest: str
    files: list
    size: int
    format: str
    labels: list
    kind: str = "classifier"
    chat_template_digest: str = ""
    parameter_count: int | None = None  # from the safetensors headers of plain weights (else unknown)

    @classmethod
    def of(cls, detected: Detected, *, digest: str, files: list, size: int, stored: Path) -> "StoredArtifact":
        """`stored`: the folder in the store. Plain weights are counted from their safetensors headers there (the
        hashed copy; no weight loaded, no torch in the web process); other formats' counts stay unknown here."""
        parameter_count = safetensors_parameter_count(stored) if detected.format in HEADER_COUNTED_FORMATS else None
        return cls(
            digest=digest,
            files=files,
            size=size,
            format=detected.format,
            labels=detected.labels,
            kind=detected.kind,
            chat_template_digest=detected.chat_template_digest,
            parameter_count=parameter_count,
        )


def artifact_store(directory: Path, *, move: bool = False, label: str | None = None) -> StoredArtifact:
    """Put a model folder into the store under its manifest digest, and publish it to the shared
    storage when one is configured. No database work: call it before the transaction that records
    the artifact, so no transaction stays open (or holds a lock) while files are copied or uploaded.
    The store is content-addressed, so a folder whose recording never commits is reused, never wrong."""
    detected = _detect(directory, label)
    try:
        entries = manifest(directory)
        digest = entries_digest(entries)  # one hashing pass, not two
        files = [{"path": p, "sha256": h, "size": s} for p, h, s in entries]
    except EngineError as exc:
        message = exc.message if label is None else exc.message.replace(repr(str(directory)), repr(label))
        raise ValidationFailed(message, code=exc.code, details={"path": [message]}) from exc
    target = artifact_root() / digest
    if not target.exists():
        # Re-checked after the copy: what lands in the store must be what was hashed.
        _install(
            digest,
            "ingest",
            (lambda content: shutil.move(str(directory), content))
            if move
            else (lambda content: shutil.copytree(directory, content)),
            ValidationFailed(
                "The model files changed while they were being registered.",
                code=CompressionErrorCode.CORRUPT_ARTIFACT,
                details={"path": ["Files changed during copy."]},
            ),
        )
    _publish(digest, target, files)
    return StoredArtifact.of(detected, digest=digest, files=files, size=sum(s for _, _, s in entries), stored=target)


def artifact_ingest(
    *,
    stored: StoredArtifact,
    name: str,
    actor,
    parent: ModelArtifact | None = None,
    parameter_count: int | None = None,
    signature: ModelSignatureResult | None = None,
) -> tuple[ModelArtifact, bool]:
    """Record a stored artifact. Returns (artifact, created). Same content, same artifact.
    `signature`: the check of a model-signing signature the folder carries (carried_signature_check, made
    before the transaction), recorded on the artifact with its own ledger event.

    `parameter_count`: measured on the loaded model (a run's output); otherwise the count from the stored files'
    headers (`StoredArtifact.parameter_count`), which also fills in an existing row that has none.

    Must be called inside a transaction: the row and its ledger event commit together."""
    digest, size, fmt = stored.digest, stored.size, stored.format
    parameter_count = parameter_count if parameter_count is not None else stored.parameter_count
    existing = ModelArtifact.objects.filter(digest=digest).first()
    if existing:
        if existing.parameter_count is None and parameter_count is not None:  # registered before it was counted
            ModelArtifact.objects.filter(pk=existing.pk, parameter_count=None).update(parameter_count=parameter_count)
            existing.parameter_count = parameter_count
        artifact = _registered_again(existing, actor)
        carried_signature_record(artifact, signature, actor)
        return artifact, False
    try:
        with transaction.atomic():
            artifact = ModelArtifact.objects.create(
                name=name,
                digest=digest,
                format=fmt,
                size_bytes=size,
                parameter_count=parameter_count,
                parent=parent,
                manifest=stored.files,
                labels=stored.labels,
                kind=stored.kind,
                chat_template_digest=stored.chat_template_digest,
                created_by=actor,
            )
    except IntegrityError:
        artifact = _registered_again(ModelArtifact.objects.get(digest=digest), actor)
        carried_signature_record(artifact, signature, actor)
        return artifact, False
    ledger_append(
        actor=actor,
        action="artifact.registered",
        object_type="artifact",
        object_id=artifact.pk,
        payload={
            "digest": digest,
            "name": name,
            "format": fmt,
            "kind": stored.kind,
            "size_bytes": size,
            "parent": parent.digest if parent else None,
        },
    )
    carried_signature_record(artifact, signature, actor)
    return artifact, True


def _registered_again(artifact: ModelArtifact, actor) -> ModelArtifact:
    """Someone registered bytes that are already stored: same artifact, and it becomes visible to them
    (artifacts are scoped to who registered or uses them; see selectors.artifacts_visible_to)."""
    if actor is None or artifact.created_by_id == actor.pk or artifact.registrants.filter(pk=actor.pk).exists():
        return artifact
    artifact.registrants.add(actor)
    ledger_append(
        actor=actor,
        action="artifact.registered",
        object_type="artifact",
        object_id=artifact.pk,
        payload={"digest": artifact.digest, "already_stored": True},
    )
    return artifact


def artifact_register(
    *, actor, name: str, path: str, parent_id: int | None = None, sign: bool = False
) -> ModelArtifact:
    """Register a model folder on this machine as a base artifact (it is copied into the store).
    `sign`: SafeShrink built this model (the reference teacher, the demo's tiny model), so it signs it
    with its model-signing key as it signs a run's output.

    An operator action (`load_demo`, management commands, benchmarks): any readable folder. Requests
    from API clients go through artifact_import, which only reads inside SAFESHRINK_IMPORT_ROOTS."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ValidationFailed(
            f"No model directory at {path}.",
            code=CompressionErrorCode.MODEL_NOT_FOUND,
            details={"path": [f"No directory at {path}."]},
        )
    parent = None
    if parent_id is not None:
        parent = ModelArtifact.objects.filter(pk=parent_id).first()
        if parent is None:
            raise ValidationFailed("Unknown parent artifact.", details={"parent": [f"No artifact {parent_id}."]})
    stored = artifact_store(directory)
    signature = carried_signature_check(stored, actor)
    bundle = system_signature_prepare(stored.digest) if sign else None
    with transaction.atomic():
        artifact, _ = artifact_ingest(stored=stored, name=name, actor=actor, parent=parent, signature=signature)
        system_signature_record(artifact, bundle)
    return artifact


# One answer for every refused server path, whatever the reason (absent, not a folder, outside the
# roots, `..`, relative): a client learns nothing about the server's files from it.
PATH_REFUSED = (
    "No importable model directory at this path: it does not exist or is outside the folders this "
    "server imports from (SAFESHRINK_IMPORT_ROOTS)."
)


def _path_refused() -> ValidationFailed:
    return ValidationFailed(PATH_REFUSED, code=CompressionErrorCode.MODEL_NOT_FOUND, details={"path": [PATH_REFUSED]})


def import_roots() -> list[tuple[Path, Path]]:
    """The configured import roots as (absolute path as written, real path); a root that is not an
    existing absolute folder is ignored."""
    roots = []
    for root in settings.SAFESHRINK.get("IMPORT_ROOTS") or []:
        root = str(root)
        if os.path.isabs(root) and os.path.isdir(root):
            roots.append((Path(os.path.normpath(root)), Path(os.path.realpath(root))))
    return roots


def _importable_directory(path: str) -> Path:
    """The real path of `path` when it is an absolute folder inside an import root, reached through no
    symlink below the root and no `..`; otherwise the one refusal."""
    roots = import_roots()
    if not roots or not path or "\x00" in path:
        raise _path_refused()
    given = PurePosixPath(path)
    if not given.is_absolute() or ".." in given.parts:
        raise _path_refused()
    normal, real = Path(os.path.normpath(path)), Path(os.path.realpath(path))
    for written, resolved in roots:
        for base in (written, resolved):
            # Below the root, the path as given must be the real path: no symlink on the way.
            if normal.is_relative_to(base) and real == resolved / normal.relative_to(base) and real.is_dir():
                return real
    raise _path_refused()


def _copy_tree_no_links(source: Path, destination: Path, label: str) -> None:
    """Copy a folder, reading every entry through directory file descriptors and O_NOFOLLOW, so a symlink
    (or a folder swapped for one during the copy) is refused instead of followed. Only regular files and
    folders are copied; anything else (symlink, FIFO, device, socket) is refused."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    top = os.open(source, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
    try:
        try:  # before copying anything: a folder without config.json is not a model (and may be huge)
            config = os.stat("config.json", dir_fd=top, follow_symlinks=False)
        except FileNotFoundError:
            config = None
        if config is None or not stat.S_ISREG(config.st_mode):
            raise ValidationFailed(
                f"{label} holds no config.json: not a model directory.",
                code=CompressionErrorCode.MODEL_NOT_FOUND,
                details={"path": ["No config.json in this directory."]},
            )
        # "." relative to the descriptor of the opened folder: the walk never re-resolves `source`.
        for dirpath, dirnames, filenames, dirfd in os.fwalk(".", follow_symlinks=False, dir_fd=top):
            relative = Path(dirpath)
            (destination / relative).mkdir(parents=True, exist_ok=True)
            for name in dirnames:
                if stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                    raise _link_refused((relative / name).as_posix())
            for name in filenames:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                # A hard link could name a file from elsewhere on the same file system.
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    raise _link_refused((relative / name).as_posix())
                try:
                    fd = os.open(name, flags, dir_fd=dirfd)
                except OSError as exc:  # ELOOP: replaced by a symlink after the stat
                    raise _link_refused((relative / name).as_posix()) from exc
                with os.fdopen(fd, "rb") as src:
                    opened = os.fstat(src.fileno())
                    if not stat.S_ISREG(opened.st_mode) or opened.st_nlink != 1:
                        raise _link_refused((relative / name).as_posix())
                    with open(destination / relative / name, "wb") as out:
                        shutil.copyfileobj(src, out)
    finally:
        os.close(top)


def _link_refused(relative: str) -> ValidationFailed:
    return ValidationFailed(
        PATH_REFUSED,
        code=CompressionErrorCode.MODEL_NOT_FOUND,
        details={
            "path": [
                f"{relative} is a symbolic link, a hard link or not a regular file; "
                "links are never followed when importing."
            ]
        },
    )


def artifact_import(*, actor, name: str, path: str, parent_id: int | None = None) -> ModelArtifact:
    """Register a model folder named by an API client. Only folders inside SAFESHRINK_IMPORT_ROOTS
    (empty by default: the API then imports nothing) are read; symlinks anywhere in the folder, `..`
    and paths that resolve outside a root are refused with one message that does not say whether the
    path exists. The folder is copied through no-follow descriptors first, and what is hashed and
    stored is that copy, so nothing outside the folder can end up in the store."""
    parent = None
    if parent_id is not None:
        parent = artifacts_visible_to(actor).filter(pk=parent_id).first()
        if parent is None:
            raise ValidationFailed("Unknown parent artifact.", details={"parent": [f"No artifact {parent_id}."]})
    directory = _importable_directory(path)
    staging = scratch_dir("import")
    try:
        try:
            _copy_tree_no_links(directory, staging / "model", label=path)
        except OSError as exc:  # removed, swapped for a link or unreadable since the check: the same answer
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EPERM):
                raise
            raise _path_refused() from exc
        stored = artifact_store(staging / "model", move=True, label=path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    signature = carried_signature_check(stored, actor)
    with transaction.atomic():
        artifact, _ = artifact_ingest(stored=stored, name=name, actor=actor, parent=parent, signature=signature)
    return artifact
