"""SafeShrink compression engine (pure Python, no Django).

Importing this package must not import torch: the web process imports `manifest`, `methods`,
`types` and `errors` only. `compress` imports the torch-based implementation on first call.
"""

from __future__ import annotations

from collections.abc import Callable

from compression.engine.errors import EngineError
from compression.engine.methods import SUPPORTED_METHODS, validate_parameters
from compression.engine.types import CompressionRequest, CompressionResult

__all__ = [
    "EngineError",
    "SUPPORTED_METHODS",
    "validate_parameters",
    "CompressionRequest",
    "CompressionResult",
    "compress",
]


def compress(request: CompressionRequest, progress: Callable[[str, float], None] | None = None) -> CompressionResult:
    """Run ``request`` (see compression.engine.quantize.compress); torch is imported only here."""
    from compression.engine.quantize import compress as _compress

    return _compress(request, progress)
