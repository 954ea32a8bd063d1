"""The error codes of the exports app (the `code` of the error model and of a failed export), defined once.

A `StrEnum`: a member is its string, so responses, export failures and ledger payloads carry the same plain
values as before. Shared codes (invalid, not_found, conflict, ...) are in accounts.error_codes."""

from enum import StrEnum


class ExportsErrorCode(StrEnum):
    # 409 from the export and grant services
    SIGNING_NOT_CONFIGURED = "signing_not_configured"  # no signing key or certificate: run setup_signing
    EXPORT_NOT_READY = "export_not_ready"  # the export has not succeeded (yet)
    ALREADY_REVOKED = "already_revoked"  # the regulator grant was revoked before
    PREDICTIONS_MISSING = "predictions_missing"  # the export has no predictions file (no comparison when built)
    RELEASE_EVALUATING = "release_evaluating"  # the release's evidence is still being produced
    # failure reasons of an export (its `error.code`)
    EXPORT_FAILED = "export_failed"  # signing material, the file system or rendering failed
    TIME_LIMIT = "time_limit"  # the export took too long
    INTERNAL_ERROR = "internal_error"  # any other unexpected error
