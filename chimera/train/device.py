"""Device policy: which device, which precision, how many loader workers, decided in one place.

`probe_device` is the only part that asks torch what the machine has; `choose_policy` is a pure
function of that description, so the CUDA and MPS branches are tested on a CPU-only machine;
`configure_process` applies a policy to this process before any tokenizer, model or CUDA work.
The targets (CUDA in Docker, native MPS, CPU) are described in docs/hardware.md.

    chimera env    # prints describe_environment(...) and the policy this machine would get
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from chimera.config import (
    ACCELERATE_PRECISION,
    DEVICE_TYPES,
    DEVICES,
    FROM_ACCELERATE,
    PRECISIONS,
    STEP_MODES,
    DeviceType,
)
from chimera.errors import ChimeraError
from chimera.records.env import VERSIONED_PACKAGES, Hardware, RunEnv, fingerprint, nvidia_driver, ram_bytes
from chimera.records.record import Precision

# `accelerate launch` writes its precision (--mixed_precision, else the config file's, else "no") here.
ACCELERATE_ENV = "ACCELERATE_MIXED_PRECISION"
# What each device may run; bf16 only where it is native (CUDA compute capability 8.0+, a CPU with
# AVX-512 BF16 or AMX): emulated bf16 is slower than fp32 and would only change the numbers. fp16 needs
# the CUDA grad scaler. MPS trains in fp32 (docs/hardware.md). `auto` is fp32 on CPU and MPS, so records
# stay bitwise comparable by default.
LEGAL_PRECISIONS = {"cuda": ("fp32", "bf16", "fp16"), "mps": ("fp32",), "cpu": ("fp32", "bf16")}
# CPU flags (Linux's names, as in /proc/cpuinfo) that mean bf16 arithmetic in hardware: x86 AVX-512 BF16 and
# AMX, Arm's BF16.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# cuBLAS needs a fixed workspace for reproducible results under use_deterministic_algorithms
# (CUDA >= 10.2; torch's reproducibility notes give ":4096:8" or ":16:8"); must be set before cuBLAS starts.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding chimera/, if it is one


@dataclass(frozen=True)
class DeviceInfo:
    """What the machine offers, as plain data (tests write these by hand for cuda and mps)."""

    type: DeviceType
    name: str  # e.g. "NVIDIA A100-SXM4-40GB", "Apple MPS (arm64)", "AMD EPYC"
    cuda_bf16_supported: bool = False  # native bf16 (compute capability >= 8.0), not emulated
    cpu_count: int = 1  # CPUs this process may run on
    cpu_bf16_supported: bool = False  # the CPU computes bf16 in hardware (NATIVE_BF16_CPU_FLAGS)

    def __post_init__(self) -> None:
        if self.type not in DEVICE_TYPES:
            raise ValueError(f"DeviceInfo.type must be one of {DEVICE_TYPES}, got {self.type!r}")
        if self.cpu_count < 1:
            raise ValueError(f"DeviceInfo.cpu_count must be >= 1, got {self.cpu_count}")
        if self.cuda_bf16_supported and self.type != "cuda":
            raise ValueError("DeviceInfo.cuda_bf16_supported is only meaningful for type 'cuda'")
        if self.cpu_bf16_supported and self.type != "cpu":
            raise ValueError("DeviceInfo.cpu_bf16_supported is only meaningful for type 'cpu'")


@dataclass(frozen=True)
class DevicePolicy:
    """How a run uses its device; the trainer reads it, the run record stores it."""

    device: DeviceType
    mixed_precision: str  # "no" | "bf16" | "fp16": the value for accelerate.Accelerator(mixed_precision=...)
    autocast: bool  # forwards under torch.amp.autocast (accelerate applies it): CUDA mixed precision only
    grad_scaler: bool  # fp16 on CUDA: accelerate creates torch.amp.GradScaler("cuda")
    pin_memory: bool  # page-locked batches speed host-to-GPU copies; CUDA only (MPS warns and ignores it)
    num_workers: int  # DataLoader worker processes
    deterministic_algorithms: bool  # torch.use_deterministic_algorithms(True)
    float32_matmul_precision: str = "high"  # torch.set_float32_matmul_precision; TF32 on CUDA only
    fused_adamw: bool = False  # torch.optim.AdamW(fused=True): one kernel for all parameters (CPU, CUDA)
    step_mode: str = "eager"  # eager | compile | graph (chimera.config.TrainConfig.step_mode, resolved)

    def __post_init__(self) -> None:
        if self.device not in DEVICE_TYPES:
            raise ValueError(f"DevicePolicy.device must be one of {DEVICE_TYPES}, got {self.device!r}")
        if self.mixed_precision not in ACCELERATE_PRECISION.values():
            raise ValueError("DevicePolicy.mixed_precision must be no, bf16 or fp16, "
                             f"got {self.mixed_precision!r}")
        if self.num_workers < 0:
            raise ValueError(f"DevicePolicy.num_workers must be >= 0, got {self.num_workers}")
        if self.step_mode not in STEP_MODES or self.step_mode == "auto":
            raise ValueError(f"DevicePolicy.step_mode must be eager, compile or graph, got {self.step_mode!r}")
        if self.float32_matmul_precision not in ("highest", "high", "medium"):
            raise ValueError("DevicePolicy.float32_matmul_precision must be highest, high or medium, "
                             f"got {self.float32_matmul_precision!r}")

    @property
    def precision(self) -> str:
        """fp32, bf16 or fp16: the precision the run trains in, in Chimera Bench's words."""
        return FROM_ACCELERATE[self.mixed_precision]


@dataclass(frozen=True)
class PrecisionChoice:
    """Which precision a run asks for and who decided it; the run record stores it as `precision`."""

    requested: str  # "auto" | "fp32" | "bf16" | "fp16": train.precision before the launch setting is read
    source: str  # "config" (--precision, --set train.precision, the matrix file) | "accelerate" | "auto"
    accelerate_launch: str | None  # $ACCELERATE_MIXED_PRECISION as found ("no", "bf16", ...), None when unset
    precision: str  # what choose_policy is asked for; still "auto" when nobody chose

    def policy_for(self, info: DeviceInfo, *, step_mode: str = "eager") -> DevicePolicy:
        """choose_policy for this choice; an illegal precision's one line says where it came from."""
        try:
            return choose_policy(info, precision=self.precision, step_mode=step_mode)
        except ChimeraError as exc:
            if self.source != "accelerate":
                raise
            raise ChimeraError(f"${ACCELERATE_ENV}={self.accelerate_launch} (set by accelerate launch or its "
                               f"config file): {exc}") from None

    def record(self, policy: DevicePolicy) -> Precision:
        """The run record's `precision`: the value that ran and how it was chosen."""
        return Precision(value=policy.precision, source=self.source, requested=self.requested,  # type: ignore[arg-type]
                         accelerate_launch=self.accelerate_launch)


def resolve_precision(configured: str, accelerate_launch: str | None) -> PrecisionChoice:
    """Precedence: an explicit train.precision > accelerate's launch setting > auto (choose_policy's default).

    `accelerate_launch` is $ACCELERATE_MIXED_PRECISION, which `accelerate launch` sets from its
    --mixed_precision flag or config file ("no" when neither says); Accelerator(mixed_precision=...)
    would silently override it, so it is read here instead.
    """
    if configured not in PRECISIONS:
        raise ChimeraError(f"precision {configured!r}: use one of {', '.join(PRECISIONS)}")
    launch = (accelerate_launch or "").strip().lower() or None
    if configured != "auto":
        return PrecisionChoice(configured, "config", launch, configured)
    if launch is None:
        return PrecisionChoice("auto", "auto", None, "auto")
    if launch not in FROM_ACCELERATE:
        raise ChimeraError(f"${ACCELERATE_ENV}={launch} (accelerate launch --mixed_precision): Chimera Bench runs "
                           f"{', '.join(FROM_ACCELERATE)} (fp32, bf16, fp16); use one of them or --precision")
    return PrecisionChoice("auto", "accelerate", launch, FROM_ACCELERATE[launch])


def precision_problem(info: DeviceInfo, precision: str) -> str | None:
    """Why `info` cannot run `precision` (LEGAL_PRECISIONS, bf16 only where native) in one line, else None."""
    if precision not in LEGAL_PRECISIONS[info.type]:
        if info.type == "mps":
            return f"precision {precision} on mps: Chimera Bench trains in fp32 on MPS (docs/hardware.md); use fp32"
        return f"precision {precision} on {info.type}: fp16 needs CUDA's grad scaler; use fp32 or bf16 where native"
    if precision == "bf16" and info.type == "cuda" and not info.cuda_bf16_supported:
        return (f"precision bf16: {info.name} has no native bf16 (needs compute capability 8.0+); "
                "use fp16 or fp32")
    if precision == "bf16" and info.type == "cpu" and not info.cpu_bf16_supported:
        return (f"precision bf16: this CPU ({info.name}) has no native bf16 (its flags lack avx512_bf16 and "
                "amx_bf16; emulated bf16 is slower than fp32); use fp32")
    return None


def native_precisions(info: DeviceInfo) -> tuple[tuple[str, ...], dict[str, str]]:
    """The precisions to benchmark on `info` (fp32, then its native half precision) and why bf16 is left out.

    CUDA: bf16 where native, else fp16 (fp16 tensor cores predate bf16). CPU: bf16 where native. MPS: fp32.
    """
    if info.type == "cuda" and not info.cuda_bf16_supported:
        return ("fp32", "fp16"), {"bf16": precision_problem(info, "bf16") or ""}
    why = precision_problem(info, "bf16")
    return (("fp32",), {"bf16": why}) if why else (("fp32", "bf16"), {})


def probe_device(requested: str = "auto") -> DeviceInfo:
    """Describe the device to use: `requested`, or for "auto" the first of cuda, mps, cpu that works."""
    if requested not in DEVICES:
        raise ChimeraError(f"--device {requested}: unknown device; use one of {', '.join(DEVICES)}")
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
    return DeviceInfo("cpu", cpu_name(), cpu_count=cpus, cpu_bf16_supported=cpu_has_native_bf16(cpu_flags()))


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as py-cpuinfo reads them: on Linux every flag of /proc/cpuinfo (x86 `flags`, Arm
    `Features`) plus CPUID's own spellings of some, on an Intel Mac sysctl's; empty where it finds none (Apple
    silicon: macOS lists no flags there)."""
    return frozenset(_cpu_info().get("flags") or ())


def cpu_has_native_bf16(flags: frozenset[str] | set[str], capability: str | None = None) -> bool:
    """True when the CPU computes bf16 in hardware: a NATIVE_BF16_CPU_FLAGS flag, or a torch CPU capability
    that names AMX or BF16 (torch.backends.cpu.get_cpu_capability(); plain "AVX512" does not imply bf16)."""
    if capability is None:
        capability = torch.backends.cpu.get_cpu_capability()
    return bool(set(flags) & set(NATIVE_BF16_CPU_FLAGS)) or any(k in capability.upper() for k in ("AMX", "BF16"))


def choose_step_mode(info: DeviceInfo, requested: str, precision: str) -> str:
    """The step mode a run takes (train.step_mode): auto is graph on CUDA and eager elsewhere (compiling was
    measured no faster on a 2-core CPU, bench/README.md), and eager wherever fp16 trains, since its grad
    scaler checks for inf on the host every step. ChimeraError for a mode this device or precision cannot run."""
    if requested not in STEP_MODES:
        raise ChimeraError(f"train.step_mode {requested!r}: use one of {', '.join(STEP_MODES)}")
    if requested == "auto":
        return "graph" if info.type == "cuda" and precision != "fp16" else "eager"
    if requested == "graph" and info.type != "cuda":
        raise ChimeraError(f"train.step_mode graph replays CUDA graphs, and this run's device is {info.type}: "
                           "use compile or eager")
    if requested != "eager" and precision == "fp16":
        raise ChimeraError(f"train.step_mode {requested} cannot run fp16: its grad scaler checks for inf on the "
                           "host every step; train in bf16 (or fp32), or use step_mode eager")
    return requested


def choose_policy(info: DeviceInfo, *, precision: str = "auto", step_mode: str = "eager") -> DevicePolicy:
    """The policy for a device; "auto" picks bf16 (else fp16) on CUDA and fp32 elsewhere; an illegal
    precision (precision_problem) or step mode (choose_step_mode) is a ChimeraError with one line naming
    what the hardware lacks."""
    if precision not in PRECISIONS:
        raise ChimeraError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = ("bf16" if info.cuda_bf16_supported else "fp16") if info.type == "cuda" else "fp32"
    problem = precision_problem(info, precision)
    if problem is not None:
        raise ChimeraError(problem)
    mixed = ACCELERATE_PRECISION[precision]
    on_cuda = info.type == "cuda"
    return DevicePolicy(
        device=info.type,
        mixed_precision=mixed,
        autocast=mixed != "no",  # CUDA mixed precision, or bf16 on a CPU that has it
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
        step_mode=choose_step_mode(info, step_mode, precision),
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


def describe_environment(info: DeviceInfo, policy: DevicePolicy) -> RunEnv:
    """The environment fingerprint for `chimera env` and the run record's `env` (the hardware's fields:
    chimera/records/env.py)."""
    return RunEnv.from_json({
        "python": platform.python_version(),
        **{name: _version(name) for name in VERSIONED_PACKAGES},
        "device_type": info.type,
        "device_name": info.name,
        "cuda_bf16_supported": info.cuda_bf16_supported,
        "cpu_bf16_supported": info.cpu_bf16_supported,
        "cpu_count": info.cpu_count,
        "torch_num_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "mixed_precision": policy.mixed_precision,
        "precision": policy.precision,
        "deterministic_algorithms": policy.deterministic_algorithms,
        "float32_matmul_precision": policy.float32_matmul_precision,
        "fused_adamw": policy.fused_adamw,
        "cpu_name": cpu_name(),
        **fingerprint(probe_hardware(cpu_flags())),
        **git_state(),
    })


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
    """The CPU's brand as py-cpuinfo reads it (Linux: /proc/cpuinfo's `model name`; macOS: "Apple M2 Pro")."""
    return _cpu_info().get("brand_raw") or platform.processor() or platform.machine() or "unknown CPU"


@functools.cache
def _cpu_info() -> dict:
    """py-cpuinfo's description of this machine's CPU, read once per process (it takes ~0.4 s: on x86 it runs
    CPUID in a child process)."""
    import cpuinfo  # py-cpuinfo2, the maintained fork pytest-benchmark uses too

    return cpuinfo.get_cpu_info()


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


def probe_hardware(cpu_flags: frozenset[str]) -> Hardware:
    """Read the machine (torch, /proc, nvidia-smi as a last resort); `cpu_flags` from device.cpu_flags()."""
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
