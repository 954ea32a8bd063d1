"""The deployment profile: the conditions an evaluation runs under, declared and part of its configuration digest.

A compressed model's decisions can depend on how it is run: the batch size and which texts share a batch
(dynamic int8 computes one activation scale over the whole padded batch), the padding side, the maximum
length, the threads, the device, and on a CPU the instruction sets that choose the int8 kernels and torch's
quantized engine. An evaluation states all of them, so its evidence holds where the model will run.

Pure Python (no torch, no Django): the web process builds and checks profiles; the engine runs them.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

__all__ = [
    "Batching",
    "DeploymentProfile",
    "PaddingSide",
    "PROFILE_FIELDS",
    "default_quantized_engine",
    "profile_from_dict",
    "profile_problems",
    "requirement_conflicts",
]


class Batching(StrEnum):
    """How the texts are put into batches."""

    FIXED = "fixed"  # in suite order, `batch_size` at a time
    LENGTH_SORTED = "length_sorted"  # sorted by token length (shortest first), then `batch_size` at a time
    SINGLE = "single"  # one example at a time (an online service): batch_size is 1


class PaddingSide(StrEnum):
    RIGHT = "right"
    LEFT = "left"


QUANTIZED_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")


def default_quantized_engine(machine: str | None = None) -> str | None:
    """torch's default int8 engine for this machine's architecture (without importing torch)."""
    arch = (machine or platform.machine()).lower()
    if arch in ("x86_64", "amd64", "i686", "x86"):
        return "x86"
    if arch in ("arm64", "aarch64"):
        return "qnnpack"
    return None


@dataclass(frozen=True)
class DeploymentProfile:
    """How the model runs in deployment (see the module docstring). ``isa`` is the CPU's kernel instruction
    sets (compression.engine.cpu.KERNEL_ISA names) the evaluation runs with; a worker whose CPU differs
    refuses the evaluation rather than record evidence from other kernels."""

    batch_size: int = 32
    batching: str = Batching.FIXED.value
    padding_side: str = PaddingSide.RIGHT.value
    max_length: int = 64
    threads: int | None = None
    device: str = "cpu"
    isa: tuple[str, ...] = ()
    quantized_engine: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "isa", tuple(self.isa))
        problems = profile_problems(asdict(self))
        if problems:
            raise ValueError("; ".join(f"{k}: {' '.join(v)}" for k, v in problems.items()))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in field order (this is what the configuration digest covers)."""
        out = asdict(self)
        out["isa"] = list(self.isa)
        return out

    @property
    def effective_batch_size(self) -> int:
        return 1 if self.batching == Batching.SINGLE else self.batch_size


PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DeploymentProfile))


def _is_int(value: Any, minimum: int) -> bool:
    return type(value) is int and value >= minimum


# Each field: (is the value valid, what is expected); generation_profile reuses the deployment fields.
PROFILE_CHECKS: dict[str, tuple[Any, str]] = {
    "batch_size": (lambda v: _is_int(v, 1) and v <= 4096, "An integer from 1 to 4096."),
    "batching": (lambda v: v in Batching.__members__.values(), f"One of {[b.value for b in Batching]}."),
    "padding_side": (lambda v: v in PaddingSide.__members__.values(), "'right' or 'left'."),
    "max_length": (lambda v: _is_int(v, 2) and v <= 8192, "An integer from 2 to 8192."),
    "threads": (lambda v: v is None or (_is_int(v, 1) and v <= 256), "null or an integer from 1 to 256."),
    "device": (lambda v: isinstance(v, str) and 0 < len(v) <= 32, "A device name such as 'cpu' or 'cuda'."),
    "isa": (
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) and 0 < len(x) <= 32 for x in v),
        "A list of instruction-set names such as ['avx2', 'avx512_vnni'].",
    ),
    "quantized_engine": (
        lambda v: v is None or v in QUANTIZED_ENGINES,
        f"null or one of {list(QUANTIZED_ENGINES)}.",
    ),
}


def profile_problems(data: Any) -> dict[str, list[str]]:
    """Every problem of a profile given as a dict, by field ({} when valid). Unknown fields are problems."""
    if not isinstance(data, dict):
        return {"profile": ["Must be an object with some of: " + ", ".join(PROFILE_FIELDS) + "."]}
    problems: dict[str, list[str]] = {}
    for key in data:
        if key not in PROFILE_FIELDS:
            problems[str(key)] = [f"Unknown profile field; expected some of: {', '.join(PROFILE_FIELDS)}."]
    for key, (ok, expected) in PROFILE_CHECKS.items():
        if key in data and not ok(data[key]):
            problems[key] = [f"{expected} Got {data[key]!r}."]
    if data.get("batching") == Batching.SINGLE and "batch_size" in data and data["batch_size"] != 1:
        problems.setdefault("batch_size", []).append("Batching 'single' runs one example at a time: batch_size is 1.")
    return problems


def profile_from_dict(data: dict[str, Any], *, defaults: DeploymentProfile) -> DeploymentProfile:
    """``defaults`` with the given fields replaced; batching 'single' sets batch_size 1 when not given.
    Raises ValueError (call profile_problems first for per-field messages)."""
    merged = {**defaults.as_dict(), **data}
    if merged.get("batching") == Batching.SINGLE and "batch_size" not in data:
        merged["batch_size"] = 1
    merged["isa"] = tuple(merged["isa"])
    return DeploymentProfile(**merged)


def requirement_conflicts(required: dict[str, Any], profile: DeploymentProfile) -> dict[str, list[str]]:
    """Where ``profile`` breaks a policy's required profile, by field. A required ``isa`` lists instruction
    sets the CPU must have; every other field must be equal."""
    conflicts: dict[str, list[str]] = {}
    actual = profile.as_dict()
    for key, value in required.items():
        if key == "isa":
            missing = [name for name in value if name not in profile.isa]
            if missing:
                conflicts[key] = [f"The policy requires a CPU with {value}; this profile's CPU lacks {missing}."]
        elif actual.get(key) != value:
            conflicts[key] = [f"The policy requires {key} = {value!r}; this profile has {actual.get(key)!r}."]
    return conflicts
