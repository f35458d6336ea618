"""Peak memory per benchmark (bench/memory.py): each benchmark's own peak, never one inherited from an earlier
benchmark; CUDA and MPS branches through injected readers; the figures reach the tables and the report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from bench.memory import MIB, CellMemory, MemoryProbes, PeakSampler, headline, read_status_kib, reset_kernel_peak
from bench.summarise import summarise, summarise_cells
from chimera.analysis import bench_memory, report
from tests.unit.record_factory import run_record
from tests.unit.test_bench_gate import bench_file, entry

LINUX = sys.platform.startswith("linux") and Path("/proc/self/status").exists()


def fake_cpu(rss: list[int], hwm_kib: int | None, resettable: bool = True) -> MemoryProbes:
    """CPU probes: RSS readings in order (the last repeats), a VmHWM in KiB."""
    readings = iter(rss)
    last = [rss[0]]

    def rss_bytes() -> int:
        last[0] = next(readings, last[0])
        return last[0]

    return MemoryProbes("cpu", reset_rss_peak=lambda: resettable, rss_peak_kib=lambda: hwm_kib,
                        rss_bytes=rss_bytes, free_heap=lambda: None, sample_s=0.001)


def test_cpu_peak_is_the_kernel_high_water_mark_reset_at_the_start_and_growth_is_over_the_start():
    fields = CellMemory(fake_cpu([100 * MIB], hwm_kib=250 * 1024)).start().stop()
    assert fields["cpu_rss_start_mib"] == 100 and fields["cpu_rss_peak_mib"] == 250
    assert fields["cpu_rss_growth_mib"] == 150
    assert fields["cpu_rss_method"].startswith("kernel VmHWM")
    assert fields["peak_memory_mib"] == 250 and fields["memory_kind"] == "cpu_rss_peak"


def test_without_a_resettable_peak_a_thread_samples_the_rss_and_keeps_the_maximum():
    probes = fake_cpu([100 * MIB, 120 * MIB, 400 * MIB, 130 * MIB], hwm_kib=None, resettable=False)
    meter = CellMemory(probes).start()
    time.sleep(0.05)
    fields = meter.stop()
    assert fields["cpu_rss_peak_mib"] == 400 and fields["cpu_rss_growth_mib"] == 300
    assert fields["cpu_rss_method"].startswith("sampled every")


def test_cuda_peaks_are_reset_per_benchmark_and_read_as_allocated_and_reserved():
    calls: list[str] = []
    probes = MemoryProbes("cuda", reset_rss_peak=lambda: True, rss_peak_kib=lambda: 2048 * 1024,
                          rss_bytes=lambda: 1024 * MIB, free_heap=lambda: calls.append("free"),
                          cuda_reset=lambda: calls.append("reset"), cuda_max_allocated=lambda: 300 * MIB,
                          cuda_max_reserved=lambda: 512 * MIB)
    meter = CellMemory(probes).start()
    assert calls == ["free", "reset"]  # freed first, so the reset peak starts from what is live
    fields = meter.stop()
    assert (fields["cuda_max_allocated_mib"], fields["cuda_max_reserved_mib"]) == (300, 512)
    assert fields["peak_memory_mib"] == 300 and fields["memory_kind"] == "cuda_max_allocated"
    assert fields["cpu_rss_peak_mib"] == 2048  # host memory is recorded too


def test_mps_driver_memory_is_sampled_for_its_peak_and_read_at_the_end():
    driver = iter([10 * MIB, 50 * MIB, 900 * MIB, 700 * MIB])
    last = [0]

    def driver_bytes() -> int:
        last[0] = next(driver, last[0])
        return last[0]

    probes = MemoryProbes("mps", reset_rss_peak=lambda: True, rss_peak_kib=lambda: 500 * 1024,
                          rss_bytes=lambda: 400 * MIB, free_heap=lambda: None, mps_driver_bytes=driver_bytes,
                          sample_s=0.001)
    meter = CellMemory(probes).start()
    time.sleep(0.05)
    fields = meter.stop()
    assert fields["mps_driver_peak_mib"] == 900 and fields["mps_driver_end_mib"] == 700
    assert fields["memory_kind"] == "mps_driver_peak" and fields["peak_memory_mib"] == 900


def test_headline_falls_back_to_rss_when_the_device_figure_is_missing():
    assert headline("cuda", {"cpu_rss_peak_mib": 5.0}) == {"peak_memory_mib": 5.0, "memory_kind": "cpu_rss_peak"}


def test_status_fields_are_read_in_kib_and_an_unwritable_reset_reports_false(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t   99999 kB\n")
    assert read_status_kib("VmHWM", status) == 123456 and read_status_kib("VmRSS", status) == 99999
    assert read_status_kib("VmHWM", tmp_path / "absent") is None
    assert reset_kernel_peak(tmp_path / "no" / "clear_refs") is False


def test_sampler_stops_and_returns_at_least_the_first_and_last_reading():
    values = iter(range(1, 10**6))
    sampler = PeakSampler(lambda: next(values), period_s=0.001)
    time.sleep(0.01)
    assert sampler.stop() >= 2


@pytest.mark.skipif(not LINUX, reason="the kernel's resettable high-water mark is Linux's")
def test_a_small_benchmark_after_a_big_one_reports_its_own_peak_not_the_big_ones():
    big = b"\x01" * (300 * MIB)  # written, so resident
    del big  # an earlier benchmark's peak: ru_maxrss would report it for every later benchmark
    fields = CellMemory(MemoryProbes("cpu")).start()
    small = b"\x02" * (40 * MIB)
    result = fields.stop()
    del small
    assert result["cpu_rss_method"].startswith("kernel VmHWM")
    assert 35 <= result["cpu_rss_growth_mib"] <= 120, result
    assert result["cpu_rss_peak_mib"] < result["cpu_rss_start_mib"] + 200, result


def memory_entry(cell: str, peak: float, growth: float, **extra) -> dict:
    return entry(f"test_train_step[fp32-{cell}]", "train-step", 0.1, cell=cell, precision="fp32",
                 bench_profile="ci", samples_per_s=320.0, mfu=0.5, cpu_rss_start_mib=peak - growth,
                 cpu_rss_peak_mib=peak, cpu_rss_growth_mib=growth, **extra)


def test_summaries_show_each_cells_own_peak_and_growth(tmp_path):
    path = bench_file(tmp_path / "b.json", steps={}, other=(memory_entry("fixed/dense", 612.0, 41.0),
                                                            memory_entry("baseline/moe", 905.4, 330.2)))
    full = summarise(path)
    assert "| peak memory MiB |" in full.splitlines()[2] and "612 (+41)" in full and "905 (+330)" in full
    cells = summarise_cells(path).splitlines()
    rows = [line for line in cells if line.startswith("| fixed/") or line.startswith("| baseline/")]
    assert rows == ["| fixed/dense | fp32 | 100 ms | 320 | 50% | 612 (+41) |  |",
                    "| baseline/moe | fp32 | 100 ms | 320 | 50% | 905 (+330) |  |"]
    assert "Memory: peak RSS" in cells[-1]


def test_summaries_mark_the_old_process_wide_figure_as_such(tmp_path):
    old = entry("test_train_step[fixed/dense]", "train-step", 0.1, cell="fixed/dense", peak_memory_mib=975.2)
    assert "975 (process high-water mark)" in summarise(bench_file(tmp_path / "b.json", steps={}, other=(old,)))


def test_the_report_has_a_memory_table_with_each_cells_median(tmp_path):
    loaded = [(Path(f"{cell}/record.json"), run_record(cell, 0)) for cell in ("fixed/dense", "baseline/moe")]
    (tmp_path / "bench").mkdir()
    for i, (dense, moe) in enumerate(((600.0, 900.0), (620.0, 910.0), (640.0, 950.0))):
        entries = [memory_entry("fixed/dense", dense, dense - 560), memory_entry("baseline/moe", moe, moe - 560),
                   memory_entry("fixed/dense", 5000.0, 5000.0, injected_matmuls=100),  # the gate proof: ignored
                   memory_entry("fixed/moe", 700.0, 50.0) | {"extra_info": {"cell": "fixed/moe"}}]  # no figure
        (tmp_path / "bench" / f"{i}.json").write_text(json.dumps({"benchmarks": entries}))
    memory = bench_memory.bench_memory(tmp_path / "bench", {"ci"})
    assert set(memory) == {("fixed/dense", "fp32"), ("baseline/moe", "fp32")}
    assert memory[("fixed/dense", "fp32")]["cpu_rss_peak_mib"] == 620.0
    images = {name: Path(f"{name}.png") for name in ("loss_curves", "accuracy_curves", "time_to_quality")}
    by_cell = {cell: [record] for _, record in loaded for cell in [record.cell]}
    text = report.to_markdown(report.build_blocks(tmp_path, loaded, by_cell, {}, tmp_path / "bench", [], images,
                                                  memory=memory))
    assert "| fixed/dense | fp32 | 620 | 60 | — | — | 3 |" in text
    assert "| baseline/moe | fp32 | 910 | 350 | — | — | 3 |" in text
    assert "RSS growth is what the cell added" in text
