"""The report: files exist, figures have the promised size and content, every table number is the records'."""

from __future__ import annotations

import base64
import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from chimera.analysis.report import render_report
from chimera.analysis.report_figures import DPI, FIGSIZES, TRAIN_COLOUR, VAL_COLOUR
from chimera.config import ModelConfig
from chimera.records.store import write_record
from tests.report_checks import assert_figure, assert_row_matches, assert_stat, matrix_table, stat
from tests.unit.record_factory import CELL_SHAPES, TARGETS, change_config, run_record

CELLS = list(CELL_SHAPES)  # baseline/dense, baseline/moe, fixed/dense, fixed/moe
SEEDS = (0, 1)
BENCH = {"baseline/dense": [140.0, 150.0, 145.0], "baseline/moe": [80.0], "fixed/dense": [600.0, 610.0],
         "fixed/moe": [300.0]}


def write_matrix(root: Path, cells=CELLS, seeds=SEEDS) -> dict[str, list[dict]]:
    written: dict[str, list[dict]] = {}
    for cell in cells:
        for seed in seeds:
            record = run_record(cell, seed)
            write_record(record, root / f"{cell.replace('/', '-')}-ci-s{seed}")
            written.setdefault(cell, []).append(record)
    return written


def write_bench(bench_dir: Path) -> None:
    bench_dir.mkdir(parents=True)
    entries = [{"name": f"test_step[{cell}]", "group": "train-step",
                "extra_info": {"cell": cell, "samples_per_s": value, "bench_profile": "ci", "injected_matmuls": 0}}
               for cell, values in BENCH.items() for value in values]
    # ignored: no cell; another group naming a cell (peer, data pipeline); other shapes; the gate proof
    entries.append({"name": "test_flops", "extra_info": {"gflops": 1.0}})
    for cell in BENCH:
        entries.append({"name": f"test_peer[{cell}]", "group": "peer",
                        "extra_info": {"cell": cell, "samples_per_s": 1.0}})
        entries.append({"name": f"test_step[{cell}]", "group": "train-step",
                        "extra_info": {"cell": cell, "samples_per_s": 2.0, "bench_profile": "full"}})
        entries.append({"name": f"test_step[{cell}]", "group": "train-step",
                        "extra_info": {"cell": cell, "samples_per_s": 3.0, "bench_profile": "ci",
                                       "injected_matmuls": 100}})
    (bench_dir / "0001_run.json").write_text(json.dumps({"benchmarks": entries}))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One report rendered for the module: 4 cells x 2 seeds, with benchmark results."""
    tmp_path = tmp_path_factory.mktemp("report")
    records = write_matrix(tmp_path / "runs")
    write_bench(tmp_path / "bench")
    files = render_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "bench")
    return files, records


def test_report_writes_markdown_html_and_five_figures(rendered):
    files, _ = rendered
    assert files.markdown.name == "report.md" and files.markdown.exists()
    assert files.html.name == "report.html" and files.html.exists()
    assert set(files.images) == {"loss_curves", "accuracy_curves", "throughput", "expert_utilisation",
                                 "time_to_quality"}
    for name, path in files.images.items():
        assert path == files.markdown.parent / f"{name}.png" and path.exists()


def test_figures_have_the_declared_size_and_are_not_blank(rendered):
    files, _ = rendered
    for name, path in files.images.items():
        assert_figure(path, size_inches=FIGSIZES[name], dpi=DPI, colours=(TRAIN_COLOUR, VAL_COLOUR))


def test_every_table_number_matches_the_records(rendered):
    files, records = rendered
    table = matrix_table(files.markdown.read_text())
    assert list(table) == CELLS  # matrix order
    for cell, recs in records.items():
        row = table[cell]
        assert_row_matches(row, recs)
        assert row["throughput (samples/s)"].endswith("(bench)")
        median = statistics.median(BENCH[cell])
        assert stat(row["throughput (samples/s)"])[0] == pytest.approx(median, abs=0.5)


def test_html_is_self_contained(rendered):
    files, _ = rendered
    page = files.html.read_text()
    assert page.count('src="data:image/png;base64,') == len(files.images)
    assert ".png" not in page.replace("data:image/png", "")
    first = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in page and "memorisation" in page


def test_doctor_findings_are_in_the_report(rendered):
    files, _ = rendered
    findings = files.markdown.read_text().split("## Doctor findings", 1)[1]
    baseline = findings.split("### baseline/dense seed 0", 1)[1].split("###", 1)[0]
    assert "**ERROR** `memorisation`" in baseline
    fixed = findings.split("### fixed/dense seed 0", 1)[1].split("###", 1)[0]
    assert "(0 error," in findings.split("### fixed/dense seed 0", 1)[1].splitlines()[0]
    assert "**ERROR**" not in fixed


def test_without_bench_results_the_throughput_figure_is_omitted_and_the_run_figure_used(tmp_path):
    records = write_matrix(tmp_path / "runs", cells=["fixed/dense", "fixed/moe"], seeds=(0, 1))
    files = render_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "no-bench")
    assert "throughput" not in files.images and not (tmp_path / "report" / "throughput.png").exists()
    markdown = files.markdown.read_text()
    assert "throughput figure is omitted" in markdown
    for cell, row in matrix_table(markdown).items():
        assert row["throughput (samples/s)"].endswith("(run)")
        per_seed = [r.final_metrics.train_samples_per_s for r in records[cell]]
        assert_stat(row["throughput (samples/s)"], per_seed, abs_=0.5)


def test_dense_only_records_have_no_expert_figure(tmp_path):
    write_matrix(tmp_path / "runs", cells=["baseline/dense"], seeds=(0,))
    files = render_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "no-bench")
    assert set(files.images) == {"loss_curves", "accuracy_curves", "time_to_quality"}
    assert "No MoE routing statistics" in files.markdown.read_text()


def time_table(markdown: str) -> dict[str, dict[str, str]]:
    section = markdown.split("## Time to quality", 1)[1].split("\n## ", 1)[0]
    return matrix_table("## Matrix" + section)


def test_time_to_quality_table_shows_each_targets_wall_seconds_and_step_over_seeds(rendered):
    files, records = rendered
    table = time_table(files.markdown.read_text())
    assert list(table) == CELLS
    for cell, recs in records.items():
        for target in TARGETS:
            text = table[cell][f"val acc ≥ {target:g}"]
            entries = [next(e for e in r.time_to_target if e.target == target) for r in recs]
            hits = [e for e in entries if e.reached]
            if not hits:
                assert text == "not reached"
                continue
            wall, _, step = text.partition(" s (step ")
            assert_stat(wall, [e.wall_s for e in hits], abs_=0.06)
            assert_stat(step.split(")")[0], [float(e.step) for e in hits], abs_=0.6)
            assert text.endswith(f"{len(hits)} of {len(entries)} seeds") == (len(hits) < len(entries))


def test_the_reference_cell_sits_in_the_matrix_and_beside_every_cell_on_the_same_rows(tmp_path):
    records = write_matrix(tmp_path / "runs", cells=["fixed/dense"], seeds=(0, 1))
    reference = run_record("fixed/dense", 0)
    better = replace(reference.final_metrics, val_acc=0.99)  # better than every transformer run
    reference = replace(reference, cell="reference/bow", run_id="reference-bow-ci-s0", final_metrics=better)
    reference = change_config(reference, cell="reference/bow", model=ModelConfig(arch="bag_of_ngrams", d_model=64))
    write_record(reference, tmp_path / "runs" / "reference-bow-ci-s0")
    files = render_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "no-bench")
    markdown = files.markdown.read_text()
    table = matrix_table(markdown)
    assert list(table) == ["fixed/dense", "reference/bow"]
    assert table["fixed/dense"]["linear reference val acc (same rows)"] == "0.9900"
    assert table["reference/bow"]["linear reference val acc (same rows)"] == "—"
    assert records["fixed/dense"][0].final_metrics.val_acc < 0.99
    assert "`below_reference`: a linear model on the same rows does better" in markdown


@pytest.mark.parametrize(("seeds", "statuses", "expected"), [
    ((0,), ("completed",), "1 (0)"),
    ((0, 1, 2, 3, 4), ("completed",) * 5, "5 (0-4)"),
    ((0, 1), ("completed", "stopped_early"), "2 (0, 1)"),
    ((0, 2, 5), ("completed",) * 3, "3 (0, 2, 5)"),
    ((0, 1, 2), ("completed", "interrupted", "completed"), "3 (0, 1 (interrupted), 2)"),
])
def test_the_seeds_column_counts_before_it_lists(seeds, statuses, expected):
    """A one-seed run shows `1 (0)`, never a bare `0` that reads as "no seeds"."""
    from chimera.analysis.report import seeds_label

    records = [replace(run_record(seed=s), status=st) for s, st in zip(seeds, statuses, strict=True)]
    assert seeds_label(records) == expected
