"""Recording external runs: create one, log params/metrics/tags to it in batches, finish it.

Every write is one transaction with one ledger event: a logging request is one `external_run.logged` event
carrying the counts and the digest of exactly what it added (not one event per metric). Only the owner of the
run's experiment may write to it; a run outside the actor's scope is 404, one they may see but not write (an
admin's view of another engineer's run) 403. Checks run who-before-what: scope and ownership, then the input
(400, naming the field), then the run's state (409). A refused request stores nothing.

These services are the one way in for both the REST API (tracking.api) and, later, the MLflow protocol layer
(issue 13 item 3): the MLflow run id is `ExternalRun.run_uuid`, `log_batch` is `external_run_log`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from accounts.models import Role
from compression.engine.methods import SUPPORTED_METHODS
from compression.models import ModelArtifact
from compression.selectors import artifacts_visible_to, experiments_visible_to
from ledger.services import ledger_append
from tracking.error_codes import TrackingErrorCode
from tracking.models import (
    ENDED_STATUSES,
    MAX_METHOD_LENGTH,
    MAX_NAME_LENGTH,
    ExternalRun,
    ExternalRunParam,
    ExternalRunTag,
)
from tracking.selectors import external_runs_visible_to, run_contents_digest, run_record
from trust.canonical import canonical_json, digest

from .batch import INT64_MAX, INT64_MIN, MISSING, integer_in, parse_batch, parse_tags
from .metric_copy import insert_metrics

OBJECT_TYPE = "external_run"
MAX_JSON_BYTES = 64 * 1024  # each free-form JSON field (parameters, hardware), as canonical JSON
MAX_SEEDS = 100
MAX_INPUT_ARTIFACTS = 100
MAX_TOOLS = 100
MAX_TOOL_NAME, MAX_TOOL_VERSION = 100, 200
CODE_REFERENCE_FIELDS = {"url": 2000, "commit": 100, "path": 500}
WRITER_ROLES = (Role.ENGINEER, Role.ADMIN)


@dataclass(frozen=True)
class LogResult:
    """What one logging request added: counts, and the digest recorded in its ledger event (None: nothing new)."""

    run: ExternalRun
    params_added: int
    metrics_added: int
    tags_set: int
    digest: str | None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def external_run_create(
    *,
    actor,
    experiment_id: int,
    method: str,
    known_method: str | None = "",
    name: str = "",
    parameters: Any = None,
    code_reference: Any = None,
    tool_versions: Any = None,
    hardware: Any = None,
    seeds: Any = None,
    tags: Any = None,
    input_artifact_ids: Iterable[int] = (),
    output_artifact_id: int | None = None,
    started_at: dt.datetime | None = None,
) -> ExternalRun:
    """Record a run done elsewhere, in one of the actor's experiments. It starts `running`."""
    if actor.role not in WRITER_ROLES:
        raise PermissionDenied("Only engineers record external runs.")
    experiment = experiments_visible_to(actor).filter(pk=experiment_id).first()
    if experiment is None:  # another engineer's experiment is "unknown", as for artifacts
        raise ValidationFailed("Unknown experiment.", details={"experiment": [f"No experiment {experiment_id}."]})
    if experiment.owner_id != actor.pk:
        raise PermissionDenied("Only the experiment's owner records external runs in it.")
    fields = {
        "method": _text(method, "method", MAX_METHOD_LENGTH, required=True),
        "known_method": _known_method(known_method),
        "name": _text(name, "name", MAX_NAME_LENGTH),
        "parameters": _json_object(parameters, "parameters"),
        "code_reference": _code_reference(code_reference),
        "tool_versions": _tool_versions(tool_versions),
        "hardware": _json_object(hardware, "hardware"),
        "seeds": _seeds(seeds),
    }
    tag_values = parse_tags(tags)
    inputs = _input_artifacts(actor, input_artifact_ids)
    output = _artifact(actor, output_artifact_id, "output_artifact") if output_artifact_id is not None else None
    started = _moment(started_at, "started_at") if started_at is not None else timezone.now()
    with transaction.atomic():
        run = ExternalRun.objects.create(
            experiment=experiment, recorded_by=actor, output_artifact=output, started_at=started, **fields
        )
        run.input_artifacts.set(inputs)
        ExternalRunTag.objects.bulk_create([ExternalRunTag(run=run, key=k, value=v) for k, v in tag_values.items()])
        record = run_record(run)
        ledger_append(
            actor=actor,
            action="external_run.created",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={
                "run_uuid": run.run_uuid,
                "experiment": experiment.pk,
                "method": run.method,
                "known_method": run.known_method,
                "input_artifacts": record["input_artifacts"],
                "output_artifact": record["output_artifact"],
                "tags": len(tag_values),
                "record_digest": digest({"record": record, "tags": sorted(map(list, tag_values.items()))}),
                "source": ExternalRun.SOURCE,
                "verification": ExternalRun.VERIFICATION,
            },
        )
    return run


def external_run_log(
    *,
    actor,
    run_id: int | None = None,
    run_uuid: str | None = None,
    params: Any = MISSING,
    metrics: Any = MISSING,
    tags: Any = MISSING,
    proto_json: bool = False,
) -> LogResult:
    """Log params, metrics and tags in one all-or-nothing batch (MLflow's log_batch). A param already on the run
    with the same value is accepted and not added again; with another value the batch is refused (400
    `param_changed`). A tag's new value replaces the old one. Metrics are inserted in bulk. A request that adds
    nothing records nothing. A list left out is MISSING; one sent as null is refused. The run is named by its
    id or (the MLflow protocol) its `run_uuid`."""
    received_ms = now_ms()
    with transaction.atomic():
        run = run_for_writing(actor, run_id, run_uuid=run_uuid)
        batch = parse_batch(params=params, metrics=metrics, tags=tags, now_ms=received_ms, proto_json=proto_json)
        _expect_running(run)
        new_params = _new_params(run, batch.params, params)
        if not (new_params or batch.metrics or batch.tags):
            return LogResult(run, 0, 0, 0, None)
        ExternalRunParam.objects.bulk_create([ExternalRunParam(run=run, key=k, value=v) for k, v in new_params])
        if batch.tags:
            ExternalRunTag.objects.bulk_create(
                [ExternalRunTag(run=run, key=k, value=v) for k, v in batch.tags],
                update_conflicts=True,
                unique_fields=["run", "key"],
                update_fields=["value"],
            )
        if batch.metrics:
            insert_metrics(run.pk, batch.metrics)
        added = {
            "params": [list(p) for p in new_params],
            "metrics": [list(m) for m in batch.metrics],
            "tags": [list(t) for t in batch.tags],
        }
        added_digest = digest(added)
        ledger_append(
            actor=actor,
            action="external_run.logged",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={
                "run_uuid": run.run_uuid,
                "params": len(new_params),
                "metrics": len(batch.metrics),
                "tags": len(batch.tags),
                "digest": added_digest,
            },
        )
    return LogResult(run, len(new_params), len(batch.metrics), len(batch.tags), added_digest)


def external_run_finish(
    *,
    actor,
    run_id: int | None = None,
    run_uuid: str | None = None,
    status: str = "finished",
    ended_at: dt.datetime | None = None,
    output_artifact_id: int | None = None,
) -> ExternalRun:
    """End the run (finished, failed or killed), optionally naming its output artifact, and write the digest of
    everything it reports (`contents_digest`). An ended run takes no more logging."""
    with transaction.atomic():
        run = run_for_writing(actor, run_id, run_uuid=run_uuid)
        if status not in ENDED_STATUSES:
            raise ValidationFailed(
                f"An external run ends as one of {', '.join(ENDED_STATUSES)}.",
                details={"status": [f"One of: {', '.join(ENDED_STATUSES)}."]},
            )
        ended = _moment(ended_at, "ended_at") if ended_at is not None else timezone.now()
        if ended < run.started_at:
            raise ValidationFailed(
                "The run cannot end before it started.",
                details={"ended_at": [f"Must not be before started_at ({run.started_at.isoformat()})."]},
            )
        output = _artifact(actor, output_artifact_id, "output_artifact") if output_artifact_id is not None else None
        if output is not None and run.output_artifact_id not in (None, output.pk):
            raise ValidationFailed(
                "The run already names another output artifact.",
                details={"output_artifact": [f"The run's output artifact is already {run.output_artifact_id}."]},
            )
        _expect_running(run)
        run.status, run.ended_at = status, ended
        if output is not None:
            run.output_artifact = output
        run.contents_digest = run_contents_digest(run)
        run.save(update_fields=["status", "ended_at", "output_artifact", "contents_digest"])
        ledger_append(
            actor=actor,
            action="external_run.finished",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={
                "run_uuid": run.run_uuid,
                "status": status,
                "ended_at": ended.isoformat(),
                "output_artifact": run.output_artifact.digest if run.output_artifact else None,
                "contents_digest": run.contents_digest,
                "params": run.params.count(),
                "metrics": run.metrics.count(),
                "tags": run.tags.count(),
            },
        )
    return run


# -- helpers shared with tracking.services.provenance and the MLflow services -------------------------------------


def run_for_writing(actor, run_id: int | None, *, lock: bool = True, run_uuid: str | None = None) -> ExternalRun:
    """The run (locked, inside the caller's transaction) if the actor owns its experiment: 404 outside their scope,
    403 if they only see it. With lock=False it is the check a view makes before it parses any input (who before
    what); the service checks again under the lock. The run is named by `run_id` or by `run_uuid` (MLflow's)."""
    if actor.role not in WRITER_ROLES:
        raise PermissionDenied("Only engineers write to external runs.")
    # The hot path (every logging request): one plain query for the run and its experiment, no visibility
    # subquery; the scope decides only between 404 and 403 for a run the actor does not own.
    runs = ExternalRun.objects.select_related("experiment")
    if lock:
        runs = runs.select_for_update(of=("self",))
    run = runs.filter(run_uuid=run_uuid).first() if run_uuid is not None else runs.filter(pk=run_id or 0).first()
    if run is not None and run.experiment.owner_id == actor.pk:
        return run
    if run is None or not external_runs_visible_to(actor).filter(pk=run.pk).exists():
        raise NotFound(f"No external run {run_uuid if run_uuid is not None else run_id}.")
    raise PermissionDenied("Only the owner of the run's experiment may write to it.")


def _expect_running(run: ExternalRun) -> None:
    if run.is_ended:
        raise Conflict(
            f"External run {run.pk} has ended ({run.status}); its record is closed.",
            code=TrackingErrorCode.RUN_FINISHED,
            details={"status": [f"The run is {run.status}."]},
        )


def _new_params(run: ExternalRun, pairs: tuple[tuple[str, str], ...], raw: Any) -> list[tuple[str, str]]:
    """The batch's params not yet on the run; 400 `param_changed` naming each one logged with another value."""
    if not pairs:
        return []
    existing = dict(ExternalRunParam.objects.filter(run=run, key__in=[k for k, _ in pairs]).values_list("key", "value"))
    changed = [(k, v) for k, v in pairs if k in existing and existing[k] != v]
    if changed:
        index = {item.get("key"): i for i, item in reversed(list(enumerate(raw))) if isinstance(item, Mapping)}
        raise ValidationFailed(
            f"Param(s) {', '.join(repr(k) for k, _ in changed)} already logged with another value; "
            "a param never changes once logged. Nothing was logged.",
            code=TrackingErrorCode.PARAM_CHANGED,
            details={
                f"params[{index[k]}].value": [f"'{k}' is already {_short(existing[k])}; a param cannot change."]
                for k, _ in changed
            },
        )
    return [(k, v) for k, v in pairs if k not in existing]


def _short(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _text(value: Any, field: str, max_length: int, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be a string.", details={field: ["Must be a string."]})
    if required and not value.strip():
        raise ValidationFailed(f"{field} may not be blank.", details={field: ["May not be blank."]})
    if len(value) > max_length:
        raise ValidationFailed(f"{field} is too long.", details={field: [f"At most {max_length} characters."]})
    return value


def _known_method(value: Any) -> str:
    if value in (None, ""):
        return ""
    if value not in SUPPORTED_METHODS:
        raise ValidationFailed(
            f"{value!r} is not a compression method SafeShrink knows.",
            code=TrackingErrorCode.UNKNOWN_METHOD,
            details={"known_method": [f"One of: {', '.join(SUPPORTED_METHODS)} (or leave it out)."]},
        )
    return value


def _json_object(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed(f"{field} must be a JSON object.", details={field: ["Must be an object."]})
    try:
        size = len(canonical_json(value).encode())
    except (TypeError, ValueError):
        raise ValidationFailed(
            f"{field} must be plain JSON.", details={field: ["Must be JSON: no NaN or infinities."]}
        ) from None
    if size > MAX_JSON_BYTES:
        raise ValidationFailed(f"{field} is too large.", details={field: [f"At most {MAX_JSON_BYTES} bytes as JSON."]})
    return dict(value)


def _code_reference(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed("code_reference must be an object.", details={"code_reference": ["Must be an object."]})
    out = {}
    for key, item in value.items():
        limit = CODE_REFERENCE_FIELDS.get(key)
        if limit is None:
            raise ValidationFailed(
                f"code_reference has an unknown field {key!r}.",
                details={f"code_reference.{key}": [f"Fields: {', '.join(CODE_REFERENCE_FIELDS)}."]},
            )
        out[key] = _text(item, f"code_reference.{key}", limit)
    return out


def _tool_versions(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > MAX_TOOLS:
        raise ValidationFailed(
            "tool_versions must be an object of tool: version.",
            details={"tool_versions": [f"An object of at most {MAX_TOOLS} tool: version strings."]},
        )
    for tool, version in value.items():
        _text(tool, "tool_versions", MAX_TOOL_NAME, required=True)
        _text(version, f"tool_versions.{tool}", MAX_TOOL_VERSION, required=True)
    return dict(value)


def _seeds(value: Any) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_SEEDS:
        raise ValidationFailed("seeds must be a list.", details={"seeds": [f"A list of at most {MAX_SEEDS} integers."]})
    seeds = []
    for i, seed in enumerate(value):
        checked = integer_in(seed, INT64_MIN, INT64_MAX)
        if isinstance(checked, str):
            raise ValidationFailed(f"seeds[{i}] is not a seed.", details={f"seeds[{i}]": [checked]})
        seeds.append(checked)
    return seeds


def _artifact(actor, artifact_id: Any, field: str) -> ModelArtifact:
    artifact = None
    if isinstance(artifact_id, int) and not isinstance(artifact_id, bool) and 0 < artifact_id <= INT64_MAX:
        artifact = artifacts_visible_to(actor).filter(pk=artifact_id).first()
    if artifact is None:
        raise ValidationFailed("Unknown artifact.", details={field: [f"No artifact {artifact_id}."]})
    return artifact


def _input_artifacts(actor, ids: Iterable[int]) -> list[ModelArtifact]:
    ids = list(ids or ())
    if len(ids) > MAX_INPUT_ARTIFACTS:
        raise ValidationFailed(
            "Too many input artifacts.", details={"input_artifacts": [f"At most {MAX_INPUT_ARTIFACTS}."]}
        )
    artifacts: dict[int, ModelArtifact] = {}
    for i, artifact_id in enumerate(ids):
        artifact = _artifact(actor, artifact_id, f"input_artifacts[{i}]")
        artifacts.setdefault(artifact.pk, artifact)
    return list(artifacts.values())


def _moment(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValidationFailed(f"{field} must be a date-time.", details={field: ["An ISO 8601 date-time."]})
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)
