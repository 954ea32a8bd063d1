"""Frozen input/output records of the compression engine (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["CompressionRequest", "CompressionResult"]


@dataclass(frozen=True)
class CompressionRequest:
    """One compression job: ``method`` with ``parameters`` and ``seed`` applied to ``source_dir``.

    ``output_dir`` must not exist yet; the engine creates it. ``parameters`` is copied into a
    read-only mapping so the request cannot change after validation.
    """

    method: str
    source_dir: Path
    output_dir: Path
    parameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_dir", Path(self.source_dir))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if isinstance(self.parameters, Mapping):
            object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))


@dataclass(frozen=True)
class CompressionResult:
    """What a compression produced, with size and resource figures.

    ``dtypes`` counts the tensors of the saved state dict per dtype name (e.g. "qint8", "float32");
    ``peak_rss_bytes`` is the process's peak resident set size (ru_maxrss), not a per-job delta.
    """

    output_dir: Path
    format: str
    method: str
    parameters: dict[str, Any]
    size_bytes: int
    source_size_bytes: int
    parameter_count: int
    dtypes: dict[str, int]
    wall_seconds: float
    peak_rss_bytes: int
