"""Peak memory of one benchmark, measured over that benchmark only.

A process-wide high-water mark (`ru_maxrss`, or CUDA's peak without a reset) says how big the largest
benchmark *so far* was, so every later cell inherits it. `CellMemory` instead starts each benchmark from
what is really live (garbage collected, freed heap returned to the OS) and measures the peak of that
benchmark alone:

- CPU RSS: on Linux the kernel's own high-water mark is reset at the start (`/proc/self/clear_refs`,
  value 5) and read back as `VmHWM` at the end: exact, no overhead. Elsewhere a thread samples the RSS
  (psutil) every `SAMPLE_S` seconds and keeps the maximum (a spike shorter than that can be missed).
- CUDA: `torch.cuda.reset_peak_memory_stats`, then `max_memory_allocated` (tensors) and
  `max_memory_reserved` (what the caching allocator held from the driver).
- MPS: keeps no peak; the same sampling thread reads `torch.mps.driver_allocated_memory` (everything the
  Metal driver holds for this process) and records the maximum and the value at the end.

Every reader is injected (`MemoryProbes`), so the CUDA and MPS branches are tested on a CPU. Figures are
MiB. Bench-only code: nothing under chimera/ imports it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20
SAMPLE_S = 0.005  # sampling period where no kernel high-water mark can be reset
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def read_status_kib(field: str, status: Path = STATUS) -> int | None:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in KiB; None where there is no such file."""
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_kernel_peak(clear_refs: Path = CLEAR_REFS) -> bool:
    """Set the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0); False where refused."""
    try:
        clear_refs.write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def current_rss_bytes() -> int:
    """Resident set size of this process now (psutil: Linux, macOS, Windows)."""
    import psutil

    return psutil.Process().memory_info().rss


def return_freed_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc `malloc_trim`), so memory an
    earlier benchmark freed is neither counted in the next one's RSS nor silently reused by it."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:  # find_library needs ldconfig, which a slim image may lack; glibc's soname is stable
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # no glibc (musl has no malloc_trim)
            pass


class PeakSampler:
    """Samples `read()` on a daemon thread every `period_s` seconds; `stop()` returns the maximum seen."""

    def __init__(self, read: Callable[[], int], period_s: float = SAMPLE_S) -> None:
        self._read, self._period = read, period_s
        self._peak = read()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._period):
            self._peak = max(self._peak, self._read())

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return max(self._peak, self._read())


@dataclass(frozen=True)
class MemoryProbes:
    """What `CellMemory` asks the machine; defaults are the real readers, tests pass fakes."""

    device_type: str  # "cpu" | "cuda" | "mps"
    reset_rss_peak: Callable[[], bool] = reset_kernel_peak  # False: no resettable peak, sample instead
    rss_peak_kib: Callable[[], int | None] = lambda: read_status_kib("VmHWM")
    rss_bytes: Callable[[], int] = current_rss_bytes
    cuda_reset: Callable[[], None] | None = None  # torch.cuda.reset_peak_memory_stats
    cuda_max_allocated: Callable[[], int] | None = None
    cuda_max_reserved: Callable[[], int] | None = None
    mps_driver_bytes: Callable[[], int] | None = None  # torch.mps.driver_allocated_memory
    free_heap: Callable[[], None] = return_freed_heap
    sample_s: float = SAMPLE_S

    @classmethod
    def for_device(cls, device_type: str) -> MemoryProbes:
        """The real readers for a torch device type."""
        import torch

        if device_type == "cuda":
            return cls("cuda", cuda_reset=torch.cuda.reset_peak_memory_stats,
                       cuda_max_allocated=torch.cuda.max_memory_allocated,
                       cuda_max_reserved=torch.cuda.max_memory_reserved)
        if device_type == "mps":
            return cls("mps", mps_driver_bytes=torch.mps.driver_allocated_memory)
        return cls("cpu")


class CellMemory:
    """`start()` before a benchmark builds anything, `stop()` after it: the fields for its extra_info."""

    def __init__(self, probes: MemoryProbes) -> None:
        self.probes = probes
        self._rss_sampler: PeakSampler | None = None
        self._mps_sampler: PeakSampler | None = None
        self._rss_start = 0

    def start(self) -> CellMemory:
        p = self.probes
        p.free_heap()
        if p.cuda_reset is not None:
            p.cuda_reset()
        self._rss_start = p.rss_bytes()
        if not p.reset_rss_peak():
            self._rss_sampler = PeakSampler(p.rss_bytes, p.sample_s)
        if p.mps_driver_bytes is not None:
            self._mps_sampler = PeakSampler(p.mps_driver_bytes, p.sample_s)
        return self

    def stop(self) -> dict:
        p = self.probes
        if self._rss_sampler is not None:
            peak, method = self._rss_sampler.stop(), f"sampled every {p.sample_s * 1e3:g} ms"
        else:
            kib = p.rss_peak_kib()
            peak, method = (kib * 1024, "kernel VmHWM, reset at the start") if kib else (p.rss_bytes(), "end")
        fields = {"cpu_rss_start_mib": self._rss_start / MIB, "cpu_rss_peak_mib": peak / MIB,
                  "cpu_rss_growth_mib": max(0, peak - self._rss_start) / MIB, "cpu_rss_method": method}
        if p.cuda_max_allocated is not None and p.cuda_max_reserved is not None:
            fields |= {"cuda_max_allocated_mib": p.cuda_max_allocated() / MIB,
                       "cuda_max_reserved_mib": p.cuda_max_reserved() / MIB}
        if self._mps_sampler is not None and p.mps_driver_bytes is not None:
            fields |= {"mps_driver_peak_mib": self._mps_sampler.stop() / MIB,
                       "mps_driver_end_mib": p.mps_driver_bytes() / MIB}
        return fields | headline(p.device_type, fields)


def headline(device_type: str, fields: dict) -> dict:
    """`peak_memory_mib` and `memory_kind`: the one figure a table shows for the device the benchmark ran
    on (CUDA: peak allocated by tensors; MPS: peak driver memory; CPU: peak RSS of the benchmark)."""
    key = {"cuda": "cuda_max_allocated_mib", "mps": "mps_driver_peak_mib"}.get(device_type, "cpu_rss_peak_mib")
    if key not in fields:
        key = "cpu_rss_peak_mib"
    return {"peak_memory_mib": fields[key], "memory_kind": key.removesuffix("_mib")}
