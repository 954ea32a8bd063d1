"""MLflow's model registry, as far as `mlflow.register_model("runs:/<run_id>/model", name)` needs it.

A registered model is a name in the engineer's own namespace. A version of it is made from a folder of a run's
logged artifact files: the folder is copied into SafeShrink's content-addressed store (compression's
artifact_store), and every file of the copy must hash to the sha256 recorded when it was uploaded, and the copy
must hold exactly the recorded files, else nothing is registered (409 `artifact_mismatch`). The result is an
ordinary ModelArtifact (so it may become a release candidate), made the run's output artifact when the run names
none yet, with the run's contents digest rewritten and said so in the `external_run.model_registered` event.

The model folder is named by the version's source: `runs:/<run_id>/<path>`, the run's artifact URI
(`mlflow-artifacts:/<experiment>/<run_id>/artifacts/<path>`), or `models:/<model_id>` for the logged model the
MLflow client finds through `search_logged_models` (tracking.mlflow: a run's top folder of files is offered as a
logged model whose id is `m-<run_id>-<hex of the folder path>`).
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from compression.services.artifacts import artifact_ingest, artifact_store
from ledger.services import ledger_append
from tracking.error_codes import TrackingErrorCode
from tracking.models import MAX_NAME_LENGTH, ExternalRun, RegisteredModel, RegisteredModelVersion, RunArtifactFile
from tracking.selectors import run_contents_digest

from .run_artifacts import artifact_relative_path, run_artifact_dir, run_for_reading
from .runs import OBJECT_TYPE, WRITER_ROLES, run_for_writing

_RUNS_URI = re.compile(r"^runs:/(?P<run>[0-9a-f]{32})(?:/(?P<path>.*))?$")
_ARTIFACTS_URI = re.compile(
    r"^mlflow-artifacts:(?://[^/]*)?/+(?P<exp>\d+)/(?P<run>[0-9a-f]{32})/artifacts(?:/(?P<path>.*))?$"
)
_MODEL_ID = re.compile(r"^m-(?P<run>[0-9a-f]{32})-(?P<hex>(?:[0-9a-f]{2})+)$")
_MODELS_URI = re.compile(r"^models:/(?P<id>m-[0-9a-f]+-[0-9a-f]+)$")


def logged_model_id(run_uuid: str, folder: str) -> str:
    return f"m-{run_uuid}-{folder.encode().hex()}"


def parse_logged_model_id(model_id: Any) -> tuple[str, str] | None:
    match = _MODEL_ID.match(model_id) if isinstance(model_id, str) else None
    if match is None:
        return None
    try:
        return match["run"], bytes.fromhex(match["hex"]).decode()
    except UnicodeDecodeError:
        return None


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed("A registered model needs a name.", details={"name": [f"1 to {MAX_NAME_LENGTH} chars."]})
    return name


def registered_model_get(actor, name: Any) -> RegisteredModel:
    model = RegisteredModel.objects.filter(owner=actor, name=_name(name)).first()
    if model is None:
        raise NotFound(f"No registered model named {name!r}.")
    return model


def registered_model_create(*, actor, name: Any, description: Any = "") -> RegisteredModel:
    if actor.role not in WRITER_ROLES:
        raise PermissionDenied("Only engineers register models.")
    name = _name(name)
    description = description if isinstance(description, str) else ""
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.create(owner=actor, name=name, description=description)
            ledger_append(
                actor=actor,
                action="registered_model.created",
                object_type="registered_model",
                object_id=model.pk,
                payload={"name": name},
            )
    except IntegrityError:
        raise ValidationFailed(
            f"Registered model {name!r} already exists.",
            code=TrackingErrorCode.MODEL_EXISTS,
            details={"name": ["Already exists."]},
        ) from None
    return model


def model_source(source: Any, run_id: Any = None, model_id: Any = None) -> tuple[str, str]:
    """(run_uuid, folder) named by a model version's source (see the module docstring), or 400 naming `source`."""
    if isinstance(model_id, str) and model_id:
        parsed = parse_logged_model_id(model_id)
        if parsed is None:
            raise NotFound(f"No logged model {model_id!r}.")
        return parsed
    if not isinstance(source, str) or not source:
        raise ValidationFailed("source is required.", details={"source": ["The model's URI (runs:/<run_id>/<path>)."]})
    if match := _RUNS_URI.match(source) or _ARTIFACTS_URI.match(source):
        run, path = match["run"], match["path"] or ""
    elif match := _MODELS_URI.match(source):
        parsed = parse_logged_model_id(match["id"])
        if parsed is None:
            raise NotFound(f"No logged model {match['id']!r}.")
        run, path = parsed
    else:
        raise ValidationFailed(
            f"Unsupported model source {source[:200]!r}.",
            details={"source": ["runs:/<run_id>/<path>, the run's mlflow-artifacts URI, or models:/<model_id>."]},
        )
    if isinstance(run_id, str) and run_id and run_id != run:
        raise ValidationFailed("run_id does not match the source.", details={"run_id": [f"The source names {run}."]})
    return run, artifact_relative_path(path.rstrip("/"))


def model_version_create(*, actor, name: Any, source: Any, run_id: Any = None, model_id: Any = None):
    """A new version of the actor's registered model `name`, made from a run's logged folder (module docstring)."""
    model = registered_model_get(actor, name)
    run_uuid, folder = model_source(source, run_id, model_id)
    run = run_for_reading(actor, run_uuid)
    run_for_writing(actor, run.pk, lock=False)  # only the run's owner registers its model
    recorded = dict(
        RunArtifactFile.objects.filter(run=run, path__startswith=folder + "/").values_list("path", "sha256")
    )
    if not recorded:
        raise NotFound(f"Run {run_uuid} has no logged files under {folder!r}.")
    directory = run_artifact_dir(run) / folder
    stored = artifact_store(directory, label=f"runs:/{run_uuid}/{folder}")
    in_store = {f"{folder}/{entry['path']}": entry["sha256"] for entry in stored.files}
    if in_store != recorded:
        differ = sorted(set(in_store) ^ set(recorded) | {p for p in in_store if recorded.get(p) != in_store[p]})
        raise Conflict(
            f"The files of {folder!r} do not match the digests recorded when they were logged: "
            f"{', '.join(differ[:10])}. Nothing was registered.",
            code=TrackingErrorCode.ARTIFACT_MISMATCH,
            details={"source": [f"{p}: changed, missing or never logged." for p in differ[:20]]},
        )
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        run = ExternalRun.objects.select_for_update().get(pk=run.pk)
        number = (model.versions.aggregate(n=Max("version"))["n"] or 0) + 1
        artifact, _ = artifact_ingest(stored=stored, name=f"{model.name} v{number}", actor=actor)
        version = RegisteredModelVersion.objects.create(
            registered_model=model,
            version=number,
            run=run,
            artifact_path=folder,
            artifact=artifact,
            source=source if isinstance(source, str) else f"models:/{model_id}",
            created_by=actor,
        )
        became_output = run.output_artifact_id is None
        if became_output:
            run.output_artifact = artifact
            update = ["output_artifact"]
            if run.contents_digest:  # an ended run's digest covers its output artifact: rewritten, and said so
                run.contents_digest = run_contents_digest(run)
                update.append("contents_digest")
            run.save(update_fields=update)
        model.save(update_fields=["updated_at"])
        ledger_append(
            actor=actor,
            action="external_run.model_registered",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={
                "run_uuid": run.run_uuid,
                "registered_model": model.name,
                "version": number,
                "folder": folder,
                "artifact": artifact.digest,
                "artifact_id": artifact.pk,
                "files": len(stored.files),
                "output_artifact": run.output_artifact.digest if run.output_artifact else None,
                "became_output_artifact": became_output,
                "contents_digest": run.contents_digest or None,
            },
        )
    return version


def model_version_get(actor, name: Any, version: Any) -> RegisteredModelVersion:
    model = registered_model_get(actor, name)
    number = int(version) if isinstance(version, str) and version.isdigit() else version
    found = None
    if isinstance(number, int) and not isinstance(number, bool):
        found = model.versions.select_related("run", "artifact", "registered_model").filter(version=number).first()
    if found is None:
        raise NotFound(f"Registered model {model.name!r} has no version {version!r}.")
    return found
