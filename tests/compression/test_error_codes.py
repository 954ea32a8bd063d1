"""One registry of error codes per app: compression raises and records only registry members."""

import ast
from pathlib import Path

import pytest

from compression.engine.errors import ERROR_CODES, EngineError, EngineErrorCode
from compression.error_codes import CompressionErrorCode

ROOT = Path(__file__).resolve().parents[2]
KNOWN_UNREGISTERED: set[tuple[str, str]] = set()


def test_the_values_are_the_strings_used_before():
    engine = [
        "model_not_found",
        "unsupported_architecture",
        "corrupt_artifact",
        "invalid_parameter",
        "unknown_method",
        "invalid_input",
        "empty_input",
        "method_unavailable",
        "cancelled",
        "storage_error",
        "unsupported_platform",
        "no_chat_template",
    ]
    assert sorted(EngineErrorCode) == sorted(engine)
    assert set(EngineErrorCode) == ERROR_CODES
    assert sorted(CompressionErrorCode) == sorted(
        [
            *engine,
            "empty_suite",
            "internal_error",
            "run_finished",
            "time_limit",
            "upload_path_refused",
            "upload_format_refused",
            "upload_too_large",
            "too_many_uploads",
            "upload_closed",
            "upload_busy",
            "upload_incomplete",
            "chunk_offset",
            "chunk_digest_mismatch",
            "manifest_mismatch",
            "upload_expired",
            "not_signed",
            "invalid_generation",
            "no_worker_for_device",
        ]
    )


def test_the_app_registry_extends_the_engines_member_for_member():
    for code in EngineErrorCode:
        assert CompressionErrorCode[code.name] == code  # same name, same value


def test_the_openapi_schema_lists_every_compression_code():
    from accounts.api.schema import error_codes_by_app

    assert sorted(error_codes_by_app()["compression"]) == sorted(CompressionErrorCode)


def test_an_engine_error_carries_the_plain_value_and_refuses_other_codes():
    import pickle

    error = EngineError(EngineErrorCode.CORRUPT_ARTIFACT, "x")
    assert type(error.code) is str and error.code == "corrupt_artifact" and str(error) == "corrupt_artifact: x"
    assert pickle.loads(pickle.dumps(error)).code == "corrupt_artifact"
    assert EngineError("empty_input", "y").code == "empty_input"
    with pytest.raises(ValueError):
        EngineError(CompressionErrorCode.EMPTY_SUITE, "an app-only code is not an engine code")
    assert EngineError(CompressionErrorCode.CORRUPT_ARTIFACT, "z").code == "corrupt_artifact"


def _literal_codes(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        candidates = [kw.value for kw in node.keywords if kw.arg == "code"]
        if name == "EngineError" and node.args:
            candidates.append(node.args[0])
        for value in candidates:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                yield node.lineno, value.value


@pytest.mark.parametrize("app", ["compression", "ledger"])
def test_no_error_code_is_a_free_string(app):
    found = []
    for path in sorted((ROOT / app).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(ROOT).as_posix()
        found += [
            f"{rel}:{line} {code}" for line, code in _literal_codes(path) if (rel, code) not in KNOWN_UNREGISTERED
        ]
    assert found == []
