"""The protocol layer under /mlflow: authentication, one JSON parse per request, MLflow's error format, and the
translation of SafeShrink's rows into MLflow's JSON (runs, experiments, metrics, filters, page tokens).

Plain Django views, not DRF: logging is the hot path (one `json.loads`, no serializers, no content negotiation).
The engineer's SafeShrink API token is accepted as `Authorization: Bearer <token>` (what the MLflow client sends
for MLFLOW_TRACKING_TOKEN) or `Token <token>`.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authtoken.models import Token

from accounts.errors import DomainError, ValidationFailed
from accounts.services import anonymous_refusal_count
from compression.models import Experiment
from tracking.models import ExternalRun
from tracking.services.batch import proto_int
from tracking.services.mlflow_runs import datetime_to_ms

from .errors import MlflowErrorCode, endpoint_not_found, from_domain_error, mlflow_error

RUN_STATUS = {"running": "RUNNING", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def authenticate(request: HttpRequest):
    """The active user whose API token the request carries (Bearer or Token), else None."""
    scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    key = key.strip()
    if scheme.lower() not in ("bearer", "token") or not key or len(key) > 64:
        return None
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def endpoint(*methods: str, body: bool = True) -> Callable:
    """A view of the MLflow protocol: `fn(request, user, data, **kwargs)` returns a dict (200 JSON) or a response.
    `data` is the query string (GET) or the JSON object of the body, parsed once (body=False: not read)."""

    def wrap(fn: Callable) -> Callable:
        @csrf_exempt
        @functools.wraps(fn)
        def view(request: HttpRequest, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return endpoint_not_found(request.method or "", request.path)
            user = authenticate(request)
            if user is None:  # counted per window like /api/'s anonymous refusals, not one ledger event each
                anonymous_refusal_count(method=request.method or "", path=request.path)
                return mlflow_error(
                    401,
                    MlflowErrorCode.UNAUTHENTICATED,
                    "Authentication required: set MLFLOW_TRACKING_TOKEN to your SafeShrink API token.",
                )
            try:
                if request.method in ("GET", "DELETE") or not body:
                    data: Mapping = request.GET.dict()
                else:
                    data = _json_object(request.body)
                result = fn(request, user, data, **kwargs)
            except DomainError as exc:
                return from_domain_error(exc)
            return result if isinstance(result, HttpResponseBase) else JsonResponse(result)

        return view

    return wrap


def _json_object(raw: bytes) -> Mapping:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"The body is not JSON: {exc}", details={"body": ["Send a JSON object."]}) from None
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", details={"body": ["Send a JSON object."]})
    return data


def required_str(data: Mapping, *fields: str) -> str:
    """The first of `fields` present (MLflow sends run_id and its old name run_uuid), as a non-empty string."""
    for field in fields:
        value = data.get(field)
        if value not in (None, ""):
            if not isinstance(value, str):
                raise ValidationFailed(f"{field} must be a string.", details={field: ["Must be a string."]})
            return value
    raise ValidationFailed(f"{fields[0]} is required.", details={fields[0]: ["This field is required."]})


def list_field(data: Mapping, field: str) -> Any:
    """A list field of a body (absent: an empty list, as proto3 leaves empty repeated fields out)."""
    value = data.get(field)
    return [] if value is None else value


# -- JSON of SafeShrink's rows ----------------------------------------------------------------------------------


def artifact_uri(run: ExternalRun) -> str:
    return f"mlflow-artifacts:/{run.experiment_id}/{run.run_uuid}/artifacts"


def run_info(run: ExternalRun) -> dict:
    info = {
        "run_id": run.run_uuid,
        "run_uuid": run.run_uuid,
        "run_name": run.name,
        "experiment_id": str(run.experiment_id),
        "user_id": run.recorded_by.username,
        "status": RUN_STATUS[run.status],
        "start_time": datetime_to_ms(run.started_at),
        "artifact_uri": artifact_uri(run),
        "lifecycle_stage": "active",
    }
    if run.ended_at is not None:
        info["end_time"] = datetime_to_ms(run.ended_at)
    return info


def run_json(run: ExternalRun, params, tags, metrics) -> dict:
    """MLflow's Run: info, and data with each metric key's latest value (metrics: (key, value, timestamp, step))."""
    return {
        "info": run_info(run),
        "data": {
            "metrics": [metric_json(k, v, t, s) for k, v, t, s in metrics],
            "params": [{"key": k, "value": v} for k, v in params],
            "tags": [{"key": k, "value": v} for k, v in tags],
        },
        "inputs": {},
        "outputs": {},
    }


def metric_json(key: str, value: float, timestamp: int, step: int) -> dict:
    return {"key": key, "value": value, "timestamp": timestamp, "step": step}


def experiment_json(experiment: Experiment) -> dict:
    created = datetime_to_ms(experiment.created_at)
    return {
        "experiment_id": str(experiment.pk),
        "name": experiment.name,
        "artifact_location": f"mlflow-artifacts:/{experiment.pk}",
        "lifecycle_stage": "active",
        "creation_time": created,
        "last_update_time": created,
        "tags": [
            {"key": "safeshrink.base_artifact", "value": experiment.base_artifact.digest},
            {"key": "safeshrink.unsafe_labels", "value": ",".join(experiment.unsafe_labels)},
            {"key": "safeshrink.risk_tier", "value": experiment.risk_tier},
        ],
    }


# -- paging ----------------------------------------------------------------------------------------------------


def page_bounds(data: Mapping, default: int, maximum: int) -> tuple[int, int]:
    """(offset, limit) from max_results and an opaque page_token (base64 of the offset)."""
    limit = proto_int(data.get("max_results", default))
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise ValidationFailed(
            f"max_results must be between 1 and {maximum}.", details={"max_results": [f"1 to {maximum}."]}
        )
    token = data.get("page_token") or ""
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except (ValueError, UnicodeDecodeError):
            offset = -1
        if offset < 0:
            raise ValidationFailed("Invalid page_token.", details={"page_token": ["Not a token this server gave."]})
    return offset, limit


def next_token(offset: int, limit: int, got: int) -> str | None:
    return base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if got > limit else None
