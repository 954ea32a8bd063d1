"""The error codes every app shares (the `code` of the error model), defined once: the defaults of
accounts.errors' classes, the statuses of accounts.middleware's error model, and the codes DRF gives its own
exceptions (accounts.api.errors passes them through). Apps add their own codes in `<app>/error_codes.py`.

A `StrEnum`: a member is its string, so responses and ledger refusals carry the same plain values as before."""

from enum import StrEnum


class AccountsErrorCode(StrEnum):
    INVALID = "invalid"  # 400: bad input; `details` names the field, parameter, row or line
    NOT_AUTHENTICATED = "not_authenticated"  # 401: no credentials
    AUTHENTICATION_FAILED = "authentication_failed"  # 401: credentials that are not valid
    PERMISSION_DENIED = "permission_denied"  # 403: the role (or a rule) refuses this
    NOT_FOUND = "not_found"  # 404: no such object, or one you may not see
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    NOT_ACCEPTABLE = "not_acceptable"  # 406: no renderer for the Accept header
    CONFLICT = "conflict"  # 409: the object's state does not allow this
    TOO_LARGE = "too_large"  # 413: the body is over the limit
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    PARSE_ERROR = "parse_error"  # 400: a body that does not parse
    SERVER_ERROR = "server_error"  # 500 (replaced by the error model under /api/)
    ERROR = "error"  # any other status the middleware turns into the error model
