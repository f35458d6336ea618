"""The machine and software a run trained on (the record's `env`), typed so a reader names each field.

`chimera.train.device.describe_environment` fills one (the hardware part from chimera/train/fingerprint.py)
and `chimera env` prints it. Frozen: nothing changes the machine a run ran on after the fact. Every key is
written, None where the machine has no such thing (no GPU, no git checkout); a version-1 record written
before a field existed gets None there from chimera.records.upgrade, so None may also mean "not recorded".
Imports no other chimera module but chimera.config, for the device types.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
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
    cpu_flags: tuple[str, ...] | None  # the ones that decide kernels (fingerprint.RELEVANT_CPU_FLAGS)
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
