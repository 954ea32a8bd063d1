"""The CPU facts recorded with every run and benchmark (compression/engine/cpu.py)."""

from compression.engine.cpu import KERNEL_ISA, compute_platform, cpu_instruction_sets, cpu_model

AMD_AVX2 = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2 sha_ni
"""
INTEL_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu avx fma avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx_vnni
"""


def test_instruction_sets_are_read_from_the_cpu_flags_in_a_fixed_order():
    assert cpu_instruction_sets(AMD_AVX2) == ["avx2", "fma"]
    assert cpu_instruction_sets(INTEL_AMX) == [
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "avx_vnni",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    ]
    assert cpu_instruction_sets("") == []  # no /proc/cpuinfo (macOS): nothing claimed
    assert cpu_model(INTEL_AMX) == "Intel(R) Xeon(R) Platinum 8481C"


def test_this_machine_s_platform_names_its_kernels():
    record = compute_platform("cpu")
    assert set(record["isa"]) <= set(KERNEL_ISA) and record["device"] == "cpu"
    assert record["quantized_engine"] and record["torch"]  # a torch process knows its int8 backend
    assert record["isa"] == cpu_instruction_sets()
