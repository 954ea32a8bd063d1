"""A compression method's parameter: its type, default, range and meaning (torch-free).

``ParamSpec`` is the one description of a parameter that validation, ``GET /api/methods/``, the OpenAPI
schema and the README's table all read (``methods.METHOD_SCHEMAS`` holds one per parameter of each method).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = ["PARAMETER_KINDS", "ParamSpec", "FRACTION"]


PARAMETER_KINDS: tuple[str, ...] = ("bool", "int", "float", "choice", "int_list")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``kind`` is "bool", "int", "float", "choice" or "int_list".

    Numbers must lie in [minimum, maximum] with ``exclusive_max``/``exclusive_min`` making that bound
    open; ``nullable`` allows JSON null (meaning "use the derived default"). "float" accepts integers too.
    """

    kind: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PARAMETER_KINDS:
            raise ValueError(f"parameter kind {self.kind!r} is not one of {PARAMETER_KINDS}")

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description (for API docs / forms); every key is always present (null, false or
        empty when it does not apply)."""
        return {
            "type": self.kind,
            "default": self.default,
            "nullable": self.nullable,
            "doc": self.doc,
            "minimum": self.minimum,
            "exclusive_minimum": self.exclusive_min,
            "maximum": self.maximum,
            "exclusive_maximum": self.exclusive_max,
            "choices": list(self.choices),
        }

    def range_text(self) -> str:
        """The allowed values in words: "[0, 1)", ">= 1", "one of: global, layer", "" when any value of the
        type is allowed. Used by the validation message and the README's table."""
        if self.choices:
            return f"one of: {', '.join(self.choices)}"
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            left = "(" if self.exclusive_min else "["
            right = ")" if self.exclusive_max else "]"
            return f"{left}{_number(low)}, {_number(high)}{right}"
        if low is not None:
            return f"{'>' if self.exclusive_min else '>='} {_number(low)}"
        if high is not None:
            return f"{'<' if self.exclusive_max else '<='} {_number(high)}"
        return ""


def _number(value: float) -> str:
    """A bound as people write it: 0 and 1 rather than 0.0 and 1.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


class _Bounds(TypedDict):
    """Keyword arguments of ParamSpec shared by several parameters."""

    minimum: float
    maximum: float
    exclusive_max: bool


FRACTION: _Bounds = {"minimum": 0.0, "maximum": 1.0, "exclusive_max": True}
