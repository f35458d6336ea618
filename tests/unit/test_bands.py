"""Reference convergence bands: mean ± max(3·std, floor) per cell over seeds, and the check against them."""

from __future__ import annotations

import ast
import io
import json
import math
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import pytest

from chimera.errors import ChimeraError
from chimera.gates import bands as bands_module
from chimera.gates.bands import check_bands, compute_bands, load_bands, run_bands, run_check_bands
from chimera.records.record import Precision, RunRecord
from chimera.records.store import write_record
from tests.unit.record_factory import change_config, run_record

CELLS = ("baseline/dense", "fixed/dense")


def seeds(cell: str = "fixed/dense", n: int = 5) -> list[RunRecord]:
    return [run_record(cell, seed) for seed in range(n)]


def with_metrics(record: RunRecord, **metrics) -> RunRecord:
    return replace(record, final_metrics=replace(record.final_metrics, **metrics))


def test_band_is_mean_plus_minus_three_sample_std_or_the_floor_whichever_is_wider():
    losses = [1.0, 1.1, 0.9, 1.05, 0.95]  # mean 1.0; sample variance 0.025 / 4 -> std 0.0790569
    best = [100, 100, 125, 100, 100]  # mean 105; std sqrt(500 / 4) = 11.18 -> 3 std 33.5 < floor 2 * 25
    records = [with_metrics(r, val_loss=loss, val_acc=0.8, best_step=step)
               for r, loss, step in zip(seeds(), losses, best, strict=True)]
    cell = compute_bands(records)["cells"]["fixed/dense"]
    loss, acc, step = (cell["metrics"][m] for m in ("val_loss", "val_acc", "best_step"))
    std = math.sqrt(0.025 / 4)
    assert loss["mean"] == pytest.approx(1.0) and loss["std"] == pytest.approx(std) and loss["n"] == 5
    assert (loss["low"], loss["high"]) == (pytest.approx(1 - 3 * std), pytest.approx(1 + 3 * std))
    assert acc["std"] == 0 and (acc["low"], acc["high"]) == (pytest.approx(0.77), pytest.approx(0.83))
    assert step["floor"] == 50 and (step["low"], step["high"]) == (pytest.approx(55), pytest.approx(155))
    assert cell["n"] == 5 and cell["seeds"] == [0, 1, 2, 3, 4] and cell["eval_every"] == 25


def test_bands_file_documents_its_statistic_and_floors():
    built = compute_bands(seeds())
    assert built["profile"] == "ci" and built["sigmas"] == 3.0
    assert built["floors"] == {"val_loss": 0.05, "val_acc": 0.03, "best_step_evaluations": 2}
    assert "max(3·std, floor)" in built["statistic"]


def test_run_inside_its_band_passes():
    built = compute_bands(seeds("baseline/dense") + seeds("fixed/dense"))
    fresh = [run_record(cell, seed) for cell in CELLS for seed in range(5, 8)]
    assert check_bands(fresh, built) == []


def test_doctored_val_loss_outside_the_band_fails():
    built = compute_bands(seeds())
    band = built["cells"]["fixed/dense"]["metrics"]["val_loss"]
    doctored = with_metrics(run_record("fixed/dense", 9), val_loss=band["high"] + 0.01)
    [violation] = check_bands([doctored], built)
    assert (violation.metric, violation.cell, violation.seed) == ("val_loss", "fixed/dense", 9)
    assert violation.value == pytest.approx(band["high"] + 0.01) and violation.high == band["high"]
    assert "outside" in violation.message
    assert check_bands([with_metrics(run_record("fixed/dense", 9), val_loss=band["high"] - 0.001)], built) == []


def test_unknown_cell_other_profile_unfinished_run_and_changed_config_are_violations():
    built = compute_bands(seeds())
    other_cell = run_record("fixed/moe", 0)
    other_profile = replace(run_record("fixed/dense", 1), profile="full")
    failed = replace(run_record("fixed/dense", 2), status="failed")
    changed = change_config(run_record("fixed/dense", 3), train={"lr": 1.0})
    got = [(v.seed, v.metric) for v in check_bands([other_cell, other_profile, failed, changed], built)]
    assert got == [(0, "cell"), (1, "profile"), (2, "status"), (3, "config")]


def test_seed_and_device_do_not_count_as_a_config_change():
    built = compute_bands(seeds())
    run = change_config(run_record("fixed/dense", 42), device="cuda")
    assert check_bands([run], built) == []


@pytest.mark.parametrize(("index", "change", "message"), [
    (0, lambda r: replace(r, status="failed"), "finished runs"),
    (1, lambda r: replace(r, seed=0), "appear twice"),
    (2, lambda r: replace(r, profile="full"), "several profiles"),
    (3, lambda r: change_config(r, model={"dropout": 0.0}), "different configs"),
    (4, lambda r: with_metrics(r, val_acc=None), "missing in some runs"),
])
def test_bad_inputs_to_compute_bands_are_user_errors(index, change, message):
    records = seeds()
    records[index] = change(records[index])
    with pytest.raises(ChimeraError, match=message):
        compute_bands(records)


def test_too_few_seeds_is_a_user_error():
    with pytest.raises(ChimeraError, match="need at least 5"):
        compute_bands(seeds(n=3), min_seeds=5)
    with pytest.raises(ChimeraError, match="need at least 2"):
        compute_bands(seeds(n=1))


def _write_runs(root: Path, records: list[RunRecord]) -> Path:
    for record in records:
        write_record(record, root / record.run_id)
    return root


def test_cli_functions_build_a_file_and_check_runs_with_exit_codes(tmp_path):
    reference = _write_runs(tmp_path / "reference", seeds("baseline/dense") + seeds("fixed/dense"))
    out_file = tmp_path / "bands" / "ci.json"
    assert run_bands(Namespace(paths=[reference], out=out_file, min_seeds=5), out=io.StringIO()) == 0
    assert load_bands(out_file)["cells"].keys() == set(CELLS)

    good = _write_runs(tmp_path / "good", [run_record(cell, 11) for cell in CELLS])
    text = io.StringIO()
    assert run_check_bands(Namespace(paths=[good], bands=out_file), out=text) == 0
    assert "2 run(s)" in text.getvalue() and "0 outside" in text.getvalue()

    high = json.loads(out_file.read_text())["cells"]["fixed/dense"]["metrics"]["val_loss"]["high"]
    bad = _write_runs(tmp_path / "bad", [with_metrics(run_record("fixed/dense", 12), val_loss=high + 1.0)])
    text = io.StringIO()
    assert run_check_bands(Namespace(paths=[bad], bands=out_file), out=text) == 1
    assert "FAIL" in text.getvalue() and "val_loss" in text.getvalue()


def test_missing_or_foreign_bands_file_names_the_fix(tmp_path):
    with pytest.raises(ChimeraError, match="chimera bands build"):
        load_bands(tmp_path / "absent.json")
    (tmp_path / "x.json").write_text('{"cells": {}}')
    with pytest.raises(ChimeraError, match="schema version"):
        load_bands(tmp_path / "x.json")


def test_bands_module_imports_only_records_fileio_and_errors_from_chimera():
    tree = ast.parse(Path(bands_module.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module and node.module.startswith("chimera")}
    assert imported == {"chimera.errors", "chimera.fileio", "chimera.records.record", "chimera.records.store"}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_packaged_ci_bands_still_hash_the_configs_the_matrix_resolves_at_any_precision(precision):
    """train.precision is left out of the hash (bands are per precision instead), so the fp32 hashes of
    chimera/gates/bands/ci.json, written before precision was a config field, stay valid."""
    from chimera.config import config_to_dict
    from chimera.matrix import load_matrix

    packaged = load_bands(bands_module.BANDS_DIR / "ci.json")
    assert bands_module.bands_precision(packaged) == "fp32"
    for cell, band in packaged["cells"].items():
        config = config_to_dict(load_matrix().resolve(cell, "ci", overrides=[f"train.precision={precision}"]))
        assert bands_module.config_fingerprint(config) == band["config_sha256"], cell


def _in_precision(record: RunRecord, precision: str) -> RunRecord:
    record = replace(record, precision=Precision(value=precision, source="config", requested=precision,
                                                 accelerate_launch=None))
    return change_config(record, train={"precision": precision})


def test_a_bf16_run_is_never_judged_against_fp32_bands():
    bands = compute_bands(seeds())
    assert bands["precision"] == "fp32"
    violations = check_bands([_in_precision(run_record("fixed/dense", 9), "bf16")], bands)
    assert [(v.metric, v.value) for v in violations] == [("precision", "bf16")]
    assert "judged only against bf16 bands" in violations[0].message


def test_bands_of_bf16_runs_say_so_and_judge_bf16_runs():
    bands = compute_bands([_in_precision(r, "bf16") for r in seeds()])
    assert bands["precision"] == "bf16"
    assert check_bands([_in_precision(run_record("fixed/dense", 9), "bf16")], bands) == []
    assert [v.metric for v in check_bands([run_record("fixed/dense", 9)], bands)] == ["precision"]


def test_bands_from_runs_of_several_precisions_are_refused():
    with pytest.raises(ChimeraError, match="several precisions"):
        compute_bands([*seeds(), _in_precision(run_record("fixed/dense", 7), "bf16")])


def test_check_bands_looks_for_the_bands_of_the_runs_precision_and_refuses_clearly_without(tmp_path, monkeypatch):
    monkeypatch.setattr(bands_module, "BANDS_DIR", tmp_path / "bands")
    assert bands_module.bands_path("ci", "fp32").name == "ci.json"
    assert bands_module.bands_path("ci", "bf16").name == "ci-bf16.json"
    runs = _write_runs(tmp_path / "runs", [_in_precision(run_record("fixed/dense", 3), "bf16")])
    with pytest.raises(ChimeraError, match=r"ci-bf16.json: no bands for bf16 runs \(they are never judged"):
        run_check_bands(Namespace(paths=[runs], bands=None), out=io.StringIO())
