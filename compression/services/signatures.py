"""OpenSSF model signing (trust.model_signing) of artifacts: what SafeShrink produces is signed, what
arrives carrying a signature is checked.

**Signing.** Every artifact a compression run produces is signed with SafeShrink's model-signing key, in
the format `model_signing sign key` writes, over the files of its stored folder. The bundle is kept on the
artifact's row (`system_signature`), beside the folder and never inside it: a file added to the folder
would change the artifact's digest (its content address). `GET /api/artifacts/{id}/model-signature/`
serves the bundle and `GET /api/artifacts/model-signing-key/` the public key, so anyone holding the
artifact's files can run `model_signing verify key`. The key is an EC P-256 key (model_signing signs
with elliptic-curve keys only, so the Ed25519 system key cannot serve): SAFESHRINK["MODEL_SIGNING_KEY"]
when configured, else `model-signing.key.pem` beside the system key; created on first use, like the
embedded default's other keys, when there is none. A folder is signed once: an artifact that already
carries SafeShrink's signature (a task delivered twice, the same bytes produced again) is not signed again.

**Checking.** A folder registered, imported or uploaded with a model-signing signature at its top level
(`model.sig`, the CLI's default name) is verified against the public keys of the user who registers it,
and the result (`signature_status` verified or failed, the key, the reason, when) is recorded on the
artifact with an `artifact.signature_checked` ledger event in the same transaction. A signature that does
not verify is recorded as failed, not refused: the bytes are what they are, and saying so is the point.
`model.sig` stays one of the artifact's files (its manifest and digest include it: the artifact is
exactly the bytes that arrived), and model_signing leaves it out of what it hashes, so both SafeShrink's
check and the CLI's hold on the stored folder.

The public keys come from the apps above this one (the layers forbid importing them): an app registers a
source with `register_public_key_source` (tracking: the engineer keys a user registered).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compression.models import ModelArtifact, SignatureStatus
from ledger.services import ledger_append
from trust.model_signing import (
    SIGNATURE_FILE,
    ModelSignatureResult,
    ensure_ec_key,
    key_fingerprint,
    public_pem_of,
    sign_model,
    verify_model,
)

if TYPE_CHECKING:  # artifacts.py calls this module: no import back at run time
    from .artifacts import StoredArtifact

__all__ = [
    "SIGNATURE_FILE",
    "register_public_key_source",
    "public_keys_of",
    "model_signing_key_path",
    "model_signing_public_key",
    "system_signature_prepare",
    "system_signature_record",
    "carried_signature_check",
    "carried_signature_record",
]

# (key_id, PEM) pairs of the public keys a user vouches for, by source name.
PublicKeySource = Callable[[Any], Sequence[tuple[str, str]]]
_KEY_SOURCES: dict[str, PublicKeySource] = {}


def register_public_key_source(name: str, source: PublicKeySource) -> None:
    """Make `source(user)` part of the keys an uploaded signature is checked against (again: replaced)."""
    _KEY_SOURCES[name] = source


def public_keys_of(user) -> list[tuple[str, str]]:
    if user is None:
        return []
    return [pair for _, source in sorted(_KEY_SOURCES.items()) for pair in source(user)]


def _store() -> Path:
    """The artifact store (compression.services.artifacts.artifact_root, without importing it back)."""
    return Path(settings.SAFESHRINK["ARTIFACT_ROOT"])


def model_signing_key_path() -> Path:
    """SafeShrink's model-signing private key (EC P-256 PEM), created here if there is none yet."""
    conf = settings.SAFESHRINK
    configured = conf.get("MODEL_SIGNING_KEY")
    path = Path(configured) if configured else Path(conf["SYSTEM_KEY"]).parent / "model-signing.key.pem"
    return ensure_ec_key(path)


def model_signing_public_key() -> str:
    return public_pem_of(model_signing_key_path())


def system_signature_prepare(digest: str) -> dict | None:
    """Sign the stored folder of `digest` (no database writes, no transaction: call before the one that
    records the artifact). None when the artifact already carries SafeShrink's signature."""
    if ModelArtifact.objects.filter(digest=digest, system_signature__isnull=False).exists():
        return None
    key = model_signing_key_path()
    scratch = _store() / "tmp" / f"sign-{uuid.uuid4().hex}"  # outside the folder signed
    scratch.mkdir(parents=True)
    try:
        return sign_model(_store() / digest, key, scratch / SIGNATURE_FILE)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def system_signature_record(artifact: ModelArtifact, bundle: dict | None) -> None:
    """Keep `bundle` as the artifact's signature unless it has one already; inside the caller's transaction."""
    if bundle is None:
        return
    fingerprint = key_fingerprint(model_signing_public_key())
    now = timezone.now()
    signed = ModelArtifact.objects.filter(pk=artifact.pk, system_signature__isnull=True).update(
        system_signature=bundle, system_signature_key=fingerprint, system_signed_at=now
    )
    if not signed:
        return
    artifact.system_signature, artifact.system_signature_key, artifact.system_signed_at = bundle, fingerprint, now
    ledger_append(
        actor=None,
        action="artifact.signed",
        object_type="artifact",
        object_id=artifact.pk,
        payload={"digest": artifact.digest, "format": "model-signing key (OpenSSF)", "key": fingerprint},
    )


def carried_signature_check(stored: StoredArtifact, actor) -> ModelSignatureResult | None:
    """Verify the `model.sig` a stored folder carries against the actor's registered keys (this hashes the
    folder again; no transaction open). None when it carries none."""
    if not any(entry["path"] == SIGNATURE_FILE for entry in stored.files):
        return None
    folder = _store() / stored.digest
    keys = public_keys_of(actor)
    result = verify_model(folder, folder / SIGNATURE_FILE, keys)
    if not keys:
        return ModelSignatureResult(False, "the registering user has no registered public key: " + result.reason)
    return result


def carried_signature_record(artifact: ModelArtifact, result: ModelSignatureResult | None, actor) -> None:
    """Record a check on the artifact and in the ledger (inside the caller's transaction). A verified
    result stands: a later registration of the same bytes by someone without the key does not undo it."""
    if result is None:
        return
    with transaction.atomic():
        locked = ModelArtifact.objects.select_for_update().get(pk=artifact.pk)
        if locked.signature_status == SignatureStatus.VERIFIED:
            return
        status = SignatureStatus.VERIFIED if result.verified else SignatureStatus.FAILED
        fields = {
            "signature_status": status,
            "signature_key_id": result.key_id,
            "signature_reason": result.reason,
            "signature_checked_at": timezone.now(),
        }
        ModelArtifact.objects.filter(pk=artifact.pk).update(**fields)
        for name, value in fields.items():
            setattr(artifact, name, value)
        ledger_append(
            actor=actor,
            action="artifact.signature_checked",
            object_type="artifact",
            object_id=artifact.pk,
            payload={
                "digest": artifact.digest,
                "signature_file": SIGNATURE_FILE,
                "status": str(status),
                "key_id": result.key_id,
                "key_fingerprint": result.fingerprint,
                "unsigned_files": list(result.unsigned_files),
                "reason": result.reason,
            },
        )
