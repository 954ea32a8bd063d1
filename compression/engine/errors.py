"""The single exception type raised by the ML engines (compression and evaluation)."""

from __future__ import annotations

__all__ = ["EngineError", "ERROR_CODES"]

# The closed set of codes; callers (API, tasks) map them to HTTP statuses / run failure reasons.
ERROR_CODES: frozenset[str] = frozenset(
    {
        "model_not_found",
        "unsupported_architecture",
        "corrupt_artifact",
        "invalid_parameter",
        "unknown_method",
        "invalid_input",
        "empty_input",
        "method_unavailable",
        "cancelled",
    }
)


class EngineError(Exception):
    """An expected engine failure with a stable machine-readable ``code`` and a readable ``message``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown EngineError code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code: str = code
        self.message: str = message

    def __reduce__(self) -> tuple[type[EngineError], tuple[str, str]]:
        # Keeps the exception picklable across Celery/multiprocessing boundaries.
        return (type(self), (self.code, self.message))
