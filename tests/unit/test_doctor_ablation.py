"""The doctor's regularisation audit cites the suite's own measured ablation, and only what it measured."""

from __future__ import annotations

import json

import pytest

from chimera.analysis.ablation_effects import ablation_tables, summary
from chimera.analysis.doctor import diagnose
from chimera.analysis.doctor_checks import ABLATION_SUMMARY, measured_regularisers
from chimera.errors import ChimeraError
from chimera.records.ablation_summary import load_ablation_summary
from tests.unit.record_factory import run_record
from tests.unit.test_ablation_effects import family


def test_the_audit_text_is_the_published_leave_one_out_effect_on_test_accuracy(tmp_path):
    path = tmp_path / "ablation-ci.json"
    cells = family({"fixed/dense-without-augmentation": [0.81, 0.80, 0.84]})
    path.write_text(json.dumps(summary(ablation_tables(cells)).to_json()))
    text = measured_regularisers(path)
    assert "fixed/dense leave one out, 3 seeds" in text
    assert "dropout: test acc +0.100, gap " in text  # outside noise: no mark
    assert "augmentation: test acc -0.007 ≈, gap " in text  # within noise: marked
    assert "weight_decay" not in text  # never measured, never cited


def test_no_published_ablation_or_no_leave_one_out_table_cites_nothing(tmp_path):
    assert measured_regularisers(tmp_path / "absent.json") is None
    add_in_only = summary([t for t in ablation_tables(family()) if t.direction == "with"])
    (tmp_path / "add-in.json").write_text(json.dumps(add_in_only.to_json()))
    assert measured_regularisers(tmp_path / "add-in.json") is None


def test_a_damaged_published_ablation_is_one_error_naming_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ChimeraError, match=r"bad\.json: not a readable JSON ablation summary"):
        measured_regularisers(tmp_path / "bad.json")
    (tmp_path / "foreign.json").write_text(json.dumps({"tables": [{"direction": "with"}]}))
    with pytest.raises(ChimeraError, match=r"foreign\.json: not an ablation summary .*\(runs is None"):
        measured_regularisers(tmp_path / "foreign.json")


def test_the_shipped_audit_cites_the_published_file_when_there_is_one():
    finding = next(f for f in diagnose(run_record("baseline/dense")) if f.code == "regularisation")
    assert ABLATION_SUMMARY.exists(), "make ablation publishes it; the doctor cites it"
    assert finding.evidence["ablation"] == measured_regularisers()
    seeds = len(load_ablation_summary(ABLATION_SUMMARY).table("without").seeds)
    assert f"fixed/dense leave one out, {seeds} seeds" in finding.evidence["ablation"]
