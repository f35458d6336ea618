"""`chimera diff A B` (chimera/analysis/side_by_side.py): two records, run folders or matrix folders side by side,
exit 0 when they agree within --tolerance, 1 when they differ, 2 on bad input; the curves go to OUT/diff.png."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from chimera import cli
from chimera.analysis.record_diff import Difference, beyond_tolerance, diff_records
from chimera.analysis.record_pairs import load_side, pair_records
from chimera.errors import ChimeraError
from tests.unit.record_factory import minimal_record

SEEDS = Path(__file__).resolve().parents[2] / "docs" / "results" / "ci-seeds"
S0, S1 = SEEDS / "fixed-dense-ci-s0", SEEDS / "fixed-dense-ci-s1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _diff(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["diff", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.read_bytes()[:8] == PNG_MAGIC


def test_two_seeds_differ_with_their_deltas_printed_and_the_curves_drawn(tmp_path, capsys):
    code, out, err = _diff(capsys, S0, S1 / "record.json", "--out", tmp_path / "d")
    assert code == 1 and not err
    assert "config.seed" in out and "data.fingerprints.train" in out  # the inputs that explain it
    lines = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith(("* ", "  "))
             and len(line.split()) > 3}
    assert lines["best_step"][2:5] == ["640", "580", "-60"]  # A, B, B - A
    assert lines["val_loss"][4] == "+0.02343" and lines["val_loss"][5] == "+4.76%"
    assert "val_acc >= 0.75" in out and "+20 steps" in out  # time to target
    assert out.count("inside (val_loss, val_acc, best_step; bands/ci.json)") == 2
    assert "evaluated by A only: steps 700, 720, 740" in out
    assert out.splitlines()[-1].startswith("diff: DIFFER: 1 pair(s), 0 agree, 1 differ")
    assert _png(tmp_path / "d" / "diff.png")


def test_a_record_against_itself_agrees(tmp_path, capsys):
    code, out, _ = _diff(capsys, S0 / "record.json", S0, "--out", tmp_path)
    assert code == 0
    assert "curves: all 37 evaluations agree" in out and "* " not in out
    assert out.splitlines()[-1].startswith("diff: AGREE: 1 pair(s), 1 agree, 0 differ")
    assert _png(tmp_path / "diff.png")


def _matrix(root: Path, *runs: str) -> Path:
    for run in runs:
        shutil.copytree(SEEDS / run, root / run)
    return root


def test_a_matrix_folder_against_itself_agrees_pair_by_pair(tmp_path, capsys):
    runs = _matrix(tmp_path / "runs", "fixed-dense-ci-s0", "fixed-dense-ci-s1", "reference-bow-ci-s0")
    code, out, _ = _diff(capsys, runs, runs, "--out", tmp_path / "d")
    assert code == 0
    assert "== fixed/dense ci s1: agree; bands: A inside, B inside" in out
    assert out.splitlines()[-1].startswith("diff: AGREE: 3 pair(s), 3 agree, 0 differ")
    assert _png(tmp_path / "d" / "diff.png")


def test_matrix_folders_pair_by_cell_and_seed_and_name_what_is_unpaired(tmp_path, capsys):
    a = _matrix(tmp_path / "a", "fixed-dense-ci-s0", "fixed-dense-ci-s1", "reference-bow-ci-s0")
    b = _matrix(tmp_path / "b", "fixed-dense-ci-s0", "fixed-dense-ci-s1", "fixed-dense-ci-s2")
    code, out, _ = _diff(capsys, a, b, "--out", tmp_path / "d")
    assert code == 1  # every pair agrees, but not every record has a partner
    assert "only in A: reference/bow ci s0" in out and "only in B: fixed/dense ci s2" in out
    assert "unmatched: 1 in A only, 1 in B only" in out.splitlines()[-1]


def test_one_run_of_a_cell_on_each_side_pairs_whatever_the_seeds(tmp_path):
    a = load_side(_matrix(tmp_path / "a", "fixed-dense-ci-s0", "reference-bow-ci-s0"))
    b = load_side(_matrix(tmp_path / "b", "fixed-dense-ci-s3", "reference-bow-ci-s0"))
    assert [pair.name for pair in pair_records(a, b).pairs] == ["fixed/dense ci s0 vs s3", "reference/bow ci s0"]


def test_sides_that_share_no_cell_or_hold_a_run_twice_are_bad_input(tmp_path, capsys):
    a = _matrix(tmp_path / "a", "fixed-dense-ci-s0", "fixed-dense-ci-s1")
    b = _matrix(tmp_path / "b", "reference-bow-ci-s0", "reference-bow-ci-s1")
    with pytest.raises(ChimeraError, match="no record of A has the cell and profile of one of B"):
        pair_records(load_side(a), load_side(b))
    _matrix(tmp_path / "a" / "again", "fixed-dense-ci-s0")
    code, out, err = _diff(capsys, tmp_path / "a", b, "--out", tmp_path / "d")
    assert code == 2 and not out and err.startswith("chimera: error: A: two records of fixed/dense ci s0")
    assert len(err.splitlines()) == 1


def _perturbed(tmp_path: Path, relative: float) -> Path:
    """A copy of S0's record with its final val loss moved by `relative`."""
    record = json.loads((S0 / "record.json").read_text())
    record["final_metrics"]["val_loss"] *= 1 + relative
    target = tmp_path / f"perturbed-{relative}" / "record.json"
    target.parent.mkdir()
    target.write_text(json.dumps(record))
    return target


def test_tolerance_is_relative_and_zero_counts_any_difference(tmp_path, capsys):
    near = _perturbed(tmp_path, 1e-6)
    assert _diff(capsys, S0, near, "--out", tmp_path / "d")[0] == 1
    code, out, _ = _diff(capsys, S0, near, "--out", tmp_path / "d", "--tolerance", "1e-4")
    assert code == 0 and "(relative tolerance 0.0001)" in out


def test_a_side_outside_its_band_is_shown_but_is_not_the_verdict(tmp_path, capsys):
    far = _perturbed(tmp_path, 1.0)  # val loss doubled: far outside the ci band
    code, out, _ = _diff(capsys, far, far, "--out", tmp_path / "d")
    assert code == 0 and out.count("OUTSIDE: val_loss 0.985203 not in [") == 2


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda tmp: tmp / "missing.json", "A {tmp}/missing.json: no such file or folder"),
    (lambda tmp: (tmp / "x.json").write_text('{"a": 1}') and tmp / "x.json", "does not match the run-record schema"),
    (lambda tmp: (tmp / "x.json").write_text("{not json") and tmp / "x.json", "x.json"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no record.json under"),
], ids=["missing", "not-a-record", "not-json", "empty-folder"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, make, fragment):
    code, out, err = _diff(capsys, make(tmp_path), S0, "--out", tmp_path / "d")
    assert code == 2 and not out and len(err.splitlines()) == 1 and "Traceback" not in err
    assert fragment.format(tmp=tmp_path) in err
    assert not (tmp_path / "d").exists()


def test_a_negative_tolerance_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["diff", str(S0), str(S1), "--tolerance", "-0.1"])
    assert info.value.code == 2 and "is not a number >= 0" in capsys.readouterr().err


def test_beyond_tolerance_counts_numbers_relatively_and_anything_else_always():
    differences = [Difference("a", 1.0, 1.05), Difference("b", 100, 120), Difference("c", "completed", "failed"),
                   Difference("d", True, False)]
    assert [d.where for d in beyond_tolerance(differences, 0.1)] == ["b", "c", "d"]
    assert [d.where for d in beyond_tolerance(differences, 0.0)] == ["a", "b", "c", "d"]


def test_wall_clock_figures_never_count_compile_seconds_included():
    record = minimal_record()
    timed = replace(record, final_metrics=replace(record.final_metrics, wall_s=9.0, train_samples_per_s=1.0,
                                                  compile_s=3.0))
    assert diff_records(record, timed).identical
