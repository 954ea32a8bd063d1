"""SafeShrink compression engine (pure Python, no Django).

Importing this package must not import torch: the web process imports `manifest`, `methods`,
`types` and `errors` only. `compress` imports the torch-based implementation on first call.
"""

from __future__ import annotations

from collections.abc import Callable

from compression.engine.errors import EngineError
from compression.engine.methods import (
    METHOD_SCHEMAS,
    SUPPORTED_METHODS,
    method_available,
    parameter_schema,
    resolve_parameters,
    validate_parameters,
    validate_student,
)
from compression.engine.types import CompressionData, CompressionRequest, CompressionResult, LabeledText

__all__ = [
    "EngineError",
    "SUPPORTED_METHODS",
    "METHOD_SCHEMAS",
    "validate_parameters",
    "validate_student",
    "resolve_parameters",
    "parameter_schema",
    "method_available",
    "CompressionData",
    "CompressionRequest",
    "CompressionResult",
    "LabeledText",
    "compress",
]


def compress(request: CompressionRequest, progress: Callable[[str, float], None] | None = None) -> CompressionResult:
    """Run ``request`` (see compression.engine.runner.compress); torch is imported only here."""
    from compression.engine.runner import compress as _compress

    return _compress(request, progress)
