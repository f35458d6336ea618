"""chimera/analysis/doc_tables.py holds every measured table in README.md and docs/*.md to the committed files it
is computed from (`chimera tables check|write` call check_tables and write_tables)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chimera.ablation import ADD_IN
from chimera.analysis import table_renderers as render
from chimera.analysis.doc_tables import END, TABLES, check_tables, find_regions, start_marker, write_tables
from chimera.errors import ChimeraError
from chimera.records.store import write_record
from tests.unit.record_factory import change_config, run_record
from tests.unit.test_bench_gate import entry
from tests.unit.test_bench_summarise import ttq_entry, ttq_row

REPO = Path(__file__).resolve().parents[2]
CELLS = ("baseline/dense", "baseline/moe", "fixed/dense", "fixed/moe")
STALE = ["| stale |", "|---|", "| 0.5 |"]


def marked(name: str, *table: str) -> str:
    return f"{start_marker(name)}\n\n" + "\n".join(table) + f"\n\n{END}"


def page(*names: str, **tables: list[str]) -> str:
    """A page with prose around one marked region per named table, each holding `tables[name]` (or a stale one)."""
    parts = ["# Title", "", "Some prose."]
    for name in names:
        parts += ["", marked(name, *tables.get(name.replace("-", "_"), STALE)), "", f"Prose after {name}."]
    return "\n".join(parts) + "\n"


def write_pages(root: Path, **pages: str) -> None:
    """`README="..."`, `docs_findings="..."` -> root/README.md, root/docs/findings.md."""
    for name, text in pages.items():
        path = root / (f"docs/{name[5:]}.md" if name.startswith("docs_") else f"{name}.md")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


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
    lines = ["x", start_marker("speed"), "", "| a |", "", END, "<!-- generated: ttq -->", "| b |", END]
    regions = find_regions(lines)
    assert list(regions) == ["speed", "ttq"]
    assert lines[regions["speed"].start:regions["speed"].end] == ["", "| a |", ""]
    assert lines[regions["ttq"].start:regions["ttq"].end] == ["| b |"]


def test_the_marker_names_the_command_that_writes_the_table():
    assert start_marker("speed") == "<!-- generated: speed (chimera tables write) -->"


@pytest.mark.parametrize("lines, says", [
    (["<!-- generated: speed -->", "| a |"], "line 1: table 'speed' is never closed"),
    (["| a |", END], "line 2: .* without"),
    (["<!-- generated: speed -->", "<!-- generated: ttq -->", END, END], "line 2: .*inside 'speed'"),
    (["<!-- generated: speed -->", END, "<!-- generated: speed -->", END], "line 3: .*marked twice"),
])
def test_malformed_markers_are_one_error_naming_the_page_and_line(lines, says):
    with pytest.raises(ChimeraError, match=f"^docs/x.md {says}"):
        find_regions(lines, "docs/x.md")


def test_pages_without_markers_fail_naming_every_table(sources):
    write_pages(sources, README="# Title\n\n| cell |\n|---|\n| 1 |\n")
    problems = check_tables(sources)
    assert len(problems) == len(TABLES)
    assert all("not marked on any of README.md, docs/*.md" in p for p in problems)


def test_an_unknown_table_name_on_a_docs_page_fails_naming_the_page(sources):
    write_pages(sources, README=page(*TABLES), docs_findings=page() + marked("speeed", "| x |") + "\n")
    assert any(p.startswith("speeed: marked on docs/findings.md") for p in check_tables(sources))


def test_a_malformed_marker_on_one_page_is_a_problem_not_a_crash(sources):
    write_pages(sources, README=page(*TABLES), docs_broken="<!-- generated: speed -->\n| a |\n")
    assert any(p.startswith("docs/broken.md line 1: table 'speed' is never closed") for p in check_tables(sources))


def test_a_missing_source_fails_instead_of_skipping(tmp_path):
    write_pages(tmp_path, README=page(*TABLES))
    problems = check_tables(tmp_path)
    assert len(problems) == len(TABLES)
    assert all("missing source" in p for p in problems)
    assert any(p.startswith("ci-seeds: missing source docs/results/ci-seeds") for p in problems)


def test_check_reports_each_stale_table_on_any_page_with_a_diff_and_write_fixes_them_in_place(sources):
    names = list(TABLES)
    write_pages(sources, README=page(*names[:1]), docs_findings=page(*names[1:3]), docs_performance=page(*names[3:]))
    problems = "\n".join(check_tables(sources))
    for name in names:
        assert f"{name}: the table on " in problems
    assert f"full-results: the table on README.md differs from {TABLES['full-results'].source}" in problems
    assert f"speed: the table on docs/performance.md differs from {TABLES['speed'].source}" in problems
    assert "-| 0.5 |" in problems and "+| fixed/dense |" in problems  # a unified diff: page lines out, source in

    assert write_tables(sources) == names
    assert check_tables(sources) == []
    assert write_tables(sources) == []  # nothing left to rewrite
    text = (sources / "docs" / "performance.md").read_text(encoding="utf-8")
    assert text.count("Prose after") == len(names[3:]) and "| stale |" not in text  # only the regions changed
    assert "| 0.70 | 180, 48.7 (28.4) | 500, 163.5 (112.7) | **3.36×** |" in text
    assert "| 0.80 | 320, 95.0 (54.9) | not reached | n/a |" in text


def test_a_table_marked_on_two_pages_is_checked_on_both(sources):
    write_pages(sources, README=page(*TABLES), docs_findings=page("full-results"))
    write_tables(sources)
    write_pages(sources, docs_findings=page("full-results"))  # the second copy goes stale
    assert [p.split("\n")[0] for p in check_tables(sources)] == [
        f"full-results: the table on docs/findings.md differs from {TABLES['full-results'].source}"]


def test_write_refuses_and_writes_nothing_while_a_table_cannot_be_computed(sources):
    write_pages(sources, README=page(*TABLES))
    (sources / "docs" / "results" / "ci-seeds").rename(sources / "elsewhere")
    with pytest.raises(ChimeraError, match="ci-seeds: missing source docs/results/ci-seeds"):
        write_tables(sources)
    assert (sources / "README.md").read_text(encoding="utf-8") == page(*TABLES)


def test_the_ci_seeds_table_has_params_mean_and_std_and_how_each_cell_stopped(sources):
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in
            render.ci_seeds(sources / TABLES["ci-seeds"].source)[2:]}
    assert list(rows) == list(CELLS)
    assert rows["fixed/dense"][1] == "200,000 / same" and rows["fixed/moe"][1] == "500,000 / 350,000"
    assert " ± " in rows["fixed/dense"][4]  # val acc: mean ± sample std over the 5 seeds
    assert rows["fixed/dense"][6].endswith("(early stop in 2 of 5) |")  # the factory stops odd seeds early
    assert rows["baseline/dense"][6].endswith("(val minimum; trains on to 400) |")


def test_the_speed_table_is_the_cells_table_of_the_committed_json(sources):
    table = render.speed(sources / TABLES["speed"].source)
    assert "2048² fp32 GEMM, 151 GFLOP/s" in table[0]  # the MFU reference of that session
    assert table[4].startswith("| fixed/dense | fp32 | 56 ms | 567 | 45% |") and table[4].endswith("| 1.38× |")


def test_the_full_results_table_has_a_row_per_cell_with_time_to_target_and_the_doctors_verdict():
    table = render.full_results(REPO / "docs" / "results" / "full", target=0.8)
    assert "time to val acc 0.8" in table[0] and table[0].endswith("| doctor |")
    rows = {line.split(" | ")[0][2:]: line for line in table[2:]}
    assert list(rows) == ["baseline/dense", "baseline/moe", "fixed/dense", "fixed/moe", "reference/bow"]
    assert "error `memorisation` (1 of 1)" in rows["baseline/dense"]


def test_an_ablation_change_is_labelled_with_the_value_the_fix_gives_it():
    config = run_record("fixed/dense").config
    assert render.change_label("lr", config) == "lr 3e-4"
    assert render.change_label("width", config) == "width (d_model 128)"
    assert render.change_label("augmentation", config) == "training-only text augmentation"
    assert render.change_label("lr", change_config(run_record("fixed/dense"), train={"lr": 1.5e-4}).config) == \
        "lr 1.5e-4"


def test_the_add_one_in_direction_starts_from_the_baseline_and_labels_the_value_it_takes_from_the_fix():
    table = render.ablation(REPO / "docs" / "results" / "ablation-ci", ADD_IN)
    assert table[2].startswith("| (baseline/dense itself) |")
    assert any(row.startswith("| lr 1e-4 |") for row in table[3:])  # the fix's lr, added to the baseline
    assert len(table) == 3 + 9  # header, rule, the baseline's own row, nine changes


def test_every_table_in_the_readme_and_docs_matches_its_committed_source():
    assert check_tables(REPO) == []
