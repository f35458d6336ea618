"""A run whose throughput was disturbed (paused, or sharing its cores) is named, not averaged in with clean
runs: the spread of its interval step times says so, from the record alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from chimera.analysis.report import matrix_row, to_markdown
from chimera.analysis.report_throughput import bench_load_note, spread_blocks
from chimera.analysis.step_spread import DISTURBED_RATIO, step_spread
from chimera.records.record import RunRecord
from chimera.records.store import load_record
from tests.unit.record_factory import replaced_at, run_record

FULL_RUNS = Path(__file__).resolve().parents[2] / "docs" / "results" / "full"
THROUGHPUT = 11  # column of the matrix table


def disturbed(record: RunRecord, factor: float = 3.0, at: int = 5) -> RunRecord:
    """The record with one evaluation interval `factor` times slower, as a pause or a second job leaves it."""
    return replace(record, timing=replaced_at(record.timing, at, step_time_s=record.timing[at].step_time_s * factor),
                   final_metrics=replace(record.final_metrics,
                                         train_samples_per_s=record.final_metrics.train_samples_per_s / 1.2))


def test_steady_and_disturbed_runs_are_told_apart_by_the_slowest_interval():
    steady = step_spread(run_record("fixed/dense", 0))
    assert steady.intervals == 16 and steady.slowest_ratio == pytest.approx(1.0) and not steady.disturbed
    paused = step_spread(disturbed(run_record("fixed/dense", 0)))
    assert paused.slowest_ratio == pytest.approx(3.0) and paused.disturbed
    assert paused.median_s == pytest.approx(steady.median_s)
    short = run_record("fixed/dense", 0, evaluations=2)
    assert step_spread(short) is None


def test_the_threshold_separates_the_committed_full_runs_as_their_history_says():
    """docs/findings.md: the runs had a core each while the other core was busy, and the 14 ms steps of
    reference/bow seed 0 caught it (its slowest interval 2.1x its median)."""
    verdicts = {path.parent.name: step_spread(load_record(path)).disturbed
                for path in sorted(FULL_RUNS.glob("*/record.json"))}
    assert len(verdicts) >= 8
    assert {name for name, bad in verdicts.items() if bad} == {"reference-bow-full-s0"}
    assert DISTURBED_RATIO == 2.0


def test_the_matrix_row_keeps_a_disturbed_run_out_of_the_mean_and_names_it():
    clean, paused = run_record("fixed/dense", 0), disturbed(run_record("fixed/dense", 1))
    text = matrix_row("fixed/dense", [clean, paused], bench={})[THROUGHPUT]
    assert text == (f"{clean.final_metrics.train_samples_per_s:,.0f} (run); disturbed, left out: "
                    "seed 1 (slowest interval 3.0× its median)")
    both = matrix_row("fixed/dense", [disturbed(run_record("fixed/dense", 0)), paused], bench={})[THROUGHPUT]
    assert "(run, all disturbed: seed 0 (slowest interval 3.0× its median), seed 1 (" in both
    steady = matrix_row("fixed/dense", [clean, run_record("fixed/dense", 1)], bench={})[THROUGHPUT]
    assert steady.endswith("(run)") and "disturbed" not in steady


def test_the_spread_table_lists_every_run_with_its_median_deciles_and_verdict():
    records = [run_record("fixed/dense", 0), disturbed(run_record("fixed/dense", 1))]
    markdown = to_markdown(spread_blocks([(Path(f"r{i}"), r) for i, r in enumerate(records)]))
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| fixed/dense")]
    assert [row[0] for row in rows] == ["| fixed/dense seed 0", "| fixed/dense seed 1"]
    assert rows[0][2] == f"{records[0].timing[0].step_time_s * 1e3:,.1f}" and rows[0][-1] == "steady |"
    assert rows[1][4] == "3.00" and rows[1][-1] == "**disturbed** |"


def test_the_load_each_benchmark_file_recorded_is_shown_and_a_loaded_machine_marked(tmp_path):
    def bench(name, start, end):
        info = {"load_average_at_start": [start, 1, 1], "load_average_at_end": [end, 1, 1], "os_cpu_count": 2}
        (tmp_path / name).write_text(json.dumps({"machine_info": {"chimera": info}, "benchmarks": []}))

    bench("quiet.json", 0.4, 1.1)
    bench("busy.json", 2.1, 3.5)
    note = bench_load_note(tmp_path)
    assert "`busy.json` 2.1 at start, 3.5 at end on 2 CPUs (**loaded**: more runnable tasks than CPUs)" in note
    assert note.endswith("`quiet.json` 0.4 at start, 1.1 at end on 2 CPUs.")  # files in name order
    assert note.count("**loaded**") == 1


def test_the_load_note_reads_the_session_block_where_bench_now_writes_it(tmp_path):
    """bench/machine.py moved the load averages to a top-level `chimera` block; the CPU count stays in machine_info."""
    (tmp_path / "new.json").write_text(json.dumps({
        "machine_info": {"chimera": {"os_cpu_count": 2}}, "benchmarks": [],
        "chimera": {"load_average_at_start": [0.5, 1, 1], "load_average_at_end": [2.5, 1, 1]}}))
    (tmp_path / "record.json").write_text(json.dumps({"run_id": "x"}))  # not a benchmark file: left out
    assert bench_load_note(tmp_path) == ("Load average (1 min) recorded with the benchmark results: `new.json` 0.5 at "
                                         "start, 2.5 at end on 2 CPUs (**loaded**: more runnable tasks than CPUs).")
