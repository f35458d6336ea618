"""What the machine is, beyond the device policy: GPUs, driver, CUDA and cuDNN, RAM, the CPU flags that
decide which kernels run. A flat mapping, added to the run record's `env` and to the benchmarks'
`machine_info.chimera`, so a result from another machine says what that machine was.

Only values that stay the same from one session to the next belong here (a load average or a
calibration GEMM does not: those go to the benchmark JSON's top-level `chimera` block). `fingerprint`
is a pure function of what `probe_hardware` read, so the CUDA branch is tested on a CPU.

    chimera env    # prints it, with the rest of the environment
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

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


def probe_hardware(cpu_flags: frozenset[str]) -> Hardware:
    """Read the machine (torch, /proc, nvidia-smi as a last resort); `cpu_flags` from device.cpu_flags()."""
    import torch

    names: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    memory: tuple[int, ...] = ()
    cudnn = None
    if torch.cuda.is_available():
        props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        names = tuple(p.name for p in props)
        capabilities = tuple(f"{p.major}.{p.minor}" for p in props)
        memory = tuple(int(p.total_memory) for p in props)
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return Hardware(cpu_flags=cpu_flags, ram_bytes=ram_bytes(), gpu_names=names, gpu_capabilities=capabilities,
                    gpu_memory_bytes=memory, cuda_runtime=torch.version.cuda, cudnn_version=cudnn,
                    driver_version=nvidia_driver() if names else None)


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
