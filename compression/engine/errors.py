"""The single exception type raised by the ML engines (compression and evaluation), and its codes."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EngineError", "EngineErrorCode", "ERROR_CODES"]


class EngineErrorCode(StrEnum):
    """The closed set of engine codes; callers (API, tasks) map them to HTTP statuses / run failure reasons.

    They live here, not in `compression/error_codes.py`, because engines import no app code; the app's
    registry re-exports them. A member is its string, so stored failure codes and responses are unchanged."""

    MODEL_NOT_FOUND = "model_not_found"  # no model directory / artifact where one was named
    UNSUPPORTED_ARCHITECTURE = "unsupported_architecture"  # not a sequence classifier, or a method that fails on it
    CORRUPT_ARTIFACT = "corrupt_artifact"  # files that do not match their digest, or unreadable/unwritable
    INVALID_PARAMETER = "invalid_parameter"  # a method parameter of the wrong type or out of range
    UNKNOWN_METHOD = "unknown_method"  # a compression method that does not exist
    INVALID_INPUT = "invalid_input"  # malformed data handed to the engine
    EMPTY_INPUT = "empty_input"  # a data field a method needs is empty
    METHOD_UNAVAILABLE = "method_unavailable"  # a known method this environment cannot run (torchao)
    CANCELLED = "cancelled"  # the caller asked the job to stop
    STORAGE_ERROR = "storage_error"  # the shared artifact storage did not store a file under its name
    UNSUPPORTED_PLATFORM = "unsupported_platform"  # this machine cannot run the declared deployment profile
    NO_CHAT_TEMPLATE = "no_chat_template"  # a chat model (causal LM) folder without a chat template


ERROR_CODES: frozenset[str] = frozenset(EngineErrorCode)


class EngineError(Exception):
    """An expected engine failure with a stable machine-readable ``code`` and a readable ``message``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown EngineError code {code!r}")
        code = str(code)  # the plain value, as before the registry
        super().__init__(f"{code}: {message}")
        self.code: str = code
        self.message: str = message

    def __reduce__(self) -> tuple[type[EngineError], tuple[str, str]]:
        # Keeps the exception picklable across Celery/multiprocessing boundaries.
        return (type(self), (self.code, self.message))
