"""The evaluations app's error codes: one StrEnum registry (evaluations/error_codes.py), no free code strings
left in the app, and the same string values clients and stored run failures already carry."""

from accounts.errors import ValidationFailed
from evaluations.error_codes import EvaluationsErrorCode
from tests.governance.test_error_codes import _free_code_strings


def test_evaluations_raise_no_free_code_strings():
    assert _free_code_strings("evaluations") == []


def test_the_registry_keeps_the_strings_clients_already_see():
    assert [str(c) for c in EvaluationsErrorCode] == [
        "invalid_rows",
        "empty_suite",
        "upload_missing",
        "upload_changed",
        "mixed_rows",
        "invalid_judge",
        "judge_labels_mismatch",
        "model_kind_mismatch",
        "prompt_overlap",
        "evaluation_not_ready",
        "different_inputs",
        "different_classes",
        "different_profiles",
        "invalid_profile",
        "profile_not_allowed",
        "time_limit",
        "internal_error",
    ]
    raised = ValidationFailed("x", code=EvaluationsErrorCode.EMPTY_SUITE)
    assert type(raised.code) is str and raised.code == "empty_suite"
