"""One error model for every layer: a stable machine-readable code, a message, details."""

from typing import Any

from accounts.error_codes import AccountsErrorCode


class DomainError(Exception):
    """A refusal by a service. `status` is the HTTP status the API maps it to."""

    status = 400
    code: str = AccountsErrorCode.INVALID

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        # A plain string (a registry member is one): the ledger and the response carry its value.
        self.code = str(code or self.code)
        self.details = details or {}


class ValidationFailed(DomainError):
    status = 400
    code = AccountsErrorCode.INVALID


class PermissionDenied(DomainError):
    status = 403
    code = AccountsErrorCode.PERMISSION_DENIED


class NotFound(DomainError):
    status = 404
    code = AccountsErrorCode.NOT_FOUND


class Conflict(DomainError):
    status = 409
    code = AccountsErrorCode.CONFLICT
