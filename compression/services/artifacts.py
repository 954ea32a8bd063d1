"""The content-addressed artifact store and artifact registration.

Every machine keeps a local store (one folder per manifest digest under ARTIFACT_ROOT). When a shared
storage is configured (SAFESHRINK["ARTIFACT_STORAGE"], an S3-compatible bucket through
django-storages), every artifact that enters a local store is also published there, and a machine
whose store lacks an artifact fetches it, checking every byte against the digest before use.
"""

import json
import shutil
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
from compression.engine.errors import EngineError
from compression.engine.manifest import manifest, manifest_digest
from compression.models import ArtifactFormat, ModelArtifact
from ledger.services import ledger_append


def artifact_root() -> Path:
    root = Path(settings.SAFESHRINK["ARTIFACT_ROOT"])
    root.mkdir(parents=True, exist_ok=True)
    return root


def artifact_path(artifact: ModelArtifact) -> Path:
    """The artifact's folder in this machine's store, fetched from the shared storage if missing."""
    path = artifact_root() / artifact.digest
    if not path.exists() and shared_storage() is not None:
        _fetch(artifact.digest)
    return path


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
            raise EngineError("storage_error", f"shared storage saved {name!r} as {saved!r}")
    remote.save(_manifest_name(digest), ContentFile(json.dumps(files, sort_keys=True).encode("utf-8")))


def _fetch(digest: str) -> Path:
    """Copy an artifact from the shared storage into this machine's store, refusing it unless its
    files hash to `digest` (a changed or missing object in the bucket is caught here)."""
    remote = shared_storage()
    if not remote.exists(_manifest_name(digest)):
        raise EngineError("model_not_found", f"artifact {digest} is in neither this machine's store nor the shared storage")
    with remote.open(_manifest_name(digest), "rb") as handle:
        files = json.loads(handle.read())

    def download(content: Path) -> None:
        for entry in files:
            relative = PurePosixPath(entry["path"])
            if relative.is_absolute() or ".." in relative.parts:
                raise EngineError("corrupt_artifact", f"shared manifest of {digest} names a path outside it: {entry['path']!r}")
            destination = content / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with remote.open(f"{digest}/{entry['path']}", "rb") as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)

    return _install(digest, "fetch", download,
                    EngineError("corrupt_artifact", f"the shared copy of artifact {digest} does not match its digest"))


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


def _detect(directory: Path) -> tuple[str, list[str]]:
    if not (directory / "config.json").is_file():
        raise ValidationFailed(
            f"{directory} holds no config.json: not a model directory.", code="model_not_found",
            details={"path": ["No config.json in this directory."]},
        )
    try:
        config = json.loads((directory / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationFailed("config.json is not valid JSON.", code="corrupt_artifact",
                               details={"path": [f"config.json: {exc}"]}) from exc
    id2label = config.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else []
    fmt = ArtifactFormat.HF_DIR
    if (directory / "recipe.json").is_file():
        try:
            recipe = json.loads((directory / "recipe.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ValidationFailed("recipe.json is not valid JSON.", code="corrupt_artifact",
                                   details={"path": [f"recipe.json: {exc}"]}) from exc
        fmt = recipe.get("format") or ArtifactFormat.TORCH_QUANTIZED
        if fmt not in ArtifactFormat.values:
            raise ValidationFailed(f"Unknown artifact format {fmt!r}.", code="unsupported_architecture",
                                   details={"path": [f"recipe.json names format {fmt!r}."]})
    return fmt, labels


@dataclass(frozen=True)
class StoredArtifact:
    """A model folder placed in this machine's store (and the shared storage), not yet recorded."""

    digest: str
    files: list
    size: int
    format: str
    labels: list


def artifact_store(directory: Path, *, move: bool = False) -> StoredArtifact:
    """Put a model folder into the store under its manifest digest, and publish it to the shared
    storage when one is configured. No database work: call it before the transaction that records
    the artifact, so no transaction stays open (or holds a lock) while files are copied or uploaded.
    The store is content-addressed, so a folder whose recording never commits is reused, never wrong."""
    fmt, labels = _detect(directory)
    try:
        digest = manifest_digest(directory)
        files = [{"path": p, "sha256": h, "size": s} for p, h, s in manifest(directory)]
    except EngineError as exc:
        raise ValidationFailed(exc.message, code=exc.code, details={"path": [exc.message]}) from exc
    target = artifact_root() / digest
    if not target.exists():
        # Re-checked after the copy: what lands in the store must be what was hashed.
        _install(digest, "ingest",
                 (lambda content: shutil.move(str(directory), content)) if move
                 else (lambda content: shutil.copytree(directory, content)),
                 ValidationFailed("The model files changed while they were being registered.",
                                  code="corrupt_artifact", details={"path": ["Files changed during copy."]}))
    _publish(digest, target, files)
    return StoredArtifact(digest=digest, files=files, size=sum(f["size"] for f in files), format=fmt, labels=labels)


def artifact_ingest(
    *, stored: StoredArtifact, name: str, actor, parent: ModelArtifact | None = None,
    parameter_count: int | None = None,
) -> tuple[ModelArtifact, bool]:
    """Record a stored artifact. Returns (artifact, created). Same content, same artifact.

    Must be called inside a transaction: the row and its ledger event commit together."""
    digest, size, fmt = stored.digest, stored.size, stored.format
    existing = ModelArtifact.objects.filter(digest=digest).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            artifact = ModelArtifact.objects.create(
                name=name, digest=digest, format=fmt, size_bytes=size, parameter_count=parameter_count,
                parent=parent, manifest=stored.files, labels=stored.labels, created_by=actor,
            )
    except IntegrityError:
        return ModelArtifact.objects.get(digest=digest), False
    ledger_append(
        actor=actor, action="artifact.registered", object_type="artifact", object_id=artifact.pk,
        payload={"digest": digest, "name": name, "format": fmt, "size_bytes": size,
                 "parent": parent.digest if parent else None},
    )
    return artifact, True


def artifact_register(*, actor, name: str, path: str, parent_id: int | None = None) -> ModelArtifact:
    """Register a model folder on this machine as a base artifact (it is copied into the store)."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ValidationFailed(f"No model directory at {path}.", code="model_not_found",
                               details={"path": [f"No directory at {path}."]})
    parent = None
    if parent_id is not None:
        parent = ModelArtifact.objects.filter(pk=parent_id).first()
        if parent is None:
            raise ValidationFailed("Unknown parent artifact.", details={"parent": [f"No artifact {parent_id}."]})
    stored = artifact_store(directory)
    with transaction.atomic():
        artifact, _ = artifact_ingest(stored=stored, name=name, actor=actor, parent=parent)
    return artifact
