"""What a benchmark JSON says about where it ran, split by how long it stays true.

pytest-benchmark compares `machine_info` as a whole when it loads a saved run (`pytest
--benchmark-compare`) and warns on any difference, so `machine_info` holds only what describes the
machine and the setup: `machine_info.chimera` (`machine_block`: device, precisions, threads, torch, and
the hardware fingerprint of chimera/records/env.py). What changes from one session to the next
on the same machine goes to a top-level `chimera` block of the JSON (`session_block`), which
pytest-benchmark keeps but never compares: load averages, the calibration GEMMs, and py-cpuinfo's
measured clock (`hz_actual`, moved out of `machine_info.cpu` by `move_session_fields`). The speed gate
reads the calibration from the GEMM benchmark entry itself, and the profile and device from
`machine_info.chimera`.
"""

from __future__ import annotations

import os

from chimera.records.env import fingerprint
from chimera.train.device import DeviceInfo, cpu_flags, cpu_name, probe_hardware

# py-cpuinfo's fields that are a measurement of the moment (the current clock), not a property of the CPU
VOLATILE_CPU_FIELDS = ("hz_actual", "hz_actual_friendly")


def machine_block(*, profile: str, info: DeviceInfo, mixed_precision: str, precisions: tuple[str, ...],
                  skipped: dict[str, str], torch_version: str, threads: int, capability: str,
                  hardware: dict | None = None) -> dict:
    """`machine_info.chimera`: the same in every session on the same machine and setup."""
    return {
        "bench_profile": profile, "device": info.type, "device_name": info.name, "mixed_precision": mixed_precision,
        "precisions": list(precisions), "precisions_not_benchmarked": skipped,
        "cpu_bf16_supported": info.cpu_bf16_supported, "cuda_bf16_supported": info.cuda_bf16_supported,
        "cpu_name": cpu_name(), "cpu_count": info.cpu_count, "os_cpu_count": os.cpu_count(),
        "torch": torch_version, "torch_num_threads": threads, "torch_cpu_capability": capability,
        **(fingerprint(probe_hardware(cpu_flags())) if hardware is None else hardware),
    }


def session_block(*, load_at_start: list[float] | None, load_at_end: list[float] | None, calibrations: dict,
                  cpu_clock: dict) -> dict:
    """The JSON's top-level `chimera`: what this session measured about the machine's state."""
    return {
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_at_end,
        "calibration_gemm": calibrations.get("fp32"),  # the speed gate's denominator (also a benchmark entry)
        "calibration_gemms": calibrations,  # per precision: the denominators of MFU
        "cpu_clock": cpu_clock,  # py-cpuinfo's hz_actual at the start of the session
    }


def move_session_fields(machine_info: dict) -> dict:
    """Remove py-cpuinfo's measured clock from `machine_info["cpu"]` (in place) and return it."""
    cpu = machine_info.get("cpu")
    if not isinstance(cpu, dict):
        return {}
    return {key: cpu.pop(key) for key in VOLATILE_CPU_FIELDS if key in cpu}

