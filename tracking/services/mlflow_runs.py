"""The MLflow tracking protocol's writes, mapped onto SafeShrink's experiments and external runs.

- An MLflow experiment is a SafeShrink experiment (compression.models.Experiment), found by name among the
  engineer's own. SafeShrink's experiment needs a base artifact and unsafe labels, which MLflow's
  `create_experiment` does not carry: creating one through MLflow takes them from the experiment tags
  `safeshrink.base_artifact` (artifact id or digest) and `safeshrink.unsafe_labels` (comma-separated), else it is
  refused naming those tags. `set_experiment(name)` for an experiment created in SafeShrink just finds it.
- An MLflow run is an ExternalRun (its `run_uuid` is MLflow's run id; run_name is its name). The run's `method`
  comes from the tag `safeshrink.method` at creation, else DEFAULT_METHOD; `safeshrink.known_method` names the
  SafeShrink method it corresponds to. MLflow's source tags fill `code_reference` when they fit.
- Logging goes through tracking.services.runs.external_run_log (one all-or-nothing batch, one ledger event).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from accounts.errors import NotFound, ValidationFailed
from compression.models import Experiment
from compression.selectors import artifacts_visible_to, experiments_visible_to
from compression.services.experiments import experiment_create
from tracking.error_codes import TrackingErrorCode
from tracking.models import ExternalRun

from .batch import INT64_MAX, integer_in
from .run_artifacts import run_for_reading
from .runs import CODE_REFERENCE_FIELDS, external_run_create, external_run_finish, run_for_writing

DEFAULT_METHOD = "reported via MLflow"
METHOD_TAG, KNOWN_METHOD_TAG = "safeshrink.method", "safeshrink.known_method"
BASE_ARTIFACT_TAG, UNSAFE_LABELS_TAG, RISK_TIER_TAG = (
    "safeshrink.base_artifact",
    "safeshrink.unsafe_labels",
    "safeshrink.risk_tier",
)
# MLflow's source tags -> code_reference fields.
SOURCE_TAGS = {"mlflow.source.git.repoURL": "url", "mlflow.source.git.commit": "commit", "mlflow.source.name": "path"}
MAX_EXPERIMENT_NAME = 200


def experiment_by_name(actor, name: Any) -> Experiment:
    """The actor's experiment of that name (the newest when several), else one they may see; 404 otherwise."""
    if not isinstance(name, str) or not name:
        raise ValidationFailed("experiment_name is required.", details={"experiment_name": ["A non-empty string."]})
    visible = experiments_visible_to(actor).filter(name=name)
    experiment = visible.filter(owner=actor).order_by("-created_at", "-id").first()
    experiment = experiment or visible.order_by("-created_at", "-id").first()
    if experiment is None:
        raise NotFound(f"No experiment named {name!r}.")
    return experiment


def experiment_by_id(actor, experiment_id: Any) -> Experiment:
    pk = parse_id(experiment_id, "experiment_id")
    experiment = experiments_visible_to(actor).filter(pk=pk).first()
    if experiment is None:
        raise NotFound(f"No experiment {experiment_id!r}.")
    return experiment


def parse_id(value: Any, field: str) -> int:
    """An MLflow id (a string of digits, or a number) as a positive int, or 400 naming the field."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    checked = integer_in(value, 1, INT64_MAX) if value is not None else "This field is required."
    if isinstance(checked, str):
        raise ValidationFailed(f"{field} is not a valid id: {checked}", details={field: [checked]})
    return checked


def mlflow_experiment_create(*, actor, name: Any, tags: Mapping[str, str]) -> Experiment:
    """Create a SafeShrink experiment for MLflow's create_experiment (see the module docstring)."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_EXPERIMENT_NAME:
        raise ValidationFailed(
            "An experiment needs a name.", details={"name": [f"A non-empty string of at most {MAX_EXPERIMENT_NAME}."]}
        )
    if experiments_visible_to(actor).filter(name=name, owner=actor).exists():
        raise ValidationFailed(
            f"You already have an experiment named {name!r}.",
            code=TrackingErrorCode.EXPERIMENT_EXISTS,
            details={"name": ["Already exists."]},
        )
    missing = [t for t in (BASE_ARTIFACT_TAG, UNSAFE_LABELS_TAG) if not tags.get(t)]
    if missing:
        raise ValidationFailed(
            f"A SafeShrink experiment needs a base model and its unsafe labels: create it in SafeShrink, or pass the "
            f"experiment tags {', '.join(missing)} (base artifact id or digest; comma-separated labels).",
            details={f"tags.{t}": ["Required to create an experiment through MLflow."] for t in missing},
        )
    reference = tags[BASE_ARTIFACT_TAG].strip()
    artifacts = artifacts_visible_to(actor)
    base = (
        artifacts.filter(pk=int(reference)).first()
        if reference.isdigit()
        else artifacts.filter(digest=reference).first()
    )
    if base is None:
        raise ValidationFailed(
            "Unknown base artifact.", details={f"tags.{BASE_ARTIFACT_TAG}": [f"No artifact {reference!r}."]}
        )
    labels = [label.strip() for label in tags[UNSAFE_LABELS_TAG].split(",") if label.strip()]
    if tags.get(RISK_TIER_TAG):
        return experiment_create(
            actor=actor, name=name, base_artifact_id=base.pk, unsafe_labels=labels, risk_tier=tags[RISK_TIER_TAG]
        )
    return experiment_create(actor=actor, name=name, base_artifact_id=base.pk, unsafe_labels=labels)


def mlflow_run_create(
    *, actor, experiment_id: Any, start_time: Any = None, tags: Mapping[str, str], run_name: Any = ""
) -> ExternalRun:
    """MLflow's create_run: an ExternalRun in one of the actor's experiments, with its tags."""
    pk = parse_id(experiment_id, "experiment_id")
    started = ms_to_datetime(start_time, "start_time") if start_time not in (None, 0) else None
    name = run_name or tags.get("mlflow.runName") or ""
    code_reference = {
        field: tags[tag]
        for tag, field in SOURCE_TAGS.items()
        if isinstance(tags.get(tag), str) and tags[tag] and len(tags[tag]) <= CODE_REFERENCE_FIELDS[field]
    }
    return external_run_create(
        actor=actor,
        experiment_id=pk,
        method=tags.get(METHOD_TAG) or DEFAULT_METHOD,
        known_method=tags.get(KNOWN_METHOD_TAG) or "",
        name=name,
        code_reference=code_reference,
        tags=dict(tags),
        started_at=started,
    )


def mlflow_run_update(*, actor, run_uuid: str, status: Any = None, end_time: Any = None, run_name: Any = None):
    """MLflow's update_run: ending the run (FINISHED, FAILED, KILLED) finishes it. A rename is refused (a run's
    name is part of what it reports); sending its current name, or RUNNING for a running run, changes nothing."""
    run = run_for_reading(actor, run_uuid)
    if run_name not in (None, "") and run_name != run.name:
        raise ValidationFailed(
            "Renaming an external run is not supported.",
            details={"run_name": ["A run keeps the name it started with."]},
        )
    if status in (None, "", "RUNNING", "SCHEDULED"):
        run_for_writing(actor, run.pk, lock=False)
        return run
    ended = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}.get(status)
    if ended is None:
        raise ValidationFailed(
            f"Unknown run status {status!r}.", details={"status": ["One of RUNNING, FINISHED, FAILED, KILLED."]}
        )
    ended_at = ms_to_datetime(end_time, "end_time") if end_time not in (None, 0) else None
    if ended_at is not None and ended_at < run.started_at:
        ended_at = run.started_at  # clocks of two machines: never before the recorded start
    return external_run_finish(actor=actor, run_uuid=run.run_uuid, status=ended, ended_at=ended_at)


def ms_to_datetime(value: Any, field: str) -> dt.datetime:
    checked = integer_in(value, 0, 253402300799999)  # up to 9999-12-31
    if isinstance(checked, str):
        raise ValidationFailed(f"{field} is not a time in milliseconds: {checked}", details={field: [checked]})
    return dt.datetime.fromtimestamp(checked / 1000, tz=dt.UTC)


def datetime_to_ms(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
