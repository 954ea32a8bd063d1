"""MLflow's proxied artifact routes (/mlflow/api/2.0/mlflow-artifacts/artifacts/...), which `log_artifact(s)`,
`list_artifacts` and `download_artifacts` use for a run whose artifact URI is
`mlflow-artifacts:/<experiment>/<run_id>/artifacts`, and the tracking API's `artifacts/list`."""

from __future__ import annotations

import re

from django.http import FileResponse

from accounts.errors import NotFound
from tracking.services.registry import parse_logged_model_id
from tracking.services.run_artifacts import (
    artifact_relative_path,
    run_artifact_file,
    run_artifact_list,
    run_artifact_put,
    run_for_reading,
)

from .protocol import artifact_uri, endpoint, required_str

_RUN_PATH = re.compile(r"^(?P<exp>\d+)/(?P<run>[0-9a-f]{32})/artifacts(?:/(?P<path>.*))?$")
# A logged model offered for a run's folder (tracking.mlflow.registry) holds no files of its own.
_MODEL_PATH = re.compile(r"^(?P<exp>\d+)/models/(?P<model>m-[0-9a-f]+-[0-9a-f]+)/artifacts(?:/.*)?$")


def _split(path: str) -> tuple[str, str, str]:
    """(experiment id, run uuid, path under the run's artifacts) of an mlflow-artifacts path, or 404."""
    match = _RUN_PATH.match(path or "")
    if match is None:
        raise NotFound(f"No run artifact location {path[:200]!r}: expected <experiment>/<run_id>/artifacts/<path>.")
    return match["exp"], match["run"], match["path"] or ""


def _run(user, exp: str, run_uuid: str):
    run = run_for_reading(user, run_uuid)
    if str(run.experiment_id) != exp:
        raise NotFound(f"Run {run_uuid} is not in experiment {exp}.")
    return run


def _files(run, folder: str) -> list[dict]:
    entries = run_artifact_list(run, folder)
    prefix = folder + "/" if folder else ""
    out = []
    for entry in entries:
        name = entry.path[len(prefix) :] if entry.path.startswith(prefix) else entry.path.rsplit("/", 1)[-1]
        item = {"path": name, "is_dir": entry.is_dir}
        if entry.size is not None:
            item["file_size"] = entry.size
        out.append(item)
    return out


@endpoint("GET", "PUT", body=False)
def artifact_file(request, user, data, path: str):
    """PUT stores one file (streamed); GET downloads it."""
    exp, run_uuid, relative = _split(path)
    if request.method == "PUT":
        run_for_reading(user, run_uuid)  # who before what: an unknown run is 404 before the path is looked at
        length = request.META.get("CONTENT_LENGTH")
        run_artifact_put(
            actor=user,
            run_uuid=run_uuid,
            path=relative,
            stream=request,
            length=int(length) if length and length.isdigit() else None,
        )
        return {}
    run = _run(user, exp, run_uuid)
    return FileResponse(open(run_artifact_file(run, relative), "rb"), content_type="application/octet-stream")


@endpoint("GET")
def artifact_list(request, user, data):
    """The proxied listing: `path` is <experiment>/<run_id>/artifacts[/<folder>]; entries relative to the folder."""
    model = _MODEL_PATH.match(data.get("path", ""))
    if model is not None:
        parsed = parse_logged_model_id(model["model"])
        if parsed is None:
            raise NotFound(f"No logged model {model['model']!r}.")
        _run(user, model["exp"], parsed[0])
        return {"files": []}
    exp, run_uuid, folder = _split(data.get("path", ""))
    folder = artifact_relative_path(folder.rstrip("/"), allow_empty=True)
    return {"files": _files(_run(user, exp, run_uuid), folder)}


@endpoint("GET")
def run_artifacts_list(request, user, data):
    """The tracking API's listing (`artifacts/list?run_id=&path=`): paths relative to the run's root."""
    run = run_for_reading(user, required_str(data, "run_id", "run_uuid"))
    folder = artifact_relative_path((data.get("path") or "").rstrip("/"), allow_empty=True)
    files = [
        {"path": e.path, "is_dir": e.is_dir, **({"file_size": e.size} if e.size is not None else {})}
        for e in run_artifact_list(run, folder)
    ]
    return {"root_uri": artifact_uri(run), "files": files}
