"""The exports app's error codes: one StrEnum registry (exports/error_codes.py), no free code strings left in
the app, and the same string values clients and stored export failures already carry."""

from accounts.errors import Conflict
from exports.error_codes import ExportsErrorCode
from tests.governance.test_error_codes import _free_code_strings


def test_exports_raise_no_free_code_strings():
    assert _free_code_strings("exports") == []


def test_the_registry_keeps_the_strings_clients_already_see():
    assert [str(c) for c in ExportsErrorCode] == [
        "signing_not_configured",
        "export_not_ready",
        "already_revoked",
        "predictions_missing",
        "release_evaluating",
        "export_failed",
        "time_limit",
        "internal_error",
    ]
    raised = Conflict("x", code=ExportsErrorCode.ALREADY_REVOKED)
    assert type(raised.code) is str and raised.code == "already_revoked"
