"""MLflow's tracking routes (/mlflow/api/2.0/mlflow/...): experiments, runs, logging, metric history, search.
Each view parses the request once, calls one service or selector and renders MLflow's JSON."""

from __future__ import annotations

from django.http import JsonResponse

from accounts.errors import ValidationFailed
from compression.selectors import experiments_visible_to
from tracking.models import ExternalRunParam, ExternalRunTag
from tracking.selectors import external_runs_search, latest_metrics, metric_history
from tracking.services.batch import MISSING, parse_tags
from tracking.services.mlflow_runs import (
    experiment_by_id,
    experiment_by_name,
    mlflow_experiment_create,
    mlflow_run_create,
    mlflow_run_update,
    parse_id,
)
from tracking.services.run_artifacts import run_for_reading
from tracking.services.runs import external_run_log

from .protocol import (
    endpoint,
    experiment_json,
    metric_json,
    next_token,
    page_bounds,
    required_str,
    run_info,
    run_json,
)
from .search import oldest_first, parse_filter

MAX_SEARCH_RESULTS = 50000
MAX_HISTORY_RESULTS = 25000


def _tags(items, field: str = "tags") -> dict[str, str]:
    """MLflow's [{key, value}] as {key: value} (the last value wins), checked as tags."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ValidationFailed(f"{field} must be a list.", details={field: ["A list of {key, value}."]})
    out = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ValidationFailed(
                f"{field}[{i}] is not a tag.", details={f"{field}[{i}]": ["An object {key, value}."]}
            )
        out[item["key"]] = item.get("value", "")
    return parse_tags(out, field)


# -- experiments -------------------------------------------------------------------------------------------------


@endpoint("GET")
def experiment_get_by_name(request, user, data):
    return {"experiment": experiment_json(experiment_by_name(user, data.get("experiment_name")))}


@endpoint("GET")
def experiment_get(request, user, data):
    return {"experiment": experiment_json(experiment_by_id(user, data.get("experiment_id")))}


@endpoint("POST")
def experiment_create(request, user, data):
    experiment = mlflow_experiment_create(actor=user, name=data.get("name"), tags=_tags(data.get("tags")))
    return {"experiment_id": str(experiment.pk)}


@endpoint("GET", "POST")
def experiment_search(request, user, data):
    offset, limit = page_bounds(data, 1000, 50000)
    qs = experiments_visible_to(user).select_related("base_artifact").order_by("-created_at", "-id")
    page = list(qs[offset : offset + limit + 1])
    token = next_token(offset, limit, len(page))
    return {"experiments": [experiment_json(e) for e in page[:limit]], **({"next_page_token": token} if token else {})}


# -- runs --------------------------------------------------------------------------------------------------------


@endpoint("POST")
def run_create(request, user, data):
    run = mlflow_run_create(
        actor=user,
        experiment_id=data.get("experiment_id"),
        start_time=data.get("start_time"),
        tags=_tags(data.get("tags")),
        run_name=data.get("run_name") or "",
    )
    return {"run": _run(run)}


@endpoint("POST")
def run_update(request, user, data):
    run = mlflow_run_update(
        actor=user,
        run_uuid=required_str(data, "run_id", "run_uuid"),
        status=data.get("status"),
        end_time=data.get("end_time"),
        run_name=data.get("run_name"),
    )
    return {"run_info": run_info(run)}


@endpoint("GET")
def run_get(request, user, data):
    return {"run": _run(run_for_reading(user, required_str(data, "run_id", "run_uuid")))}


def _run(run) -> dict:
    params = ExternalRunParam.objects.filter(run=run).order_by("key").values_list("key", "value")
    tags = ExternalRunTag.objects.filter(run=run).order_by("key").values_list("key", "value")
    return run_json(run, params, tags, latest_metrics([run.pk]).get(run.pk, []))


@endpoint("POST", "GET")
def run_search(request, user, data):
    ids = data.get("experiment_ids") or []
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list) or not ids:
        raise ValidationFailed("experiment_ids is required.", details={"experiment_ids": ["A list of ids."]})
    experiment_ids = [parse_id(i, "experiment_ids") for i in ids]
    offset, limit = page_bounds(data, 1000, MAX_SEARCH_RESULTS)
    qs = external_runs_search(
        user, experiment_ids, parse_filter(data.get("filter")), oldest_first=oldest_first(data.get("order_by"))
    )
    page = list(qs[offset : offset + limit + 1])
    token = next_token(offset, limit, len(page))
    page = page[:limit]
    pks = [r.pk for r in page]
    params: dict[int, list] = {}
    tags: dict[int, list] = {}
    for run_pk, k, v in ExternalRunParam.objects.filter(run__in=pks).order_by("key").values_list("run", "key", "value"):
        params.setdefault(run_pk, []).append((k, v))
    for run_pk, k, v in ExternalRunTag.objects.filter(run__in=pks).order_by("key").values_list("run", "key", "value"):
        tags.setdefault(run_pk, []).append((k, v))
    metrics = latest_metrics(pks)
    runs = [run_json(r, params.get(r.pk, []), tags.get(r.pk, []), metrics.get(r.pk, [])) for r in page]
    return {"runs": runs, **({"next_page_token": token} if token else {})}


# -- logging (the hot path: one parse, no serializer, one service call, one ledger event) -------------------------


def _log(user, data, **lists) -> JsonResponse:
    external_run_log(actor=user, run_uuid=required_str(data, "run_id", "run_uuid"), proto_json=True, **lists)
    return JsonResponse({})


@endpoint("POST")
def log_batch(request, user, data):
    return _log(
        user,
        data,
        params=data.get("params", MISSING),
        metrics=data.get("metrics", MISSING),
        tags=data.get("tags", MISSING),
    )


@endpoint("POST")
def log_metric(request, user, data):
    return _log(user, data, metrics=[{k: data[k] for k in ("key", "value", "step", "timestamp") if k in data}])


@endpoint("POST")
def log_param(request, user, data):
    return _log(user, data, params=[{"key": data.get("key"), "value": data.get("value")}])


@endpoint("POST")
def set_tag(request, user, data):
    return _log(user, data, tags=[{"key": data.get("key"), "value": data.get("value")}])


@endpoint("GET")
def metric_get_history(request, user, data):
    run = run_for_reading(user, required_str(data, "run_id", "run_uuid"))
    key = required_str(data, "metric_key")
    offset, limit = page_bounds(data, MAX_HISTORY_RESULTS, MAX_HISTORY_RESULTS)
    rows = list(metric_history(run, key).values_list("key", "value", "timestamp", "step")[offset : offset + limit + 1])
    token = next_token(offset, limit, len(rows))
    return {"metrics": [metric_json(*row) for row in rows[:limit]], **({"next_page_token": token} if token else {})}
