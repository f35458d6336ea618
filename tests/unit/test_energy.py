"""Energy is read from hardware counters or reported unavailable with the reason, never guessed: RAPL on fake
powercap trees (packages summed, sub-domains and psys left out, a wrap counted once), NVML through a fake
nvidia-ml-py, and the record's energy block from the loop's timing."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from chimera.errors import ChimeraError
from chimera.records.record import Energy, TargetEnergy, TargetTime, TimingPoint
from chimera.records.store import validate_record
from chimera.train.energy import POWERCAP, EnergyMeter, JouleClock, energy_record, meter_for, nvml_meter, rapl_meter
from tests.unit.record_factory import minimal_record

WRAP_UJ = 262_143_328_850  # a common Intel package's max_energy_range_uj


def _zone(root: Path, name: str, label: str, energy_uj: int, wrap_uj: int = WRAP_UJ) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"{label}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap_uj}\n")
    return zone


def _set(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def two_sockets(tmp_path) -> tuple[Path, Path, Path]:
    """Two packages with core, uncore and dram sub-zones, a psys zone and the MMIO copy of package 0."""
    root = tmp_path / "powercap"
    packages = _zone(root, "intel-rapl:0", "package-0", 1_000_000), _zone(root, "intel-rapl:1", "package-1", 5_000_000)
    for sub, label in (("intel-rapl:0:0", "core"), ("intel-rapl:0:1", "uncore"), ("intel-rapl:1:0", "dram")):
        _zone(root, sub, label, 7_000_000)
    _zone(root, "intel-rapl:2", "psys", 9_000_000)
    _zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    (root / "intel-rapl").mkdir()  # the control type: no counter of its own
    return root, *packages


def test_rapl_sums_the_packages_only_from_the_moment_it_opened(two_sockets):
    root, package0, package1 = two_sockets
    meter = rapl_meter(root)
    assert meter.available and meter.source == "rapl" and meter.joules() == 0.0
    assert "package-0, package-1" in meter.scope and "every process" in meter.scope
    _set(package0, 3_500_000)  # +2.5 J
    _set(package1, 6_000_000)  # +1.0 J
    for sub in ("intel-rapl:0:0", "intel-rapl:1:0", "intel-rapl:2", "intel-rapl-mmio:0"):
        _set(root / sub, 99_000_000)  # sub-domains, psys and the MMIO copy move too: none is counted
    assert meter.joules() == pytest.approx(3.5)


def test_rapl_counts_a_wrap_of_the_counter_as_the_rest_of_its_range(tmp_path):
    package = _zone(tmp_path, "intel-rapl:0", "package-0", WRAP_UJ - 2_000_000)
    meter = rapl_meter(tmp_path)
    _set(package, 500_000)  # past the top: 2 J to the wrap, 0.5 J after it
    assert meter.joules() == pytest.approx(2.5)
    _set(package, 1_500_000)
    assert meter.joules() == pytest.approx(3.5)


def test_no_powercap_folder_is_unavailable_with_the_reason(tmp_path):
    meter = rapl_meter(tmp_path / "absent")
    assert not meter.available and meter.joules() is None and meter.source is None
    assert meter.unavailable.startswith(f"no RAPL domain under {tmp_path / 'absent'}: it does not exist")


def test_a_powercap_folder_without_a_package_is_unavailable(tmp_path):
    _zone(tmp_path, "intel-rapl:0", "psys", 1)
    _zone(tmp_path, "intel-rapl:0:0", "core", 1)
    assert rapl_meter(tmp_path).unavailable == f"no RAPL package domain under {tmp_path}"


def test_an_energy_file_only_root_may_read_is_unavailable_permission_denied(tmp_path, monkeypatch):
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 1)
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert rapl_meter(tmp_path).unavailable == (f"{package / 'energy_uj'} not readable: permission denied (root only "
                                                "since the PLATYPUS fix, CVE-2020-8694)")


def test_a_counter_that_stops_reading_makes_the_meter_unavailable_not_wrong(tmp_path):
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    meter = rapl_meter(tmp_path)
    (package / "energy_uj").unlink()
    assert meter.joules() is None and meter.unavailable.startswith("rapl counter stopped reading:")


def test_this_machines_powercap_is_read_or_named_unreadable():
    meter = rapl_meter()
    assert meter.available or str(POWERCAP) in meter.unavailable
    assert meter_for("cpu").unavailable == meter.unavailable


def test_mps_has_no_counter_and_says_so():
    assert meter_for("mps").unavailable == "no energy counter for mps (RAPL on CPU and NVML on CUDA only)"


def _fake_pynvml(monkeypatch, *, millijoules: list[int], supported: bool = True) -> types.ModuleType:
    """A stand-in for nvidia-ml-py: one GPU whose total-energy counter returns `millijoules` in turn."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    readings = iter(millijoules)

    def energy(handle):
        if not supported:
            raise NVMLError("Not Supported")
        return next(readings)

    nvml.NVMLError = NVMLError
    nvml.nvmlInit = lambda: None
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    nvml.nvmlDeviceGetHandleByUUID = lambda uuid: uuid
    nvml.nvmlDeviceGetName = lambda handle: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetTotalEnergyConsumption = energy
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


def test_nvml_counts_the_gpus_millijoules_since_the_meter_opened(monkeypatch):
    _fake_pynvml(monkeypatch, millijoules=[10_000_000, 10_250_000, 10_600_000])
    meter = nvml_meter(["GPU-0"])
    assert meter.source == "nvml" and "NVIDIA H100 80GB HBM3" in meter.scope
    assert meter.joules() == pytest.approx(250.0)
    assert meter.joules() == pytest.approx(600.0)


def test_nvml_absent_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    meter = nvml_meter()
    assert meter.unavailable == "NVML not readable: nvidia-ml-py is not installed (requirements-cuda.txt pins it)"


def test_a_gpu_without_the_energy_counter_is_unavailable_with_nvmls_word(monkeypatch):
    _fake_pynvml(monkeypatch, millijoules=[], supported=False)
    assert nvml_meter().unavailable == ("NVIDIA H100 80GB HBM3: NVML's total-energy counter not readable (Not "
                                        "Supported; it needs a Volta or newer GPU)")


class _Scripted(EnergyMeter):
    """A meter whose counter reads the given joules in turn (None: it stopped reading)."""

    def __init__(self, *readings: float | None) -> None:
        super().__init__("rapl", [], scope="test")
        self.readings = iter(readings)

    def joules(self) -> float | None:
        value = next(self.readings)
        if value is None:
            self.unavailable = "stopped"
        return value


def test_the_loops_joules_continue_across_a_resume_and_stop_when_not_counted_from_the_first_step():
    clock = JouleClock(_Scripted(100.0, 130.0, 150.0), None, first_step=True)
    assert (clock.tick(), clock.tick()) == (30.0, 50.0)
    resumed = JouleClock(_Scripted(7.0, 17.0), 50.0, first_step=False)
    assert resumed.tick() == 60.0
    assert JouleClock(_Scripted(7.0, 17.0), None, first_step=False).tick() is None  # the checkpoint had none
    assert JouleClock(EnergyMeter.none("no RAPL"), 50.0, first_step=False).tick() is None
    broken = JouleClock(_Scripted(0.0, 5.0, None, 9.0), None, first_step=True)
    assert (broken.tick(), broken.tick(), broken.tick()) == (5.0, None, None)


def test_the_records_energy_names_the_joules_to_each_reached_target_and_validates():
    timing = [TimingPoint(step=10, step_time_s=0.1, samples_per_s=1.0, wall_s=2.0, joules=40.0),
              TimingPoint(step=20, step_time_s=0.1, samples_per_s=1.0, wall_s=4.0, joules=90.0)]
    targets = [TargetTime(metric="val_acc", target=0.5, reached=True, step=20, samples=640, train_s=3.0, wall_s=4.0,
                          value=0.6),
               TargetTime(metric="val_acc", target=0.9, reached=False, step=None, samples=None, train_s=None,
                          wall_s=None, value=None)]
    energy = energy_record(_Scripted(120.0), targets, timing)
    assert energy == Energy(source="rapl", scope="test", joules=120.0,
                            to_target=[TargetEnergy(metric="val_acc", target=0.5, joules=90.0),
                                       TargetEnergy(metric="val_acc", target=0.9, joules=None)])
    record = replace(minimal_record(), timing=timing, time_to_target=targets, energy=energy)
    validate_record(record.to_json())
    assert type(record).from_json(record.to_json()) == record


def test_an_unmeasured_runs_energy_is_only_the_reason_and_a_mixed_block_is_refused():
    unmeasured = energy_record(EnergyMeter.none("no RAPL package domain under /x"), [], [])
    record = replace(minimal_record(), energy=unmeasured)
    assert record.to_json()["energy"] == {"unavailable": "no RAPL package domain under /x"}
    validate_record(record.to_json())
    mixed = record.to_json()
    mixed["energy"]["joules"] = 1.0
    with pytest.raises(ChimeraError, match="energy"):
        validate_record(mixed)


class _Rising(EnergyMeter):
    """A counter that has used 2 J more at every read: a run's joules are then a count of its reads."""

    def __init__(self) -> None:
        super().__init__("rapl", [], scope="RAPL package-0: test")
        self.reads = 0

    def joules(self) -> float:
        self.reads += 1
        return 2.0 * (self.reads - 1)


def test_a_runs_record_carries_joules_per_evaluation_to_its_targets_and_for_the_whole_run(tmp_path, monkeypatch):
    from accelerate.state import AcceleratorState, GradientState

    from chimera.matrix import load_matrix
    from chimera.train import run as run_module
    from chimera.train.plan import make_plan
    from tests.helpers import SYNTHETIC_TINY, write_synthetic_ag_news

    meter = _Rising()
    monkeypatch.setattr(run_module, "meter_for", lambda device: meter)
    config = load_matrix().resolve("fixed/dense", "ci", device="cpu",
                                   overrides=[*SYNTHETIC_TINY, "evaluation.target_val_acc=[0.01, 1.0]"])
    AcceleratorState._reset_state(reset_partial_state=True)  # another test's Accelerator may hold a precision
    GradientState._reset_state()
    record = run_module.run_plan(make_plan(config, out_dir=tmp_path), data_dir=write_synthetic_ag_news(tmp_path / "d"),
                                 cache_dir=tmp_path / "cache", quiet=True)
    counted = [point.joules for point in record.timing]
    assert counted == sorted(counted) and len(counted) == 4 and counted[0] > 0  # one per evaluation, rising
    at = {point.step: point.joules for point in record.timing}
    assert record.energy == Energy(source="rapl", scope="RAPL package-0: test", joules=2.0 * (meter.reads - 1),
                                   to_target=[TargetEnergy(metric=t.metric, target=t.target,
                                                           joules=at[t.step] if t.reached else None)
                                              for t in record.time_to_target])
    assert record.energy.to_target[0].joules == counted[0]  # 0.01 is reached at the first evaluation
    assert record.energy.joules > counted[-1]  # the whole run: the final measurement too
