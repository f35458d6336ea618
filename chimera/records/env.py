"""The machine and software a run trained on (the record's `env`), typed so a reader names each field, and
the hardware fingerprint that fills part of it.

`chimera.train.device.describe_environment` fills one and `chimera env` prints it. Frozen: nothing changes the
machine a run ran on after the fact. Every key is written, None where the machine has no such thing (no GPU,
no git checkout); a version-1 record written before a field existed gets None there from
chimera.records.upgrade, so None may also mean "not recorded".
Imports no other chimera module but chimera.config, for the device types.

The fingerprint is what the machine is beyond the device policy: GPUs, driver, CUDA and cuDNN, RAM, the CPU
flags that decide which kernels run. A flat mapping, added to the record's `env` and to the benchmarks'
`machine_info.chimera`, so a result from another machine says what that machine was. Only values that stay
the same from one session to the next belong there (a load average or a calibration GEMM does not: those go to
the benchmark JSON's top-level `chimera` block). `fingerprint` is a pure function of what
`chimera.train.device.probe_hardware` read, so the CUDA branch is tested on a CPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from chimera.config import DeviceType

# The libraries whose versions a record names, each a field of RunEnv (None when not installed).
VERSIONED_PACKAGES = ("torch", "accelerate", "datasets", "tokenizers", "nltk")
# Fields a version-1 record may lack (they were added later); the upgrade writes None for each.
ADDED_AFTER_VERSION_1 = ("cpu_bf16_supported", "cpu_name", "cpu_flags", "ram_gib", "gpu_count", "gpu_names",
                         "gpu_capabilities", "gpu_memory_gib", "cudnn_version", "cuda_driver")
_TUPLES = ("cpu_flags", "gpu_names", "gpu_capabilities", "gpu_memory_gib")  # JSON arrays, tuples here


@dataclass(frozen=True, kw_only=True)
class RunEnv:
    """Versions, device, threads, the precision policy, the hardware fingerprint and the git state of a run."""

    python: str
    torch: str | None
    accelerate: str | None
    datasets: str | None
    tokenizers: str | None
    nltk: str | None
    platform: str  # platform.platform()
    device_type: DeviceType
    device_name: str
    cuda_bf16_supported: bool
    cpu_bf16_supported: bool | None  # None: a version-1 record made before it was probed
    cpu_count: int  # CPUs this process may use (affinity), not the machine's
    torch_num_threads: int
    mixed_precision: Literal["no", "bf16", "fp16"]  # what accelerate was given
    precision: Literal["fp32", "bf16", "fp16"]  # the same in our names (the record's `precision` says who chose)
    deterministic_algorithms: bool
    float32_matmul_precision: str  # torch.set_float32_matmul_precision: highest, high or medium
    fused_adamw: bool
    cpu_name: str | None
    cpu_flags: tuple[str, ...] | None  # the ones that decide kernels (RELEVANT_CPU_FLAGS)
    ram_gib: float | None
    gpu_count: int | None
    gpu_names: tuple[str, ...] | None
    gpu_capabilities: tuple[str, ...] | None  # "9.0" per GPU
    gpu_memory_gib: tuple[float, ...] | None
    torch_cuda: str | None  # the CUDA torch was built for; None for CPU and MPS builds
    cudnn_version: int | None
    cuda_driver: str | None  # NVIDIA kernel driver
    git_commit: str | None  # None outside a git checkout
    git_dirty: bool | None

    def to_json(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunEnv:
        """Every field from its key: a missing one is an error naming it (load_record's schema check names it
        first), never a silent default."""
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"record env: missing key {missing[0]!r}")
        return cls(**{f.name: tuple(data[f.name]) if f.name in _TUPLES and data[f.name] is not None
                      else data[f.name] for f in fields(cls)})


# CPU features that change which matmul kernels run or which precisions are native: x86 vector and matrix
# extensions (AVX2/FMA for fp32, AVX-512 VNNI/BF16/FP16 and AMX for low precision), Arm's SIMD, SVE and BF16.
RELEVANT_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                      "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
                      "asimd", "sve", "sve2", "bf16", "i8mm")
NVIDIA_VERSION_FILE = Path("/proc/driver/nvidia/version")
_DRIVER_IN_PROC = re.compile(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]*)")


@dataclass(frozen=True)
class Hardware:
    """What probe_hardware read; tests build these by hand."""

    cpu_flags: frozenset[str] = frozenset()
    ram_bytes: int | None = None
    gpu_names: tuple[str, ...] = ()
    gpu_capabilities: tuple[str, ...] = ()  # "9.0" per GPU
    gpu_memory_bytes: tuple[int, ...] = ()
    cuda_runtime: str | None = None  # the CUDA torch was built for (torch.version.cuda)
    cudnn_version: int | None = None  # torch.backends.cudnn.version(), e.g. 91002 for 9.10.2
    driver_version: str | None = None  # NVIDIA kernel driver, e.g. "570.124.06"


def fingerprint(hw: Hardware) -> dict:
    """The flat fields a record's env and a benchmark's machine_info gain."""
    return {
        "cpu_flags": sorted(set(hw.cpu_flags) & set(RELEVANT_CPU_FLAGS)),
        "ram_gib": None if hw.ram_bytes is None else round(hw.ram_bytes / 2**30, 1),
        "gpu_count": len(hw.gpu_names),
        "gpu_names": list(hw.gpu_names),
        "gpu_capabilities": list(hw.gpu_capabilities),
        "gpu_memory_gib": [round(b / 2**30, 1) for b in hw.gpu_memory_bytes],
        "torch_cuda": hw.cuda_runtime,  # the CUDA torch was built for; None for CPU and MPS builds
        "cudnn_version": hw.cudnn_version,
        "cuda_driver": hw.driver_version,
    }


def ram_bytes() -> int | None:
    """Physical memory of the machine (not of a container's limit)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf names (Windows)
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None


def nvidia_driver(version_file: Path = NVIDIA_VERSION_FILE) -> str | None:
    """The NVIDIA kernel driver's version: /proc/driver/nvidia/version (Linux, also inside containers run
    with the NVIDIA toolkit), else `nvidia-smi`; None when neither answers."""
    try:
        match = _DRIVER_IN_PROC.search(version_file.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None
