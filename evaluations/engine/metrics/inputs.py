"""Checks and conversions of the metric functions' inputs (one-dimensional bool, probability, class,
subgroup and source-index arrays; masks; bin counts). Each raises EngineError("invalid_parameter") naming
the argument."""

from __future__ import annotations

import numpy as np

from compression.engine.errors import EngineError

__all__ = [
    "bool_vector",
    "check_bins",
    "class_vector",
    "decision_confidence",
    "probabilities",
    "same_length",
    "select",
    "source_vector",
    "subgroup_vector",
]


def bool_vector(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D bool array; raise invalid_parameter for other shapes or non-0/1 values."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise EngineError("invalid_parameter", f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype != np.bool_:
        if array.size and not np.isin(array, (0, 1)).all():
            raise EngineError("invalid_parameter", f"{name} must hold booleans (or 0/1)")
        array = array.astype(bool)
    return array


def same_length(**arrays: np.ndarray) -> int:
    """Return the common length of the arrays; raise invalid_parameter when they differ."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise EngineError("invalid_parameter", f"arrays differ in length: {lengths}")
    return next(iter(lengths.values()))


def decision_confidence(decision: np.ndarray, unsafe_prob: np.ndarray) -> np.ndarray:
    """Probability the model gave to the decision it took: p for unsafe, 1 − p for safe."""
    return np.where(decision, unsafe_prob, 1.0 - unsafe_prob)


def probabilities(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array of probabilities in [0, 1]."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise EngineError("invalid_parameter", f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and (not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0):
        raise EngineError("invalid_parameter", f"{name} must hold probabilities in [0, 1]")
    return array


def check_bins(bins: object) -> int:
    if type(bins) is not int or bins < 1:
        raise EngineError("invalid_parameter", f"bins must be an integer >= 1, got {bins!r}")
    return bins


def select(mask: object, n: int) -> np.ndarray:
    """A bool mask of length n (all True for None)."""
    if mask is None:
        return np.ones(n, dtype=bool)
    selected = bool_vector(mask, "mask")
    if len(selected) != n:
        raise EngineError("invalid_parameter", f"mask has length {len(selected)}, expected {n}")
    return selected


def class_vector(values: object, name: str, *, allow_missing: bool) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise EngineError("invalid_parameter", f"{name} must be a one-dimensional integer array")
    array = array.astype(np.int64)
    low = -1 if allow_missing else 0
    if array.size and array.min() < low:
        raise EngineError("invalid_parameter", f"{name} holds values below {low}")
    return array


def subgroup_vector(values: object, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != n:
        raise EngineError("invalid_parameter", f"subgroup must be a one-dimensional array of length {n}")
    return array.astype(str)


def source_vector(values: object, n: int) -> np.ndarray:
    source = np.asarray(values)
    if source.ndim != 1 or len(source) != n or (source.size and not np.issubdtype(source.dtype, np.integer)):
        raise EngineError("invalid_parameter", f"source_index must be a one-dimensional integer array of length {n}")
    source = source.astype(np.int64)
    if source.size and (source.min() < -1 or source.max() >= n or (source == np.arange(n)).any()):
        raise EngineError("invalid_parameter", "source_index must hold -1 or the index of another example")
    return source
