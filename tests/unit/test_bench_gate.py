"""The speed gate on synthetic pytest-benchmark files: normalised by the same file's calibration GEMM."""

from __future__ import annotations

import ast
import io
import json
from argparse import Namespace
from pathlib import Path

import pytest

from chimera import cli, fileio
from chimera.errors import ChimeraError
from chimera.gates import bench_gate
from chimera.gates.bench_gate import compare, format_table, run_compare
from chimera.records import bench_report

STEPS = {"baseline/dense": 0.40, "baseline/moe": 0.80, "fixed/dense": 0.11, "fixed/moe": 0.25}


def entry(name: str, group: str, median: float, **extra) -> dict:
    return {"name": name, "group": group, "extra_info": extra,
            "stats": {"median": median, "min": median * 0.95, "max": median * 1.1, "rounds": 6}}


def bench_file(path: Path, *, gemm: float = 0.09, steps: dict[str, float] | None = None, scale: float = 1.0,
               profile: str = "ci", device: str = "cpu", other: tuple = ()) -> Path:
    """A pytest-benchmark JSON with the calibration GEMM and one train-step entry per cell."""
    steps = STEPS if steps is None else steps
    benchmarks = [entry("test_calibration_gemm[fp32]", "calibration", gemm, dtype="fp32", calibration=True)]
    benchmarks += [entry(f"test_train_step[{cell}]", "train-step", t * scale, cell=cell) for cell, t in steps.items()]
    benchmarks += list(other)
    payload = {"machine_info": {"chimera": {"bench_profile": profile, "device": device}}, "commit_info": {},
               "benchmarks": benchmarks, "datetime": "2025-01-01T00:00:00", "version": "5.3.1"}
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def verdicts(rows) -> dict[str, str]:
    return {row.name: row.verdict for row in rows}


def test_identical_files_pass(tmp_path):
    base = bench_file(tmp_path / "base.json")
    rows = compare(bench_file(tmp_path / "new.json"), base)
    assert set(verdicts(rows).values()) == {"ok"}
    assert all(row.ratio == pytest.approx(1.0) for row in rows)


def test_step_20_percent_slower_on_the_same_machine_fails(tmp_path):
    base = bench_file(tmp_path / "base.json")
    slower = {**STEPS, "fixed/dense": STEPS["fixed/dense"] * 1.2}
    rows = compare(bench_file(tmp_path / "new.json", steps=slower), base, threshold=0.15)
    assert verdicts(rows)["test_train_step[fixed/dense]"] == "REGRESSION"
    assert [r.name for r in rows if r.failed] == ["test_train_step[fixed/dense]"]
    assert next(r for r in rows if r.failed).ratio == pytest.approx(1.2)


def test_machine_twice_as_slow_for_step_and_gemm_passes(tmp_path):
    base = bench_file(tmp_path / "base.json")
    rows = compare(bench_file(tmp_path / "new.json", gemm=0.18, scale=2.0), base)
    assert not any(row.failed for row in rows)
    assert all(row.ratio == pytest.approx(1.0) for row in rows)


def test_slower_step_alone_reads_as_regression_even_if_raw_times_would_hide_it(tmp_path):
    # a faster machine (GEMM 2x faster) where the step only got 1.5x faster: normalised +33%
    base = bench_file(tmp_path / "base.json")
    rows = compare(bench_file(tmp_path / "new.json", gemm=0.045, scale=1 / 1.5), base)
    assert set(verdicts(rows).values()) == {"REGRESSION"}


def test_change_within_threshold_passes_and_a_big_speedup_is_labelled(tmp_path):
    base = bench_file(tmp_path / "base.json")
    new_steps = {**STEPS, "baseline/dense": STEPS["baseline/dense"] * 1.14, "fixed/moe": STEPS["fixed/moe"] * 0.5}
    rows = compare(bench_file(tmp_path / "new.json", steps=new_steps), base)
    assert verdicts(rows) == {"test_train_step[baseline/dense]": "ok", "test_train_step[baseline/moe]": "ok",
                              "test_train_step[fixed/dense]": "ok", "test_train_step[fixed/moe]": "faster"}


def test_cell_missing_from_the_new_file_fails_and_a_new_cell_does_not(tmp_path):
    base = bench_file(tmp_path / "base.json", steps={k: v for k, v in STEPS.items() if k != "fixed/moe"})
    new = bench_file(tmp_path / "new.json", steps={k: v for k, v in STEPS.items() if k != "baseline/moe"})
    v = verdicts(compare(new, base))
    assert v["test_train_step[baseline/moe]"] == "missing"
    assert v["test_train_step[fixed/moe]"] == "new"
    assert [r.name for r in compare(new, base) if r.failed] == ["test_train_step[baseline/moe]"]


def test_only_train_step_group_by_default_and_other_groups_on_request(tmp_path):
    other = (entry("test_peer_step[fixed/dense]", "peer", 0.1),)
    base = bench_file(tmp_path / "base.json", other=other)
    new = bench_file(tmp_path / "new.json", other=(entry("test_peer_step[fixed/dense]", "peer", 0.5),))
    assert not any(r.failed for r in compare(new, base))
    assert verdicts(compare(new, base, groups=("*",)))["test_peer_step[fixed/dense]"] == "REGRESSION"


def test_run_compare_prints_table_and_returns_exit_code(tmp_path):
    base = bench_file(tmp_path / "base.json")
    slow = bench_file(tmp_path / "slow.json", scale=1.3)
    out = io.StringIO()
    assert run_compare(Namespace(new=slow, baseline=base, threshold=0.15, groups=None), out=out) == 1
    text = out.getvalue()
    assert "baseline norm" in text and "REGRESSION" in text and "test_train_step[fixed/moe]" in text
    assert run_compare(Namespace(new=base, baseline=base, threshold=0.15, groups=None), out=io.StringIO()) == 0


def test_format_table_has_one_line_per_row_plus_header_and_summary(tmp_path):
    rows = compare(bench_file(tmp_path / "a.json"), bench_file(tmp_path / "b.json"))
    lines = format_table(rows).splitlines()
    assert len(lines) == len(rows) + 2
    assert lines[0].split()[:3] == ["benchmark", "baseline", "norm"]
    assert "4 passed, 0 failed" in lines[-1]


@pytest.mark.parametrize("content", ["not json", '{"benchmarks": 3}', '["x"]',
                                     '{"benchmarks": [{"name": "x", "group": "train-step"}]}'])
def test_unreadable_file_is_a_user_error(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(ChimeraError, match="bad.json"):
        compare(bad, bench_file(tmp_path / "base.json"))


def test_file_without_calibration_gemm_is_a_user_error(tmp_path):
    path = bench_file(tmp_path / "new.json")
    data = json.loads(path.read_text())
    data["benchmarks"] = [b for b in data["benchmarks"] if b["group"] != "calibration"]
    path.write_text(json.dumps(data))
    with pytest.raises(ChimeraError, match="calibration GEMM"):
        compare(path, bench_file(tmp_path / "base.json"))


def test_different_profiles_or_devices_are_not_compared(tmp_path):
    base = bench_file(tmp_path / "base.json", profile="ci")
    with pytest.raises(ChimeraError, match="profile"):
        compare(bench_file(tmp_path / "full.json", profile="full"), base)
    with pytest.raises(ChimeraError, match="device"):
        compare(bench_file(tmp_path / "cuda.json", device="cuda"), base)


def test_exit_codes(tmp_path, capsys):
    base = bench_file(tmp_path / "base.json")
    assert cli.main(["bench", "compare", str(base), str(base)]) == 0
    assert cli.main(["bench", "compare", str(bench_file(tmp_path / "s.json", scale=1.5)), str(base)]) == 1
    (tmp_path / "empty.json").write_text("{}")
    assert cli.main(["bench", "compare", str(tmp_path / "empty.json"), str(base)]) == 2
    assert "empty.json: not a pytest-benchmark file" in capsys.readouterr().err


def test_the_old_module_entry_point_runs_chimera_bench_and_names_it(tmp_path, capfd):
    """`python -m chimera.gates.bench_gate compare ...` still works for one release, and says what replaced it."""
    base = bench_file(tmp_path / "base.json")
    assert bench_gate.main(["compare", str(bench_file(tmp_path / "s.json", scale=1.5)), str(base)]) == 1
    out, err = capfd.readouterr()
    assert "REGRESSION" in out
    assert err.splitlines()[0] == ("chimera: `python -m chimera.gates.bench_gate` is now `chimera bench`; the old "
                                   "name goes in the next release")


@pytest.mark.parametrize("module", [bench_gate, bench_report, fileio], ids=["bench_gate", "bench_report", "fileio"])
def test_gate_imports_only_stdlib_chimera_errors_fileio_and_the_bench_reader(module):
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    chimera_imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                       and node.module and node.module.startswith("chimera")}
    assert chimera_imports <= {"chimera.errors", "chimera.fileio", "chimera.records.bench_report"}
    stdlib = {"__future__", "argparse", "collections", "contextlib", "csv", "dataclasses", "fnmatch", "json", "os",
              "pathlib", "subprocess", "sys", "tempfile", "types", "typing"}
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module and not node.module.startswith("chimera")}
    assert imported <= stdlib, imported - stdlib


def _step(name: str, median: float, **extra) -> dict:
    return entry(name, "train-step", median, cell="fixed/dense", **extra)


def test_the_same_benchmark_in_another_precision_is_refused_not_compared(tmp_path):
    base = bench_file(tmp_path / "base.json", steps={}, other=(_step("test_train_step[fixed/dense]", 0.1,
                                                                     precision="fp32"),))
    new = bench_file(tmp_path / "new.json", steps={}, other=(_step("test_train_step[fixed/dense]", 0.06,
                                                                   precision="bf16"),))
    with pytest.raises(ChimeraError, match="ran in bf16 in .* but in fp32 in .*compares a precision only with itself"):
        compare(new, base)


def test_a_file_from_before_precision_was_recorded_reads_as_fp32(tmp_path):
    legacy = bench_file(tmp_path / "base.json", steps={}, other=(_step("test_train_step[fixed/dense]", 0.1,
                                                                       mixed_precision="no"),))
    new = bench_file(tmp_path / "new.json", steps={}, other=(_step("test_train_step[fixed/dense]", 0.1,
                                                                   precision="fp32", mixed_precision="no"),))
    assert verdicts(compare(new, legacy)) == {"test_train_step[fixed/dense]": "ok"}


def test_each_precision_is_compared_with_itself(tmp_path):
    def rows(bf16_median: float) -> tuple:
        return (_step("test_train_step[fp32-fixed/dense]", 0.1, precision="fp32"),
                _step("test_train_step[bf16-fixed/dense]", bf16_median, precision="bf16"))

    base = bench_file(tmp_path / "base.json", steps={}, other=rows(0.07))
    new = bench_file(tmp_path / "new.json", steps={}, other=rows(0.09))  # bf16 slower, fp32 unchanged
    assert verdicts(compare(new, base)) == {"test_train_step[fp32-fixed/dense]": "ok",
                                            "test_train_step[bf16-fixed/dense]": "REGRESSION"}
