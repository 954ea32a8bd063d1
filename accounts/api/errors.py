"""DRF exception handler: every error body is {"code", "message", "details"}."""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.error_codes import AccountsErrorCode
from accounts.errors import DomainError


def _first_code(detail: Any) -> str:
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_code(value)
    if isinstance(detail, list) and detail:
        return _first_code(detail[0])
    return str(getattr(detail, "code", None) or AccountsErrorCode.INVALID)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, exceptions.AuthenticationFailed) and context.get("request") is not None:
        # A bad or unknown token is refused before HasRole runs: count it with the other anonymous refusals.
        from accounts.services import anonymous_refusal_count

        anonymous_refusal_count(method=context["request"].method, path=context["request"].path)
    if isinstance(exc, DomainError):
        return Response({"code": exc.code, "message": exc.message, "details": exc.details}, status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = ", ".join(str(k) for k in details) if isinstance(details, dict) else ""
        response.data = {
            "code": str(AccountsErrorCode.INVALID),
            "message": f"Invalid input in: {fields}." if fields else "Invalid input.",
            "details": details,
        }
    else:
        detail = getattr(exc, "detail", str(exc))
        response.data = {"code": _first_code(detail), "message": str(detail), "details": {}}
    return response
