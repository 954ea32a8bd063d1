"""Error codes: one StrEnum registry per app (governance/error_codes.py, accounts/error_codes.py), no free code
strings left in those apps, the same string values as before, and every registry listed in the OpenAPI error
model (accounts.api.schema finds `<app>/error_codes.py` by convention)."""

import ast
from enum import StrEnum
from pathlib import Path

from drf_spectacular.generators import SchemaGenerator

from accounts.api.schema import error_code_registries, error_codes_by_app
from accounts.error_codes import AccountsErrorCode
from accounts.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from governance.error_codes import GovernanceErrorCode

ROOT = Path(__file__).resolve().parents[2]


def _free_code_strings(app: str) -> list[str]:
    """`code="..."` keyword arguments and `code = "..."` class attributes written as string literals."""
    found = []
    for path in (ROOT / app).rglob("*.py"):
        if "migrations" in path.parts or path.name == "error_codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            literal = None
            if isinstance(node, ast.keyword) and node.arg == "code":
                literal = node.value
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    targets = (
                        statement.targets
                        if isinstance(statement, ast.Assign)
                        else ([statement.target] if isinstance(statement, ast.AnnAssign) else [])
                    )
                    if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                        literal = statement.value
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_governance_and_accounts_raise_no_free_code_strings():
    assert _free_code_strings("governance") == []
    assert _free_code_strings("accounts") == []


def test_the_registries_keep_the_strings_clients_already_see():
    assert [str(c) for c in GovernanceErrorCode] == [
        "stale_version",
        "invalid_transition",
        "run_not_succeeded",
        "gate_red",
        "already_approved",
        "candidate_changed",
        "too_early",
        "outside_authority",
        "separation_of_duties",
        "already_submitted",
        "external_run_not_finished",
        "external_run_no_output",
        "release_exists",
        "training_data_overlap",
    ]
    assert {
        "invalid",
        "permission_denied",
        "not_found",
        "conflict",
        "not_authenticated",
        "method_not_allowed",
        "too_large",
        "unsupported_media_type",
        "server_error",
    } <= set(AccountsErrorCode)
    assert (ValidationFailed.code, PermissionDenied.code, NotFound.code, Conflict.code, DomainError.code) == (
        "invalid",
        "permission_denied",
        "not_found",
        "conflict",
        "invalid",
    )


def test_a_raised_code_is_a_plain_string():
    """The ledger payload and the response body carry the value, never an enum member."""
    for exc in (Conflict("x", code=GovernanceErrorCode.GATE_RED), NotFound("x"), ValidationFailed("x", code="custom")):
        assert type(exc.code) is str
    assert Conflict("x", code=GovernanceErrorCode.GATE_RED).code == "gate_red"


def test_every_registry_is_found_by_convention_and_documented_in_the_error_model():
    registries = error_code_registries()
    assert registries["governance"] == [GovernanceErrorCode] and registries["accounts"] == [AccountsErrorCode]
    assert all(issubclass(enum, StrEnum) for enums in registries.values() for enum in enums)
    schema = SchemaGenerator().get_schema(request=None, public=True)
    description = schema["components"]["schemas"]["Error"]["properties"]["code"]["description"]
    for app, codes in error_codes_by_app().items():
        assert f"{app}: {', '.join(codes)}" in description
    for code in (*GovernanceErrorCode, *AccountsErrorCode):
        assert code.value in description
