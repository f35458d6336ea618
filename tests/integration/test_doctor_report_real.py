"""Doctor and report on real ci-profile records: the baseline cells memorise, the fixed cells pass.

    CHIMERA_DATA_DIR=path/to/ag_news pytest -m integration tests/integration/test_doctor_report_real.py
"""

from __future__ import annotations

import json

import pytest

from chimera.analysis.report import render_report
from chimera.analysis.report_figures import DPI, FIGSIZES, TRAIN_COLOUR, VAL_COLOUR
from tests.helpers import load_cell, run_chimera
from tests.report_checks import assert_figure, assert_row_matches, assert_stat, matrix_table

# one test process trains the ci matrix (a session fixture) for every test that reads it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ci_matrix")]

CELLS = ("baseline/dense", "baseline/moe", "fixed/dense", "fixed/moe", "reference/bow")


def run_dir(runs, cell):
    (path,) = sorted(runs.glob(f"{cell.replace('/', '-')}-*/record.json"))
    return path.parent


@pytest.mark.parametrize("cell, exit_code", [("baseline/dense", 1), ("baseline/moe", 1),
                                             ("fixed/dense", 0), ("fixed/moe", 0)])
def test_doctor_flags_baseline_memorisation_and_passes_fixed(ci_runs, cell, exit_code):
    result = run_chimera("doctor", str(run_dir(ci_runs, cell)), "--json", check=False)
    assert result.returncode == exit_code, result.stdout + result.stderr
    (entry,) = json.loads(result.stdout)["records"]
    findings = {f["code"]: f for f in entry["findings"]}
    errors = [f["code"] for f in entry["findings"] if f["severity"] == "error"]
    if exit_code:
        assert findings["memorisation"]["severity"] == "error"
        assert findings["memorisation"]["evidence"]["min_clean_train_loss"] < 0.1
        assert findings["memorisation"]["evidence"]["val_rise"] > 0.1
    else:
        assert errors == []
        assert "memorisation" not in findings and "possible_memorisation" not in findings


def test_doctor_text_output_names_the_finding_and_the_fix(ci_runs):
    result = run_chimera("doctor", str(run_dir(ci_runs, "baseline/dense")), check=False)
    assert result.returncode == 1
    assert "ERROR   memorisation" in result.stdout and "fix:" in result.stdout


def test_report_renders_from_the_ci_matrix(ci_runs, tmp_path):
    files = render_report(ci_runs, tmp_path / "report", bench_dir=tmp_path / "no-bench")
    assert files.markdown.exists() and files.html.exists()
    assert set(files.images) == {"loss_curves", "accuracy_curves", "expert_utilisation", "time_to_quality"}
    for name, path in files.images.items():
        assert_figure(path, size_inches=FIGSIZES[name], dpi=DPI, colours=(TRAIN_COLOUR, VAL_COLOUR))
    markdown = files.markdown.read_text()
    table = matrix_table(markdown)
    assert list(table) == list(CELLS)
    for cell in CELLS:
        record = load_cell(ci_runs, cell)
        assert_row_matches(table[cell], [record])
        assert_stat(table[cell]["throughput (samples/s)"], [record.final_metrics.train_samples_per_s], abs_=0.5)
    assert "**ERROR** `memorisation`" in markdown.split("### baseline/dense", 1)[1].split("###", 1)[0]
    reference_acc = load_cell(ci_runs, "reference/bow").final_metrics.val_acc
    for cell in ("fixed/dense", "fixed/moe"):  # trained on the reference's rows: it stands beside them
        assert_stat(table[cell]["linear reference val acc (same rows)"], [reference_acc])
    time_rows = markdown.split("## Time to quality", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {cell} |" in time_rows for cell in CELLS)
    assert files.html.read_text().count('src="data:image/png;base64,') == len(files.images)
