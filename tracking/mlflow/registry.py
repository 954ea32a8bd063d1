"""MLflow's model registry routes that `mlflow.register_model` uses, and the logged-model search through which
the client finds a run's model folder when it holds no MLmodel file (tracking.services.registry)."""

from __future__ import annotations

import json
import re

from accounts.errors import NotFound, ValidationFailed
from tracking.models import RegisteredModel, RegisteredModelVersion, RunArtifactFile
from tracking.selectors import external_runs_visible_to
from tracking.services.mlflow_runs import datetime_to_ms, parse_id
from tracking.services.registry import (
    logged_model_id,
    model_version_create,
    model_version_get,
    parse_logged_model_id,
    registered_model_create,
    registered_model_get,
)
from tracking.services.run_artifacts import run_for_reading

from .protocol import endpoint, next_token, page_bounds

MAX_LOGGED_MODELS = 100


def _model_json(model: RegisteredModel) -> dict:
    return {
        "name": model.name,
        "creation_timestamp": datetime_to_ms(model.created_at),
        "last_updated_timestamp": datetime_to_ms(model.updated_at),
        "description": model.description,
        "user_id": model.owner.username,
    }


def _version_json(version: RegisteredModelVersion) -> dict:
    created = datetime_to_ms(version.created_at)
    return {
        "name": version.registered_model.name,
        "version": str(version.version),
        "creation_timestamp": created,
        "last_updated_timestamp": created,
        "user_id": version.created_by.username,
        "current_stage": "None",
        "description": "",
        "source": version.source,
        "run_id": version.run.run_uuid,
        "status": "READY",
        "tags": [
            {"key": "safeshrink.artifact_id", "value": str(version.artifact_id)},
            {"key": "safeshrink.artifact_digest", "value": version.artifact.digest},
        ],
    }


@endpoint("POST")
def registered_model_create_view(request, user, data):
    return {
        "registered_model": _model_json(
            registered_model_create(actor=user, name=data.get("name"), description=data.get("description", ""))
        )
    }


@endpoint("GET")
def registered_model_get_view(request, user, data):
    return {"registered_model": _model_json(registered_model_get(user, data.get("name")))}


@endpoint("POST")
def model_version_create_view(request, user, data):
    version = model_version_create(
        actor=user,
        name=data.get("name"),
        source=data.get("source"),
        run_id=data.get("run_id"),
        model_id=data.get("model_id"),
    )
    return {"model_version": _version_json(version)}


@endpoint("GET")
def model_version_get_view(request, user, data):
    return {"model_version": _version_json(model_version_get(user, data.get("name"), data.get("version")))}


@endpoint("POST")
def logged_models_search(request, user, data):
    """A run's top-level folder of logged files, offered as a logged model named after the folder, so that
    `register_model("runs:/<id>/<folder>")` works for a folder without an MLmodel file. Filters: `name = '<x>'`."""
    ids = data.get("experiment_ids") or []
    experiment_ids = [parse_id(i, "experiment_ids") for i in (ids if isinstance(ids, list) else [ids])]
    offset, limit = page_bounds(data, MAX_LOGGED_MODELS, MAX_LOGGED_MODELS)
    name = _name_filter(data.get("filter"))
    runs = external_runs_visible_to(user).filter(experiment_id__in=experiment_ids)
    files = RunArtifactFile.objects.filter(run__in=runs.values("pk"))
    if name is not None:
        files = files.filter(path__startswith=name + "/")
    seen: dict[tuple[int, str], object] = {}
    for file in files.select_related("run", "run__recorded_by").order_by("run_id", "path"):
        folder = name if name is not None else file.path.split("/", 1)[0]
        if name is None and "/" not in file.path:
            continue
        seen.setdefault((file.run_id, folder), file.run)
    items = list(seen.items())[offset : offset + limit + 1]
    token = next_token(offset, limit, len(items))
    models = []
    models = [_logged_model(run, folder) for (_, folder), run in items[:limit]]
    return {"models": models, **({"next_page_token": token} if token else {})}


@endpoint("GET")
def logged_model_get(request, user, data, model_id: str):
    parsed = parse_logged_model_id(model_id)
    run = run_for_reading(user, parsed[0]) if parsed else None
    if run is None or not RunArtifactFile.objects.filter(run=run, path__startswith=parsed[1] + "/").exists():
        raise NotFound(f"No logged model {model_id!r}.")
    return {"model": _logged_model(run, parsed[1])}


MODEL_VERSIONS_TAG = "mlflow.modelVersions"


@endpoint("PATCH", body=True)
def logged_model_set_tags(request, user, data, model_id: str):
    """The client records the versions made from a logged model in its `mlflow.modelVersions` tag; SafeShrink
    derives that tag from its registered versions, so this accepts it and stores nothing. Other tags are refused."""
    parsed = parse_logged_model_id(model_id)
    run = run_for_reading(user, parsed[0]) if parsed else None
    if run is None:
        raise NotFound(f"No logged model {model_id!r}.")
    tags = data.get("tags") or []
    other = [t.get("key") for t in tags if not isinstance(t, dict) or t.get("key") != MODEL_VERSIONS_TAG]
    if other:
        raise ValidationFailed(
            f"Logged-model tags other than {MODEL_VERSIONS_TAG} are not supported.",
            details={"tags": [f"Unsupported: {', '.join(map(str, other[:10]))}."]},
        )
    return {}


def _logged_model(run, folder: str) -> dict:
    started = datetime_to_ms(run.started_at)
    versions = [
        {"name": n, "version": str(v)}
        for n, v in RegisteredModelVersion.objects.filter(run=run, artifact_path=folder)
        .order_by("id")
        .values_list("registered_model__name", "version")
    ]
    model_id = logged_model_id(run.run_uuid, folder)
    return {
        "info": {
            "model_id": model_id,
            "experiment_id": str(run.experiment_id),
            "name": folder,
            # Its files are the run's (listed under the run); its own location holds none, so that the client's
            # listing of the run's folder (run files + logged-model files) does not show each file twice.
            "artifact_uri": f"mlflow-artifacts:/{run.experiment_id}/models/{model_id}/artifacts",
            "creation_timestamp_ms": started,
            "last_updated_timestamp_ms": started,
            "source_run_id": run.run_uuid,
            "status": "LOGGED_MODEL_READY",
            "tags": [{"key": MODEL_VERSIONS_TAG, "value": json.dumps(versions)}] if versions else [],
        },
        "data": {},
    }


def _name_filter(text):
    if not text:
        return None
    match = re.fullmatch(r"\s*name\s*=\s*'((?:[^']|'')*)'\s*", text) if isinstance(text, str) else None
    if match is None:
        raise ValidationFailed("Unsupported logged-model filter.", details={"filter": ["Only name = '<name>'."]})
    return match[1].replace("''", "'")
