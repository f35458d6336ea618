"""scripts/readme_tables.py holds every measured README table to the committed files it is computed from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chimera.ablation import ADD_IN
from chimera.errors import ChimeraError
from chimera.records.store import write_record
from scripts import readme_generators as gen
from scripts.readme_tables import END, TABLES, check, find_regions, main
from tests.unit.record_factory import change_config, run_record
from tests.unit.test_bench_gate import entry
from tests.unit.test_bench_summarise import ttq_entry, ttq_row

REPO = Path(__file__).resolve().parents[2]
CELLS = ("baseline/dense", "baseline/moe", "fixed/dense", "fixed/moe")


def marked(name: str, *table: str) -> str:
    return f"<!-- generated: {name} (python scripts/readme_tables.py --write) -->\n\n" + "\n".join(table) + f"\n\n{END}"


def readme(**tables: list[str]) -> str:
    """A README with prose around one marked region per table, each holding `tables[name]` (or a stale row)."""
    parts = ["# Title", "", "Some prose."]
    for name in TABLES:
        parts += ["", marked(name, *tables.get(name.replace("-", "_"), ["| stale |", "|---|", "| 0.5 |"])), "",
                  f"Prose after {name}."]
    return "\n".join(parts) + "\n"


@pytest.fixture
def sources(tmp_path) -> Path:
    """A repository root holding every source: the committed full and ablation records (linked), synthetic
    ci-seeds records (4 cells x seeds 0-4) and a benchmark JSON shaped like bench/baselines/cpu.json with
    the BERT peer and a time-to-quality entry added."""
    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    for folder in ("full", "ablation-ci"):
        (results / folder).symlink_to(REPO / "docs" / "results" / folder)
    for cell in CELLS:
        for seed in range(5):
            record = run_record(cell, seed)
            write_record(record, results / "ci-seeds" / record.run_id)
    bench = json.loads((REPO / "bench" / "baselines" / "cpu.json").read_text(encoding="utf-8"))
    bench["benchmarks"] += [
        entry("test_peer_bert_step[fp32-fixed/dense]", "peer", 0.08, cell="fixed/dense", precision="fp32",
              speedup_vs_peer=1.38),
        ttq_entry(**{"val_acc@0.7": ttq_row(0.7, (180, 48.7, 28.4), (500, 163.5, 112.7)),
                     "val_acc@0.75": ttq_row(0.75, (220, 63.1, 36.0), (540, 177.0, 121.9)),
                     "val_acc@0.8": ttq_row(0.8, (320, 95.0, 54.9), None)})]
    (results / "bench").mkdir()
    (results / "bench" / "cpu.json").write_text(json.dumps(bench), encoding="utf-8")
    (results / "bench" / "cpu-xeon-amx.json").symlink_to(REPO / "docs" / "results" / "bench" / "cpu-xeon-amx.json")
    (results / "gpu-check").mkdir()
    (results / "gpu-check" / "h200").symlink_to(REPO / "docs" / "results" / "gpu-check" / "h200")
    return tmp_path


def test_regions_are_the_lines_between_a_named_start_marker_and_the_end_marker():
    lines = ["x", "<!-- generated: speed (python scripts/readme_tables.py --write) -->", "", "| a |", "",
             END, "<!-- generated: ttq -->", "| b |", END]
    regions = find_regions(lines)
    assert list(regions) == ["speed", "ttq"]
    assert lines[regions["speed"].start:regions["speed"].end] == ["", "| a |", ""]
    assert lines[regions["ttq"].start:regions["ttq"].end] == ["| b |"]


@pytest.mark.parametrize("lines, says", [
    (["<!-- generated: speed -->", "| a |"], "never closed"),
    (["| a |", END], "without"),
    (["<!-- generated: speed -->", "<!-- generated: ttq -->", END, END], "inside 'speed'"),
    (["<!-- generated: speed -->", END, "<!-- generated: speed -->", END], "marked twice"),
])
def test_malformed_markers_are_one_error_naming_the_line(lines, says):
    with pytest.raises(ChimeraError, match=says):
        find_regions(lines)


def test_a_readme_without_markers_fails_naming_every_table(sources):
    problems = check("# Title\n\n| cell |\n|---|\n| 1 |\n", TABLES, sources)
    assert len(problems) == len(TABLES)
    assert all("not marked in the README" in p for p in problems)


def test_an_unknown_table_name_in_the_readme_fails(sources):
    text = readme() + marked("speeed", "| x |") + "\n"
    assert any(p.startswith("speeed: marked in the README but no such table") for p in check(text, TABLES, sources))


def test_a_missing_source_fails_instead_of_skipping(sources, tmp_path):
    problems = check(readme(), TABLES, tmp_path / "empty-root")
    assert len(problems) == len(TABLES)
    assert all("missing source" in p for p in problems)
    assert any(p.startswith("ci-seeds: missing source docs/results/ci-seeds") for p in problems)


def test_check_reports_each_stale_table_with_a_diff_and_write_fixes_them_in_place(sources, tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text(readme(), encoding="utf-8")
    assert main(["--check", "--readme", str(path), "--root", str(sources)]) == 1
    err = capsys.readouterr().err
    for name in TABLES:
        assert f"{name}: the README's table differs from {TABLES[name].source}" in err
    assert "-| 0.5 |" in err and "+| fixed/dense |" in err  # a unified diff: README lines out, source lines in

    assert main(["--write", "--readme", str(path), "--root", str(sources)]) == 0
    assert main(["--check", "--readme", str(path), "--root", str(sources)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.count("Prose after") == len(TABLES) and "| stale |" not in text  # only the regions changed
    assert "| 0.70 | 180, 48.7 (28.4) | 500, 163.5 (112.7) | **3.36×** |" in text
    assert "| 0.80 | 320, 95.0 (54.9) | not reached | n/a |" in text


def test_only_checks_the_tables_named(sources, tmp_path):
    path = tmp_path / "README.md"
    path.write_text(readme(ttq=gen.time_to_quality(sources / TABLES["ttq"].source)), encoding="utf-8")
    assert main(["--check", "--only", "ttq", "--readme", str(path), "--root", str(sources)]) == 0
    assert main(["--check", "--only", "ttq", "speed", "--readme", str(path), "--root", str(sources)]) == 1


def test_the_ci_seeds_table_has_params_mean_and_std_and_how_each_cell_stopped(sources):
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in
            gen.ci_seeds(sources / TABLES["ci-seeds"].source)[2:]}
    assert list(rows) == list(CELLS)
    assert rows["fixed/dense"][1] == "200,000 / same" and rows["fixed/moe"][1] == "500,000 / 350,000"
    assert " ± " in rows["fixed/dense"][4]  # val acc: mean ± sample std over the 5 seeds
    assert rows["fixed/dense"][6].endswith("(early stop in 2 of 5) |")  # the factory stops odd seeds early
    assert rows["baseline/dense"][6].endswith("(val minimum; trains on to 400) |")


def test_the_speed_table_is_the_cells_table_of_the_committed_json(sources):
    table = gen.speed(sources / TABLES["speed"].source)
    assert "2048² fp32 GEMM, 151 GFLOP/s" in table[0]  # the MFU reference of that session
    assert table[4].startswith("| fixed/dense | fp32 | 56 ms | 567 | 45% |") and table[4].endswith("| 1.38× |")


def test_an_ablation_change_is_labelled_with_the_value_the_fix_gives_it():
    config = run_record("fixed/dense").config
    assert gen.change_label("lr", config) == "lr 3e-4"
    assert gen.change_label("width", config) == "width (d_model 128)"
    assert gen.change_label("augmentation", config) == "training-only text augmentation"
    assert gen.change_label("lr", change_config(run_record("fixed/dense"), train={"lr": 1.5e-4}).config) == "lr 1.5e-4"


def test_the_add_one_in_direction_starts_from_the_baseline_and_labels_the_value_it_takes_from_the_fix():
    table = gen.ablation(REPO / "docs" / "results" / "ablation-ci", ADD_IN)
    assert table[2].startswith("| (baseline/dense itself) |")
    assert any(row.startswith("| lr 1e-4 |") for row in table[3:])  # the fix's lr, added to the baseline
    assert len(table) == 3 + 9  # header, rule, the baseline's own row, nine changes


def test_the_real_readme_matches_the_committed_full_and_ablation_records():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert check(text, TABLES, REPO, only=("full-results", "ablation-leave-one-out")) == []
