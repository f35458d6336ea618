"""Energy a run or a benchmark used, read from the hardware's own counters and never estimated.

Two counters: RAPL through Linux powercap (`/sys/class/powercap/intel-rapl:N/energy_uj`, also AMD's since
Linux 5.8; the CPU packages only) and NVML's total-energy counter of a GPU (`nvmlDeviceGetTotalEnergyConsumption`,
Volta and newer, through nvidia-ml-py where it is installed: requirements-cuda.txt pins it). Where neither
can be read (a VM, macOS, an energy_uj only root may read) the meter is unavailable and says why in one line.
Written here, not taken from a library: codecarbon falls back to an estimate from the CPU's TDP when it cannot
measure (a guess), and zeus needs scikit-learn, pandas and amdsmi to read the same two counters.

    meter = meter_for(accelerator.device)   # opened: joules() counts from here
    ...; meter.joules()                     # joules since it was opened, or None (meter.unavailable says why)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from chimera.records.record import Energy, TargetTime, TimingPoint
from chimera.records.time_to_target import joules_to_target

POWERCAP = Path("/sys/class/powercap")
# Since the PLATYPUS fix (CVE-2020-8694, Linux 5.10 and the stable kernels of Nov 2020) energy_uj is root's only.
_ROOT_ONLY = "permission denied (root only since the PLATYPUS fix, CVE-2020-8694)"


@dataclass
class _Counter:
    """One hardware counter read in joules; it starts again from 0 past `wraps_at` (None: it never wraps)."""

    read: Callable[[], float]
    wraps_at: float | None
    last: float
    total: float = 0.0

    def advance(self) -> float:
        """Joules counted since the first reading; a wrap is seen only if read at least once per wrap."""
        now = self.read()
        step = now - self.last
        if step < 0:
            if self.wraps_at is None:
                raise OSError(f"the counter went back from {self.last:.3f} to {now:.3f} J (driver reloaded?)")
            step += self.wraps_at
        self.last, self.total = now, self.total + step
        return self.total


class EnergyMeter:
    """Joules since the meter was opened, summed over its counters; `unavailable` says why when it reads none.

    A RAPL package counter wraps every max_energy_range_uj (262 kJ on common Intel parts: about 20 minutes at
    200 W); read the meter at least that often (a run reads it at every evaluation and checkpoint).
    """

    def __init__(self, source: str | None, counters: Sequence[_Counter], *, scope: str = "",
                 unavailable: str | None = None) -> None:
        self.source = source  # "rapl" | "nvml"; None when unavailable
        self.scope = scope  # what the joules include, in words
        self.unavailable = unavailable
        self._counters = list(counters)

    @classmethod
    def none(cls, reason: str) -> EnergyMeter:
        return cls(None, [], unavailable=reason)

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def joules(self) -> float | None:
        """Joules since the meter was opened; None when unavailable (a counter that stops reading makes it so)."""
        if self.unavailable is not None:
            return None
        try:
            return sum(counter.advance() for counter in self._counters)
        except (OSError, ValueError) as exc:
            self.unavailable = f"{self.source} counter stopped reading: {exc}"
            return None


def rapl_meter(root: Path = POWERCAP) -> EnergyMeter:
    """The CPU packages' RAPL counters under `root` (top-level zones `intel-rapl:N` named package-N).

    Sub-domains (core, uncore, dram) and psys are left out: core and uncore are inside the package, psys
    contains it, and a dram zone's joules are not the CPU's.
    """
    if not root.is_dir():
        return EnergyMeter.none(f"no RAPL domain under {root}: it does not exist (no powercap in this kernel, "
                                "as in most VMs, or not Linux)")
    packages = sorted(zone for zone in root.glob("intel-rapl:*")
                      if zone.name.count(":") == 1 and _text(zone / "name").startswith("package"))
    if not packages:
        return EnergyMeter.none(f"no RAPL package domain under {root}")
    counters = []
    for zone in packages:
        energy = zone / "energy_uj"
        try:
            counters.append(_Counter(read=partial(_microjoules, energy), last=_microjoules(energy),
                                     wraps_at=_microjoules(zone / "max_energy_range_uj")))
        except PermissionError as exc:
            return EnergyMeter.none(f"{exc.filename or energy} not readable: {_ROOT_ONLY}")
        except OSError as exc:
            return EnergyMeter.none(f"{exc.filename or energy} not readable: {exc.strerror or exc}")
        except ValueError as exc:  # not a number
            return EnergyMeter.none(f"{zone} not readable: {exc}")
    names = ", ".join(_text(zone / "name") for zone in packages)
    return EnergyMeter("rapl", counters, scope=f"RAPL {names}: the whole CPU package, every process on it "
                                               "(DRAM and GPUs not included)")


def nvml_meter(uuids: Sequence[str] | None = None) -> EnergyMeter:
    """NVML's total-energy counters of the GPUs `uuids` names ("GPU-..."), else of every GPU NVML sees."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return EnergyMeter.none("NVML not readable: nvidia-ml-py is not installed (requirements-cuda.txt pins it)")
    try:
        pynvml.nvmlInit()
        handles = ([pynvml.nvmlDeviceGetHandleByUUID(uuid) for uuid in uuids] if uuids is not None else
                   [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())])
        names = [_decoded(pynvml.nvmlDeviceGetName(handle)) for handle in handles]
    except pynvml.NVMLError as exc:
        return EnergyMeter.none(f"NVML: {exc}")
    if not handles:
        return EnergyMeter.none("NVML sees no GPU")
    counters = []
    for handle, name in zip(handles, names, strict=True):
        read = _nvml_reader(pynvml, handle)
        try:
            counters.append(_Counter(read=read, last=read(), wraps_at=None))
        except OSError as exc:
            return EnergyMeter.none(f"{name}: NVML's total-energy counter not readable ({exc}; it needs a Volta "
                                    "or newer GPU)")
    return EnergyMeter("nvml", counters, scope=f"NVML, {', '.join(names)}: the whole board, every process on it "
                                                "(host CPU not included)")


def meter_for(device: torch.device | str) -> EnergyMeter:
    """The meter of a run or benchmark on `device`: NVML for its GPU on CUDA, RAPL on CPU, none elsewhere."""
    device = torch.device(device)
    if device.type == "cpu":
        return rapl_meter()
    if device.type != "cuda":
        return EnergyMeter.none(f"no energy counter for {device.type} (RAPL on CPU and NVML on CUDA only)")
    try:  # NVML names GPUs by UUID whatever CUDA_VISIBLE_DEVICES renumbers
        uuid = str(torch.cuda.get_device_properties(device).uuid)
    except (AttributeError, RuntimeError) as exc:
        return EnergyMeter.none(f"no UUID for {device} from torch ({exc})")
    return nvml_meter([uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"])


class JouleClock:
    """The loop's running joules, continued across resumes like its wall clock: `tick()` adds the joules since
    the last tick to those carried in; None when they were not counted from the first step."""

    def __init__(self, meter: EnergyMeter | None, carried: float | None, *, first_step: bool) -> None:
        counting = meter is not None and meter.available and (first_step or carried is not None)
        self.meter = meter if counting else None
        self.total = (carried or 0.0) if counting else None
        self.mark = meter.joules() if counting else None

    def tick(self) -> float | None:
        if self.meter is None:
            return None
        now = self.meter.joules()
        if now is None:  # the counter stopped reading: what was counted is no longer the whole
            self.meter = self.total = None
            return None
        self.total, self.mark = self.total + now - self.mark, now
        return self.total


def energy_record(meter: EnergyMeter, targets: Sequence[TargetTime], timing: Sequence[TimingPoint]) -> Energy:
    """The record's `energy`: the meter's joules so far and those to each reached target, or why there are none."""
    joules = meter.joules()
    if joules is None:
        return Energy(unavailable=meter.unavailable)
    return Energy(source=meter.source, scope=meter.scope, joules=joules,  # type: ignore[arg-type]
                  to_target=joules_to_target(targets, timing))


def _microjoules(path: Path) -> float:
    """A powercap counter file in joules."""
    return int(path.read_text(encoding="ascii").strip()) / 1e6


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _decoded(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _nvml_reader(pynvml, handle) -> Callable[[], float]:
    def read() -> float:
        try:
            return pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0  # millijoules since the driver loaded
        except pynvml.NVMLError as exc:
            raise OSError(str(exc)) from exc
    return read
