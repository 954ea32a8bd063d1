"""A model folder's parameter count from its safetensors headers, without loading a weight (torch-free: the web
process registers uploads with it).

A safetensors file starts with the length of its JSON header (8 bytes, little-endian) and the header, which
gives every tensor's dtype and shape. The count is the elements of the floating-point tensors of the folder's
weights (``model.safetensors``, or the shards a ``model.safetensors.index.json`` names): what
``parameters.count_parameters`` counts on the loaded model for the folders ``save_pretrained`` writes (a tied
weight is saved once; integer and boolean tensors are buffers such as position ids, not learned weights). Formats
whose weights are packed (quantized state dicts) are not counted here: their runs measure the loaded model."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from compression.engine.formats import WEIGHTS_FILE

__all__ = ["INDEX_FILE", "safetensors_parameter_count"]

INDEX_FILE = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit


def _weight_files(directory: Path) -> list[Path] | None:
    if (directory / WEIGHTS_FILE).is_file():
        return [directory / WEIGHTS_FILE]
    index = directory / INDEX_FILE
    if not index.is_file():
        return None
    try:
        weight_map = json.loads(index.read_text("utf-8")).get("weight_map")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    if not isinstance(weight_map, dict) or not weight_map:
        return None
    names = sorted({str(name) for name in weight_map.values()})
    if any(Path(name).name != name for name in names):  # shards live beside the index, nowhere else
        return None
    return [directory / name for name in names]


def _file_count(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) != 8:
                return None
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            return None
        dtype = str(entry.get("dtype", ""))
        if dtype.startswith("F") or dtype == "BF16":
            total += math.prod(shape)
    return total


def safetensors_parameter_count(directory: Path) -> int | None:
    """The folder's learned weights counted from its safetensors headers; None when it has no safetensors
    weights or a header cannot be read (the count is then unknown, never a guess)."""
    files = _weight_files(Path(directory))
    if not files:
        return None
    total = 0
    for path in files:
        count = _file_count(path)
        if count is None:
            return None
        total += count
    return total
