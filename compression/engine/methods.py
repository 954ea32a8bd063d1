"""Supported compression methods and their parameter validation (torch-free: used by the web API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compression.engine.errors import EngineError

__all__ = ["SUPPORTED_METHODS", "METHOD_PARAMETERS", "validate_parameters"]

# method -> {parameter name: accepted python type}; every parameter is optional.
METHOD_PARAMETERS: Mapping[str, Mapping[str, type]] = {
    "dynamic_int8": {"quantize_embeddings": bool},
}

SUPPORTED_METHODS: tuple[str, ...] = tuple(sorted(METHOD_PARAMETERS))


def validate_parameters(method: str, parameters: Mapping[str, Any]) -> None:
    """Raise EngineError unless ``parameters`` is valid for ``method``; return None when valid.

    Unknown method -> "unknown_method"; non-mapping, unknown key or wrong type -> "invalid_parameter"
    with the offending parameter named in the message.
    """
    if method not in METHOD_PARAMETERS:
        raise EngineError(
            "unknown_method", f"unknown compression method {method!r}; supported: {', '.join(SUPPORTED_METHODS)}"
        )
    if not isinstance(parameters, Mapping):
        raise EngineError("invalid_parameter", "parameters must be a JSON object")
    allowed = METHOD_PARAMETERS[method]
    for name in sorted(parameters, key=str):
        if name not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise EngineError(
                "invalid_parameter", f"unknown parameter {name!r} for method {method!r} (accepted: {accepted})"
            )
        expected = allowed[name]
        value = parameters[name]
        # bool is a subclass of int: check exactly so 1 is not taken for True and True not for 1.
        if type(value) is not expected:
            raise EngineError(
                "invalid_parameter",
                f"parameter {name!r} for method {method!r} must be {expected.__name__}, got {type(value).__name__}",
            )
