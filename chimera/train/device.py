"""Device policy: which device, which precision, how many loader workers, decided in one place.

`probe_device` is the only part that asks torch what the machine has; `choose_policy` is a pure
function of that description, so the CUDA and MPS branches are tested on a CPU-only machine;
`configure_process` applies a policy to this process before any tokenizer, model or CUDA work.
The targets (CUDA in Docker, native MPS, CPU) are described in docs/hardware.md.

    chimera env    # prints describe_environment(...) and the policy this machine would get
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from chimera.errors import ChimeraError

DEVICE_TYPES = ("cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ACCELERATE_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # ours -> Accelerator(mixed_precision=)
# Only CUDA runs mixed precision here. MPS and CPU train in fp32 so their records stay comparable run to
# run: bf16 autocast on this CPU was 1.2-1.4x faster but changes the numbers (shared/FACTS.md).
LEGAL_PRECISIONS = {"cuda": ("fp32", "bf16", "fp16"), "mps": ("fp32",), "cpu": ("fp32",)}
# cuBLAS needs a fixed workspace for reproducible results under use_deterministic_algorithms
# (CUDA >= 10.2; torch's reproducibility notes give ":4096:8" or ":16:8"); must be set before cuBLAS starts.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
VERSIONED_PACKAGES = ("torch", "accelerate", "datasets", "tokenizers", "nltk")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding chimera/, if it is one


@dataclass(frozen=True)
class DeviceInfo:
    """What the machine offers, as plain data (tests write these by hand for cuda and mps)."""

    type: str  # "cpu" | "cuda" | "mps"
    name: str  # e.g. "NVIDIA A100-SXM4-40GB", "Apple MPS (arm64)", "AMD EPYC"
    cuda_bf16_supported: bool = False  # native bf16 (compute capability >= 8.0), not emulated
    cpu_count: int = 1  # CPUs this process may run on

    def __post_init__(self) -> None:
        if self.type not in DEVICE_TYPES:
            raise ValueError(f"DeviceInfo.type must be one of {DEVICE_TYPES}, got {self.type!r}")
        if self.cpu_count < 1:
            raise ValueError(f"DeviceInfo.cpu_count must be >= 1, got {self.cpu_count}")
        if self.cuda_bf16_supported and self.type != "cuda":
            raise ValueError("DeviceInfo.cuda_bf16_supported is only meaningful for type 'cuda'")


@dataclass(frozen=True)
class DevicePolicy:
    """How a run uses its device; the trainer reads it, the run record stores it."""

    device: str  # "cpu" | "cuda" | "mps"
    mixed_precision: str  # "no" | "bf16" | "fp16": the value for accelerate.Accelerator(mixed_precision=...)
    autocast: bool  # forwards under torch.amp.autocast (accelerate applies it): CUDA mixed precision only
    grad_scaler: bool  # fp16 on CUDA: accelerate creates torch.amp.GradScaler("cuda")
    pin_memory: bool  # page-locked batches speed host-to-GPU copies; CUDA only (MPS warns and ignores it)
    num_workers: int  # DataLoader worker processes
    deterministic_algorithms: bool  # torch.use_deterministic_algorithms(True)
    float32_matmul_precision: str = "high"  # torch.set_float32_matmul_precision; TF32 on CUDA only
    fused_adamw: bool = False  # torch.optim.AdamW(fused=True): one kernel for all parameters (CPU, CUDA)

    def __post_init__(self) -> None:
        if self.device not in DEVICE_TYPES:
            raise ValueError(f"DevicePolicy.device must be one of {DEVICE_TYPES}, got {self.device!r}")
        if self.mixed_precision not in ACCELERATE_PRECISION.values():
            raise ValueError("DevicePolicy.mixed_precision must be no, bf16 or fp16, "
                             f"got {self.mixed_precision!r}")
        if self.num_workers < 0:
            raise ValueError(f"DevicePolicy.num_workers must be >= 0, got {self.num_workers}")
        if self.float32_matmul_precision not in ("highest", "high", "medium"):
            raise ValueError("DevicePolicy.float32_matmul_precision must be highest, high or medium, "
                             f"got {self.float32_matmul_precision!r}")


def probe_device(requested: str = "auto") -> DeviceInfo:
    """Describe the device to use: `requested`, or for "auto" the first of cuda, mps, cpu that works."""
    if requested not in ("auto", *DEVICE_TYPES):
        raise ChimeraError(f"--device {requested}: unknown device; use auto, cpu, cuda or mps")
    has_cuda = torch.cuda.is_available()
    has_mps = torch.backends.mps.is_available()
    if requested == "cuda" and not has_cuda:
        raise ChimeraError(_why_no_cuda())
    if requested == "mps" and not has_mps:
        raise ChimeraError(_why_no_mps())
    kind = requested if requested != "auto" else "cuda" if has_cuda else "mps" if has_mps else "cpu"
    cpus = _cpu_count()
    if kind == "cuda":
        return DeviceInfo("cuda", torch.cuda.get_device_name(),
                          cuda_bf16_supported=torch.cuda.is_bf16_supported(including_emulation=False),
                          cpu_count=cpus)
    if kind == "mps":
        return DeviceInfo("mps", f"Apple MPS ({platform.machine()})", cpu_count=cpus)
    return DeviceInfo("cpu", cpu_name(), cpu_count=cpus)


def choose_policy(info: DeviceInfo, *, precision: str = "auto") -> DevicePolicy:
    """The policy for a device; `precision` "auto" picks bf16 (else fp16) on CUDA and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ChimeraError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = ("bf16" if info.cuda_bf16_supported else "fp16") if info.type == "cuda" else "fp32"
    if precision == "bf16" and info.type == "cuda" and not info.cuda_bf16_supported:
        raise ChimeraError(f"precision bf16: {info.name} has no native bf16 (needs compute capability 8.0+); "
                           "use fp16 or fp32")
    if precision not in LEGAL_PRECISIONS[info.type]:
        raise ChimeraError(f"precision {precision} on {info.type}: only CUDA runs mixed precision in Chimera "
                           "Bench (CPU and MPS train in fp32); use fp32")
    mixed = ACCELERATE_PRECISION[precision]
    on_cuda = info.type == "cuda"
    return DevicePolicy(
        device=info.type,
        mixed_precision=mixed,
        autocast=on_cuda and mixed != "no",
        grad_scaler=on_cuda and mixed == "fp16",  # bf16 has fp32's exponent range: no loss scaling needed
        pin_memory=on_cuda,
        # CPU: workers would compete with the training threads for the same cores (2 in CI), and
        # batches are cheap to build. MPS: macOS starts workers with spawn (each re-imports torch and
        # chimera, per epoch here), and forking after Metal is initialised is unsafe. CUDA: workers
        # overlap batch building with GPU compute; half the cores leaves the rest to the main process.
        num_workers=min(4, info.cpu_count // 2) if on_cuda else 0,
        # MPS: some ops this model uses have no deterministic MPS kernel (embedding backward and
        # index_put accumulate nondeterministically: pytorch/pytorch#195404, #97574; torch 2.13's
        # use_deterministic_algorithms docs list no MPS guarantees), so the flag would promise nothing
        # or raise mid-run. CPU: training runs here with the flag on. CUDA (not run here): cuBLAS is
        # deterministic given CUBLAS_WORKSPACE_CONFIG (set by configure_process), and an op without a
        # deterministic CUDA kernel raises a RuntimeError naming it (warn_only=False): loud, not silent.
        deterministic_algorithms=info.type in ("cpu", "cuda"),
        # torch has the fused AdamW kernel for CPU and CUDA. Measured on 2 CPU cores, the optimiser step
        # fell from 4.8 to 1.0 ms (fixed/dense, full shapes) and from 19 to 3.3 ms (baseline/dense).
        # MPS keeps the foreach default.
        fused_adamw=info.type in ("cpu", "cuda"),
    )


def configure_process(policy: DevicePolicy) -> None:
    """Apply process-wide settings for `policy`; call before any tokenizer, model or CUDA work.

    PYTORCH_ENABLE_MPS_FALLBACK is left to the user: set to 1 it runs ops MPS lacks on the CPU
    (slower, silently) instead of failing; see docs/hardware.md.
    """
    # The tokenizers library warns (and turns itself off) when a process forks after its thread
    # pool was used, e.g. DataLoader workers; batches are tokenised in the loader anyway.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # "high" allows TF32 for fp32 matmuls on CUDA (Ampere and newer). On CPU it changes nothing:
    # torch 2.13.0+cpu on this 2-core AMD EPYC (capability AVX2), matmul 512x512, Linear, bmm and
    # scaled_dot_product_attention gave bitwise-equal results under "highest" and "high".
    torch.set_float32_matmul_precision(policy.float32_matmul_precision)
    if policy.deterministic_algorithms and policy.device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)  # ":16:8" also valid
    torch.use_deterministic_algorithms(policy.deterministic_algorithms, warn_only=False)


def describe_environment(info: DeviceInfo, policy: DevicePolicy) -> dict:
    """The environment fingerprint for `chimera env` and the run record's `env`."""
    return {
        "python": platform.python_version(),
        **{name: _version(name) for name in VERSIONED_PACKAGES},
        "torch_cuda": torch.version.cuda,  # CUDA the torch build targets; None for CPU and MPS builds
        "device_type": info.type,
        "device_name": info.name,
        "cuda_bf16_supported": info.cuda_bf16_supported,
        "cpu_count": info.cpu_count,
        "torch_num_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "mixed_precision": policy.mixed_precision,
        "deterministic_algorithms": policy.deterministic_algorithms,
        "float32_matmul_precision": policy.float32_matmul_precision,
        "fused_adamw": policy.fused_adamw,
        **git_state(),
    }


def git_state(repo: Path = _PACKAGE_ROOT) -> dict:
    """`git_commit` (HEAD) and `git_dirty` of the checkout chimera runs from; None when not a checkout."""
    try:
        top, commit = _git(repo, "rev-parse", "--show-toplevel", "HEAD").split()
        if Path(top).resolve() != repo.resolve():  # an installed copy inside some other repository
            return {"git_commit": None, "git_dirty": None}
        dirty = bool(_git(repo, "status", "--porcelain").strip())
    except (OSError, ValueError, subprocess.SubprocessError):  # no git, not a repo, no commit yet
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                          check=True).stdout


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: respects taskset and container CPU sets
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return (f"--device cuda: this torch ({torch.__version__}) is built without CUDA; "
                "install requirements-cuda.txt or use the CUDA Docker image (make bench-cuda)")
    return ("--device cuda: torch sees no CUDA device (check nvidia-smi and the driver; in Docker "
            "run with --gpus all)")


def _why_no_mps() -> str:
    if not torch.backends.mps.is_built():
        return (f"--device mps: this torch ({torch.__version__}) is built without MPS; MPS needs the macOS "
                "arm64 torch from requirements-mps.txt")
    return "--device mps: MPS is not available (needs Apple silicon and macOS 14 or newer)"
