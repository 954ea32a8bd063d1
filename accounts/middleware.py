"""Request guards that run before any view, and the error model for everything under /api/.

- A NUL byte in the path, the query string or a form/JSON body is a 400 (PostgreSQL cannot store one, and no
  field of ours needs one), for every URL: JSON under /api/, plain text elsewhere.
- Under /api/: a body over the limit is a 413 before it is read; a JSON body nested deeper than
  MAX_JSON_DEPTH is a 400 before any parser recurses into it.
- Under /api/, any error response that is not JSON (Django's 404 page for an unknown path, its 400 page for a
  suspicious request, its 500 page, a CSRF failure) is replaced by the error model
  {"code", "message", "details"} with the same status.
"""

from __future__ import annotations

import re
from itertools import accumulate
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from accounts.error_codes import AccountsErrorCode

API_PREFIX = "/api/"
# MLflow's artifact uploads (tracking.mlflow): the body is a file of any type (a model's config.json or
# tokenizer.json too), streamed to disk by the view; it is not parsed, so it is neither read here nor size-limited
# by DATA_UPLOAD_MAX_MEMORY_SIZE (the view enforces SAFESHRINK["TRACKING_ARTIFACT_MAX_BYTES"]).
MLFLOW_ARTIFACT_UPLOADS = "/mlflow/api/2.0/mlflow-artifacts/artifacts/"
MAX_JSON_DEPTH = 32
MULTIPART_SLACK = 1024 * 1024  # form fields and part headers around an upload at the size limit

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
_BRACKETS = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)

E = AccountsErrorCode
CODES = {
    400: E.INVALID,
    401: E.NOT_AUTHENTICATED,
    403: E.PERMISSION_DENIED,
    404: E.NOT_FOUND,
    405: E.METHOD_NOT_ALLOWED,
    409: E.CONFLICT,
    413: E.TOO_LARGE,
    415: E.UNSUPPORTED_MEDIA_TYPE,
    500: E.SERVER_ERROR,
}


def error_response(status: int, message: str, *, code: str | None = None, details: dict | None = None) -> JsonResponse:
    return JsonResponse(
        {"code": str(code or CODES.get(status, E.ERROR)), "message": message, "details": details or {}}, status=status
    )


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays/objects in a JSON text (brackets inside strings do not count). Without a
    backslash no string holds a quote, so the text outside strings is every other piece between quotes (C speed;
    the regex costs ~5x more on an 80 KB MLflow log_batch body)."""
    outside = b"".join(body.split(b'"')[0::2]) if b"\\" not in body else _JSON_STRING.sub(b"", body)
    brackets = outside.translate(None, _NOT_BRACKETS)
    return max(accumulate(_BRACKETS[b] for b in brackets), default=0)


class ApiGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = request.path_info.startswith(API_PREFIX)
        refusal = self._refuse(request, api)
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        if api and response.status_code >= 400 and not _is_json(response):
            return self._as_error_model(request, response)
        return response

    # -- before the view ---------------------------------------------------------------------------

    def _refuse(self, request: HttpRequest, api: bool) -> HttpResponse | None:
        where = _nul_in_url(request)
        if where:
            label, key = where
            return _bad(api, f"The {label} contains a NUL byte.", {key: ["Contains a NUL byte."]})
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        length = _content_length(request)
        is_json = content_type == "application/json" or content_type.endswith("+json")
        if api and length:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if is_json else None  # None: no limit configured
            if content_type.startswith("multipart/"):
                limit = settings.SAFESHRINK["MAX_UPLOAD_BYTES"] + MULTIPART_SLACK
            if limit is not None and length > limit:
                return error_response(
                    413,
                    f"The request body is {length:,} bytes, over the limit of {limit:,}.",
                    details={"body": [f"At most {limit:,} bytes."]},
                )
        file_upload = request.method == "PUT" and request.path_info.startswith(MLFLOW_ARTIFACT_UPLOADS)
        if (
            request.method in ("POST", "PUT", "PATCH")
            and (is_json or content_type == "application/x-www-form-urlencoded")
            and not file_upload
        ):
            try:
                body = request.body
            except RequestDataTooBig:
                limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
                return (
                    error_response(
                        413,
                        f"The request body is over the limit of {limit:,} bytes.",
                        details={"body": [f"At most {limit:,} bytes."]},
                    )
                    if api
                    else HttpResponse("Request body too large.", status=413, content_type="text/plain")
                )
            if is_json:
                # The regex (a look-behind at every byte) only where an escaped NUL could be at all.
                if (b"\\u0000" in body or b"\\U0000" in body) and _JSON_NUL.search(body):
                    return _bad(
                        api,
                        "The JSON body contains a NUL character (\\u0000).",
                        {"body": ["Contains a NUL character."]},
                    )
                depth = json_depth(body)
                if depth > MAX_JSON_DEPTH:
                    return _bad(
                        api,
                        f"The JSON body is nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted.",
                        {"body": [f"At most {MAX_JSON_DEPTH} levels of nesting."]},
                    )
            elif b"%00" in body or b"\x00" in body:
                return _bad(api, "The form contains a NUL byte.", {"body": ["Contains a NUL byte."]})
        return None

    # -- after the view ----------------------------------------------------------------------------

    def _as_error_model(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        status = response.status_code
        if status == 404:
            message = f"No API endpoint or object at {request.path}."
        elif status == 405:
            message = f"Method {request.method} is not allowed here."
        elif status == 413:
            message = "The request body is over the limit."
        elif status >= 500:
            message = "The server failed to handle this request; it has been logged."
        else:
            message = response.reason_phrase or "The request was refused."
        replaced = error_response(status, message)
        for header in ("Allow", "WWW-Authenticate", "Retry-After"):
            if response.has_header(header):
                replaced[header] = response[header]
        return replaced


def _is_json(response: HttpResponse) -> bool:
    content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _content_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def _nul_in_url(request: HttpRequest) -> tuple[str, str] | None:
    """(what, details key) when the path or the query string holds a NUL byte (raw or %00)."""
    if "\x00" in request.path_info:
        return "path", "path"
    query = request.META.get("QUERY_STRING", "")
    if query and ("\x00" in query or b"\x00" in unquote_to_bytes(query)):
        for name, value in request.GET.lists():
            if "\x00" in name or any("\x00" in v for v in value):
                name = name.replace("\x00", "")[:100] or "query"
                return f"query parameter '{name}'", name
        return "query string", "query"
    return None


def _bad(api: bool, message: str, details: dict) -> HttpResponse:
    if api:
        return error_response(400, message, details=details)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
