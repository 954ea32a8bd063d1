"""What a machine computes with: its CPU and the instruction sets that choose the int8 and fp32 kernels.

int8 kernels differ between CPUs (AVX2 only, AVX-512 VNNI, AMX), and so do speeds and even some int8
decisions, so every compression run, evaluation and benchmark records this next to its results. No torch at
import time: the web process and the benchmark driver read the CPU flags too.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

__all__ = ["KERNEL_ISA", "compute_platform", "cpu_instruction_sets", "cpu_model"]

# The instruction-set flags (as /proc/cpuinfo names them) that change which int8/fp32 kernels run.
KERNEL_ISA: tuple[str, ...] = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def cpu_instruction_sets(cpuinfo: str | None = None) -> list[str]:
    """The KERNEL_ISA flags this CPU has, in KERNEL_ISA order ([] where /proc/cpuinfo is unreadable, as on
    macOS). `cpuinfo` is the text of /proc/cpuinfo (read when None)."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [name for name in KERNEL_ISA if name in flags]


def cpu_model(cpuinfo: str | None = None) -> str:
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def compute_platform(device: str = "cpu") -> dict:
    """The record stored with a run: CPU model, kernel instruction sets, torch's quantized engine (which
    int8 backend torch.ao uses: x86/fbgemm/onednn/qnnpack) and the torch version, and the device."""
    quantized_engine = torch_version = None
    try:
        import torch

        quantized_engine, torch_version = str(torch.backends.quantized.engine), str(torch.__version__)
    except ImportError:  # a process without torch (web, benchmark driver) records the CPU only
        pass
    return {
        "cpu_model": cpu_model(),
        "isa": cpu_instruction_sets(),
        "quantized_engine": quantized_engine,
        "torch": torch_version,
        "device": device,
        "machine": platform.machine(),
    }
