"""MLflow's error format, `{"error_code": "...", "message": "..."}`, for everything under /mlflow.

SafeShrink's refusals (accounts.errors) keep their HTTP status and are named with MLflow's codes, so the unmodified
client raises an MlflowException with the code it knows. The message names every refused field (`metrics[0].value:
...`), and the SafeShrink error model's `code` and `details` ride along for anyone reading the JSON.
"""

from __future__ import annotations

from enum import StrEnum

from django.http import JsonResponse

from accounts.errors import DomainError
from tracking.error_codes import TrackingErrorCode


class MlflowErrorCode(StrEnum):
    """The codes of MLflow's protocol (mlflow.protos.databricks_pb2.ErrorCode) that SafeShrink answers with."""

    INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
    RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
    RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INVALID_STATE = "INVALID_STATE"
    ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"


E = MlflowErrorCode
BY_STATUS = {
    400: E.INVALID_PARAMETER_VALUE,
    401: E.UNAUTHENTICATED,
    403: E.PERMISSION_DENIED,
    404: E.RESOURCE_DOES_NOT_EXIST,
    409: E.INVALID_STATE,
    413: E.INVALID_PARAMETER_VALUE,
}
BY_CODE = {
    TrackingErrorCode.EXPERIMENT_EXISTS: E.RESOURCE_ALREADY_EXISTS,
    TrackingErrorCode.MODEL_EXISTS: E.RESOURCE_ALREADY_EXISTS,
    TrackingErrorCode.ENDPOINT_NOT_FOUND: E.ENDPOINT_NOT_FOUND,
}


def mlflow_error(
    status: int, error_code: str, message: str, *, code: str | None = None, details: dict | None = None
) -> JsonResponse:
    body: dict = {"error_code": str(error_code), "message": message}
    if code:
        body["code"] = code
    if details:
        body["details"] = details
    return JsonResponse(body, status=status)


def from_domain_error(exc: DomainError) -> JsonResponse:
    error_code = BY_CODE.get(exc.code) or BY_STATUS.get(exc.status, E.INVALID_PARAMETER_VALUE)
    message = exc.message
    if exc.details:
        named = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in exc.details.items())
        message = f"{message} ({named})"
    return mlflow_error(exc.status, error_code, message, code=exc.code, details=exc.details)


def endpoint_not_found(method: str, path: str) -> JsonResponse:
    return mlflow_error(
        404,
        E.ENDPOINT_NOT_FOUND,
        f"SafeShrink does not serve {method} {path}: only MLflow's tracking, artifact and model registration "
        "routes that the MLflow client uses for runs are supported.",
        code=TrackingErrorCode.ENDPOINT_NOT_FOUND,
    )
