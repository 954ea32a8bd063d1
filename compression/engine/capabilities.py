"""Which optional compression methods this Python environment can run (torch-free to import).

``int8_weight_only`` needs torchao importable *and* working with this torch. Finding that out means
importing torch, which the web process must never do, so the answer is found once, at start-up (a
Django system check, a Celery worker starting; see ``compression.capabilities``), and recorded here
with :func:`record`. ``methods.method_available`` only reads what was recorded: nothing on a request
path probes in a child interpreter. A worker (torch already imported) probes in process when nothing is
recorded yet; it costs little there.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata

__all__ = ["OPTIONAL_METHOD_PROBES", "environment", "probe", "probe_all", "record", "recorded", "forget"]

# Methods that need an optional package, and the code that proves it works.
OPTIONAL_METHOD_PROBES: Mapping[str, str] = {
    "int8_weight_only": (
        "import warnings, logging; logging.disable(logging.CRITICAL); warnings.simplefilter('ignore'); import torch; "
        "from torchao.quantization import quantize_, Int8WeightOnlyConfig; "
        "m = torch.nn.Sequential(torch.nn.Linear(8, 4)); quantize_(m, Int8WeightOnlyConfig()); "
        "y = m(torch.ones(2, 8)); assert y.shape == (2, 4)"
    ),
    # torchao's int4 weight-only path that runs on a CPU (Int4WeightOnlyConfig's packed formats need CUDA or
    # the mslk kernels in torchao 0.18): int4 groups of 32 through IntxWeightOnlyConfig.
    "int4_weight_only": (
        "import warnings, logging; logging.disable(logging.CRITICAL); warnings.simplefilter('ignore'); import torch; "
        "from torchao.quantization import quantize_, IntxWeightOnlyConfig; "
        "from torchao.quantization.granularity import PerGroup; "
        "m = torch.nn.Sequential(torch.nn.Linear(64, 4)); "
        "quantize_(m, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))); "
        "y = m(torch.ones(2, 64)); assert y.shape == (2, 4)"
    ),
}

_recorded: dict[str, bool] = {}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def environment() -> dict[str, str]:
    """What an answer depends on (read from package metadata: imports nothing heavy). A recorded answer
    for another environment is not used."""
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": _version("torch"),
        "torchao": _version("torchao"),
    }


def probe(method: str) -> bool:
    """Run ``method``'s probe: in process where torch is imported already (a worker), otherwise in a child
    interpreter (start-up only: this may take seconds). Any failure means "not usable here"."""
    code = OPTIONAL_METHOD_PROBES[method]
    if "torch" in sys.modules:
        try:
            exec(compile(code, "<probe>", "exec"), {})  # noqa: S102 - fixed code from this module
            return True
        except Exception:  # noqa: BLE001 - any failure means "not usable here"
            return False
    try:
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return completed.returncode == 0


def probe_all() -> dict[str, bool]:
    return {method: probe(method) for method in OPTIONAL_METHOD_PROBES}


def record(answers: Mapping[str, bool]) -> None:
    """Remember, for this process, whether each optional method can run."""
    _recorded.update({method: bool(ok) for method, ok in answers.items() if method in OPTIONAL_METHOD_PROBES})


def recorded(method: str) -> bool | None:
    """The recorded answer for ``method``, or None when none was recorded in this process."""
    return _recorded.get(method)


def forget() -> None:
    """Drop every recorded answer (tests)."""
    _recorded.clear()
