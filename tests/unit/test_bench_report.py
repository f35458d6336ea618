"""The one typed reader of pytest-benchmark JSON (chimera/records/bench_report.py): a real file reads back
whole, a corrupt or foreign one is one line naming the file and the key, and no other module parses the shape."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chimera.errors import ChimeraError
from chimera.records.bench_report import (
    BenchReport,
    NotABenchReport,
    find_bench_reports,
    load_bench_report,
    looks_like_bench_report,
)
from tests.unit.test_bench_gate import bench_file, entry

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "bench" / "baselines" / "cpu.json"


def test_the_committed_cpu_baseline_reads_back_whole_with_its_typed_views():
    report = load_bench_report(BASELINE)
    assert report.to_json() == json.loads(BASELINE.read_text(encoding="utf-8"))
    assert BenchReport.from_json(report.to_json(), BASELINE) == report
    assert (report.machine.profile, report.machine.device, report.machine.torch_num_threads) == ("ci", "cpu", 2)
    assert report.commit.id == "9fb81f30c00a3127ed1ba2b367810ef2d490ee37" and report.commit.dirty is True
    assert report.session.load_average_at_start == (1.17, 1.27, 1.62)  # a file from before the session block
    calibration, *steps = report.benchmarks
    assert (calibration.group, calibration.dtype, calibration.cell) == ("calibration", "fp32", None)
    assert {step.cell for step in steps} == {"baseline/dense", "baseline/moe", "fixed/dense", "fixed/moe"}
    for step in steps:
        assert step.group == "train-step" and step.profile == "ci" and step.resolved_precision == "fp32"
        assert step.median_s == step.stats["median"] > 0 and 0 < step.mfu < 1 and step.samples_per_s > 0
        assert step.memory.peak_memory_mib > 0 and not step.memory.measured_alone  # the process-wide figure
        assert step.injected_matmuls == 0


def test_the_session_block_is_read_from_the_top_level_where_bench_now_writes_it(tmp_path):
    path = bench_file(tmp_path / "b.json")
    data = json.loads(path.read_text())
    data["chimera"] = {"load_average_at_start": [2, 1, 1], "load_average_at_end": [3.5, 2, 1],
                       "calibration_gemm": {"dtype": "fp32", "median_s": 0.09}}
    report = BenchReport.from_json(data, path)
    assert report.session.load_average_at_start == (2, 1, 1) and report.session.calibration_gemm["median_s"] == 0.09


def test_per_benchmark_memory_and_a_legacy_precision_are_typed(tmp_path):
    step = entry("test_train_step[fp32-fixed/dense]", "train-step", 0.1, cell="fixed/dense", mixed_precision="bf16",
                 cpu_rss_peak_mib=612, cpu_rss_growth_mib=41.5, cuda_max_allocated_mib=300.0, speedup_vs_peer=1.4)
    (step_entry,) = [e for e in load_bench_report(bench_file(tmp_path / "b.json", steps={}, other=(step,))).benchmarks
                     if e.cell]
    assert step_entry.memory.measured_alone and step_entry.memory.cpu_rss_peak_mib == 612.0
    assert step_entry.memory.cuda_max_reserved_mib is None and step_entry.speedup_vs_peer == 1.4
    assert step_entry.precision is None and step_entry.resolved_precision == "bf16"


def _corrupt(tmp_path: Path, mutate) -> Path:
    path = bench_file(tmp_path / "bad.json", steps={"fixed/dense": 0.1})
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return path


CORRUPT = {
    "benchmarks not a list": (lambda d: d.update(benchmarks=3), "benchmarks is 3, expected a list"),
    "an entry without a name": (lambda d: d["benchmarks"][1].pop("name"), "benchmarks[1].name is None"),
    "an entry that is no object": (lambda d: d["benchmarks"].append(7), "benchmarks[2] is 7, expected an object"),
    "a median that is text": (lambda d: d["benchmarks"][1]["stats"].update(median="fast"),
                              "benchmarks[1].stats.median is 'fast', expected a number"),
    "a cell that is a number": (lambda d: d["benchmarks"][1]["extra_info"].update(cell=4),
                                "benchmarks[1].extra_info.cell is 4, expected a string"),
    "machine_info.chimera not an object": (lambda d: d["machine_info"].update(chimera="cpu"),
                                           "machine_info.chimera is 'cpu', expected an object"),
    "a load average that is text": (lambda d: d.update(chimera={"load_average_at_start": "high"}),
                                    "chimera.load_average_at_start is 'high', expected a list of numbers"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_malformed_file_is_one_chimera_error_naming_the_file_and_the_key(tmp_path, case):
    mutate, key = CORRUPT[case]
    path = _corrupt(tmp_path, mutate)
    with pytest.raises(ChimeraError) as raised:
        load_bench_report(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and key in message, message
    assert "--benchmark-json" in message and not isinstance(raised.value, NotABenchReport)


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '"text"'])
def test_unreadable_json_or_json_that_is_no_object_is_corrupt(tmp_path, content):
    (path := tmp_path / "x.json").write_text(content)
    with pytest.raises(ChimeraError, match=r"x\.json: .*(again|pytest-benchmark)") as raised:
        load_bench_report(path)
    assert not isinstance(raised.value, NotABenchReport)


def test_a_json_object_of_another_kind_is_foreign_not_corrupt(tmp_path):
    (path := tmp_path / "record.json").write_text('{"run_id": "x", "schema_version": 2}')
    with pytest.raises(NotABenchReport, match=r"record\.json: not a pytest-benchmark file \(no 'benchmarks' list\)"):
        load_bench_report(path)
    assert not looks_like_bench_report({"run_id": "x"}) and looks_like_bench_report({"benchmarks": []})


def test_a_folder_walk_skips_foreign_json_and_lists_the_unreadable(tmp_path):
    (tmp_path / "a").mkdir()
    bench_file(tmp_path / "a" / "bench.json")
    (tmp_path / "env.json").write_text('{"native_precisions": ["fp32"]}')
    (tmp_path / "broken.json").write_text('{"benchmarks": [')
    unreadable: list[Path] = []
    found = list(find_bench_reports(tmp_path, unreadable))
    assert [r.path for r in found] == [tmp_path / "a" / "bench.json"] and unreadable == [tmp_path / "broken.json"]
    assert list(find_bench_reports(tmp_path / "absent")) == []


def test_the_reader_and_the_gate_load_neither_torch_nor_numpy():
    code = ("import json, sys\nimport chimera.records.bench_report, chimera.gates.bench_gate\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert not {"torch", "numpy", "accelerate"} & set(json.loads(done.stdout))


# Hand-written parsers of the shape: indexing or .get() of the file's top-level keys on loaded JSON.
SHAPE_KEYS = {"benchmarks", "machine_info"}


def _parses_the_shape(node: ast.AST) -> bool:
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in SHAPE_KEYS
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value in SHAPE_KEYS)


def test_no_module_but_the_reader_parses_a_benchmark_json_by_hand():
    offenders = []
    for path in sorted([*(REPO / "chimera").rglob("*.py"), *(REPO / "bench").rglob("*.py")]):
        if path == REPO / "chimera" / "records" / "bench_report.py":
            continue
        offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for node in
                      ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if _parses_the_shape(node)]
    assert not offenders, f"read benchmark JSON through chimera.records.bench_report, not by hand: {offenders}"


def test_the_scan_would_catch_the_old_hand_written_readers():
    old = 'data.get("benchmarks")\njson.loads(text)["machine_info"]["chimera"]\nfor b in data["benchmarks"]: pass\n'
    assert sum(_parses_the_shape(node) for node in ast.walk(ast.parse(old))) == 3
